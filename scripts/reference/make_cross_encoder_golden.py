"""Write tests/golden/cross_encoder.json: reference raw logits for the cross-encoder.

Model: cross-encoder/ms-marco-MiniLM-L-12-v2 (BertForSequenceClassification,
1 label, Identity activation -> the golden value is the raw logit).

Independent of the Rust code: float64 numpy BERT forward (bert_numpy.py), then
the sequence-classification head tanh(pooler.dense([CLS])) -> classifier.
Each (query, passage) pair is tokenized as a PAIR with the python `tokenizers`
package from the model's tokenizer.json ([CLS] query [SEP] passage [SEP];
token_type_ids 0 for [CLS] + query + first [SEP], 1 for passage + last [SEP]).
The tokenizer file's baked-in settings are overridden: padding disabled,
truncation LongestFirst at max_length 512 for the pair (special tokens count
towards the 512). Each pair is scored alone (batch of one, no padding).

Pairs: two hand-written Berlin pairs (expected about +8.7 / -11.3), three
SciFact queries from examples/collections/scifact-mini, each with one passage
the qrels mark relevant and one they do not (passage = title + " " + text when
the title is non-empty), a unicode pair, and one pair whose passage is far
longer than 512 tokens so that pair truncation is exercised.

Usage (after scripts/fetch-models.sh):
    "$(scripts/python-env.sh)" scripts/reference/make_cross_encoder_golden.py [MODELS_DIR] [OUT]
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The numpy BERT lives in the Python package (the model fetcher self-checks with it too).
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "embed_collections"))
import bert_numpy  # noqa: E402

MODEL_NAME = "cross-encoder/ms-marco-MiniLM-L-12-v2"
MAX_LENGTH = 512
REPO = os.path.dirname(os.path.dirname(HERE))
SCIFACT = os.path.join(REPO, "examples", "collections", "scifact-mini")
DEFAULT_MODELS = os.environ.get("EMBED_COLLECTIONS_MODELS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "embed-collections", "models")

BERLIN_Q = "how many people live in berlin"
# (query, passage, expected logit, tolerance) -- same values as fetch_models.py's self-check.
EXPECTED = {
    (BERLIN_Q, "Berlin has a population of 3.5 million"): 8.7,
    (BERLIN_Q, "The weather is nice today"): -11.3,
}
EXPECTED_TOL = 0.3
NUM_SCIFACT_QUERIES = 3

LONG_PASSAGE = " ".join(
    f"Section {i}: Berlin is the capital and largest city of Germany. The city has grown "
    f"steadily since reunification, and its districts differ widely in history, architecture, "
    f"population density and the share of residents who were born abroad."
    for i in range(1, 41)
)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def scifact_pairs():
    """3 queries (file order) with a relevant passage in the corpus: (relevant, non-relevant) each.

    Relevant = the first qrels-relevant document (qrels file order) present in the
    corpus. Non-relevant = the first corpus document (file order) that the qrels do
    not mark relevant for that query and that no earlier chosen pair already used.
    """
    queries = read_jsonl(os.path.join(SCIFACT, "queries.jsonl"))
    corpus = read_jsonl(os.path.join(SCIFACT, "corpus.jsonl"))
    by_id = {d["_id"]: d for d in corpus}
    rel = {}
    with open(os.path.join(SCIFACT, "qrels", "test.tsv"), encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                rel.setdefault(qid, []).append(did)

    def passage(d):
        return f"{d['title']} {d['text']}" if d.get("title") else d["text"]

    out, used = [], set()
    for q in queries:
        if len(out) == NUM_SCIFACT_QUERIES:
            break
        pos = [did for did in rel.get(q["_id"], []) if did in by_id and did not in used]
        if not pos:
            continue
        neg = next(d["_id"] for d in corpus
                   if d["_id"] not in rel[q["_id"]] and d["_id"] not in used and d["_id"] != pos[0])
        used.update([pos[0], neg])
        out.append((q, by_id[pos[0]], by_id[neg], passage))
    assert len(out) == NUM_SCIFACT_QUERIES, "not enough SciFact queries with a relevant passage"
    return out


def write_doc(path, head, items):
    with open(path, "w", encoding="utf-8") as f:
        # Valid JSON with one item per line (readable diffs); json writes floats with
        # repr(), i.e. full float64 precision.
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "items": [\n')
        f.write(",\n".join(json.dumps(it, ensure_ascii=False) for it in items))
        f.write("\n]}\n")
    return os.path.getsize(path)


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODELS
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "golden", "cross_encoder.json")
    mdir = os.path.join(models, *MODEL_NAME.split("/"))

    cfg = bert_numpy.load_config(os.path.join(mdir, "config.json"))
    assert cfg.get("max_position_embeddings", MAX_LENGTH) >= MAX_LENGTH
    w = bert_numpy.load_weights(os.path.join(mdir, "model.safetensors"))
    assert w["classifier.weight"].shape[0] == 1, "expected a single-label cross-encoder"

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LENGTH, strategy="longest_first", direction="right")

    sf = scifact_pairs()
    pairs = [(BERLIN_Q, "Berlin has a population of 3.5 million", "berlin"),
             (BERLIN_Q, "The weather is nice today", "weather")]
    for q, pos, neg, passage in sf:
        pairs.append((q["text"], passage(pos), f"scifact q{q['_id']} relevant {pos['_id']}"))
        pairs.append((q["text"], passage(neg), f"scifact q{q['_id']} non-relevant {neg['_id']}"))
    pairs.append(("Qu'est-ce que la crème brûlée? 東京の人口は？ naïve Ångström façade",
                  "La crème brûlée est un dessert français. 東京都の人口は約1400万人です。"
                  " Straße, café, ñandú — «quoted» text with emoji 🙂.",
                  "unicode"))
    pairs.append((BERLIN_Q, LONG_PASSAGE, "long"))

    items, rows = [], []
    for query, passage, label in pairs:
        enc = tok.encode(query, passage, add_special_tokens=True)
        assert not enc.overflowing or label == "long"
        h = bert_numpy.encoder_forward(w, cfg, [enc.ids], [enc.attention_mask], [enc.type_ids])
        logit = float(bert_numpy.pooler_classifier(w, h)[0, 0])
        items.append({"query": query, "passage": passage, "input_ids": list(enc.ids),
                      "type_ids": list(enc.type_ids), "logit": logit})
        rows.append((label, enc, logit, query, passage))

    # Segment lengths without truncation, to report how truncation split the budget.
    plain = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    plain.no_padding()
    plain.no_truncation()

    head = {"model": MODEL_NAME, "max_length": MAX_LENGTH, "activation": "identity",
            "generated_by": "scripts/reference/make_cross_encoder_golden.py"}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    size = write_doc(out_path, head, items)

    ok = True
    logits = {}
    for label, enc, logit, query, passage in rows:
        nq_full = len(plain.encode(query, add_special_tokens=False).ids)
        np_full = len(plain.encode(passage, add_special_tokens=False).ids)
        nq = sum(1 for t in enc.type_ids if t == 0) - 2  # minus [CLS] and first [SEP]
        npass = sum(1 for t in enc.type_ids if t == 1) - 1  # minus last [SEP]
        trunc = "" if (nq, npass) == (nq_full, np_full) else \
            f" TRUNCATED query {nq_full}->{nq}, passage {np_full}->{npass}"
        print(f"{len(enc.ids):4d} tokens (q {nq:3d}, p {npass:3d}) logit {logit:+9.4f} | {label}{trunc}")
        logits[label] = logit
        want = EXPECTED.get((query, passage))
        if want is not None and abs(logit - want) > EXPECTED_TOL:
            print(f"  !! expected about {want:+.1f}")
            ok = False
        if label == "long":
            assert len(enc.ids) == MAX_LENGTH, "the long pair must be truncated to max_length"
            assert (nq, npass) != (nq_full, np_full)

    for q, pos, neg, _ in sf:
        lp = logits[f"scifact q{q['_id']} relevant {pos['_id']}"]
        ln = logits[f"scifact q{q['_id']} non-relevant {neg['_id']}"]
        verdict = "ok" if lp > ln else "NOT ORDERED (sanity check only)"
        print(f"scifact q{q['_id']}: relevant {lp:+.4f} vs non-relevant {ln:+.4f}: {verdict}")

    print(f"wrote {out_path}: {len(items)} pairs, {size} bytes")
    if not ok:
        sys.exit("Berlin reference logits are off: is the converted model correct?")


if __name__ == "__main__":
    main()

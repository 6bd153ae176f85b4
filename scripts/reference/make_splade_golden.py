"""Write tests/golden/splade_tiny.json: reference SPLADE term weights for splade-tiny.

Independent of the Rust code: float64 numpy BERT forward (bert_numpy.py), the
BertForMaskedLM head (transform dense -> erf-GELU -> LayerNorm -> logits against
the tied word embeddings + cls.predictions.bias), then SPLADE max pooling
w_j = max_t log1p(relu(logit[t, j])) over the real tokens. Tokenized with the
python `tokenizers` package from the model's tokenizer.json, special tokens
added, padding disabled and truncation at 512 (whatever the tokenizer file has
baked in is overridden). Each text is run alone (batch of one, no padding).

`terms` lists EVERY vocabulary id with weight > 0, sorted by id, as
[vocab_id, weight] with full float64 precision (unless the file would exceed
~1.5 MB, in which case weights are rounded to 7 significant digits and the
document says so in "weights_rounded_to").

Usage (after scripts/fetch-models.sh):
    "$(scripts/python-env.sh)" scripts/reference/make_splade_golden.py [MODELS_DIR] [OUT]
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The numpy BERT lives in the Python package (the model fetcher self-checks with it too).
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "embed_collections"))
import bert_numpy  # noqa: E402

MODEL_NAME = "splade-tiny"
MAX_LENGTH = 512
SIZE_LIMIT = 1_500_000
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODELS = os.environ.get("EMBED_COLLECTIONS_MODELS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "embed-collections", "models")

LONG = " ".join(
    f"Paragraph {i}: sparse retrieval models such as SPLADE expand documents with related "
    f"vocabulary terms, and inverted indexes make search over millions of passages fast."
    for i in range(1, 41)
)

TEXTS = [
    "hello",
    "What are the health benefits of vitamin D?",
    "The Eiffel Tower in Paris was completed in 1889 and is one of the most visited "
    "monuments in the world.",
    "Vitamin D deficiency is associated with an increased risk of osteoporosis, fractures "
    "and muscle weakness. In this randomized controlled trial, 2,000 adults received daily "
    "supplementation of 1,000 IU cholecalciferol or placebo for two years. Serum "
    "25-hydroxyvitamin D concentrations rose significantly in the treatment group, and bone "
    "mineral density at the lumbar spine improved by 1.8% (p < 0.01), whereas no effect on "
    "fall incidence was observed.",
    "Café crème brûlée, naïve façade, Ångström and Straße.",
    "東京は日本の首都です。北京是中国的首都。",
    "def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n\nfor i in range(3):\n\tprint(add(i, 1))\n",
    "how do i reset my router password",
    "BM25 vs. dense retrieval: which wins on SciFact? (nDCG@10 = 0.665 / 0.645)",
    "   leading and trailing whitespace\t \n",
    LONG,
]


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
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "golden", "splade_tiny.json")
    mdir = os.path.join(models, MODEL_NAME)

    cfg = bert_numpy.load_config(os.path.join(mdir, "config.json"))
    w = bert_numpy.load_weights(os.path.join(mdir, "model.safetensors"))
    tok = bert_numpy.tokenizer(os.path.join(mdir, "tokenizer.json"), MAX_LENGTH)

    items, weights = [], []
    for text in TEXTS:
        enc = tok.encode(text, add_special_tokens=True)
        h = bert_numpy.encoder_forward(w, cfg, [enc.ids], [enc.attention_mask], [enc.type_ids])
        logits = bert_numpy.mlm_head(w, cfg, h)
        vec = bert_numpy.splade_pool(logits, [enc.attention_mask])[0]
        assert vec.shape == (cfg["vocab_size"],)
        nz = np.nonzero(vec > 0)[0]
        weights.append(vec)
        items.append({"text": text, "input_ids": list(enc.ids),
                      "terms": [[int(j), float(vec[j])] for j in nz]})

    lengths = [len(it["input_ids"]) for it in items]
    assert max(lengths) == MAX_LENGTH, "the long text must be truncated at max_length"
    head = {"model": MODEL_NAME, "max_length": MAX_LENGTH,
            "generated_by": "scripts/reference/make_splade_golden.py"}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    size = write_doc(out_path, head, items)
    if size > SIZE_LIMIT:
        head["weights_rounded_to"] = 7
        for it in items:
            it["terms"] = [[j, float(f"{x:.7g}")] for j, x in it["terms"]]
        size = write_doc(out_path, head, items)

    for it, vec in zip(items, weights):
        top = np.argsort(-vec, kind="stable")[:5]
        tops = ", ".join(f"{tok.id_to_token(int(j))}={vec[j]:.3f}" for j in top)
        print(f"{len(it['input_ids']):4d} tokens {len(it['terms']):5d} terms | {tops} | {it['text'][:50]!r}")
    print(f"wrote {out_path}: {len(items)} texts, {size} bytes"
          + (" (weights rounded to 7 significant digits)" if "weights_rounded_to" in head else ""))


if __name__ == "__main__":
    main()

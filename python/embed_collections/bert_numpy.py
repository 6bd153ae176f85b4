"""Independent float64 numpy reference implementation of a BERT forward pass.

Used to produce golden files and to self-check converted checkpoints. It is
deliberately simple (no batching tricks, exact erf-GELU via math.erf) and knows
nothing about the Rust implementation.

Tensor names follow Hugging Face BertModel / BertForSequenceClassification;
a leading "bert." prefix is optional (sentence-transformers checkpoints store
BertModel names without it) and LayerNorm "gamma"/"beta" are accepted as
aliases of "weight"/"bias" (older TF-converted checkpoints).

Functions:
    load_weights(path)                       -> dict name -> float64 array
    encoder_forward(w, cfg, ids, mask, tt)   -> last hidden state [B, T, H]
    mean_pool(hidden, mask)                  -> [B, H]
    l2_normalize(x)                          -> [B, H]
    pooler_classifier(w, hidden)             -> logits [B, num_labels]
    mlm_head(w, cfg, hidden)                 -> MLM logits [B, T, vocab]
    splade_pool(logits, mask)                -> SPLADE term weights [B, vocab]
    tokenizer(path, max_length)              -> `tokenizers.Tokenizer`, no padding
"""

import json
import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def load_weights(path):
    """Load a .safetensors file as float64 numpy arrays (non-float tensors skipped)."""
    from safetensors.numpy import load_file

    out = {}
    for name, arr in load_file(path).items():
        if np.issubdtype(arr.dtype, np.floating):
            out[name] = arr.astype(np.float64)
    return out


def load_config(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _get(w, name):
    """Look a tensor up by HF name, tolerating the 'bert.' prefix and gamma/beta."""
    candidates = [name]
    if name.startswith("bert."):
        candidates.append(name[len("bert."):])
    more = []
    for c in candidates:
        if c.endswith("LayerNorm.weight"):
            more.append(c[: -len("weight")] + "gamma")
        if c.endswith("LayerNorm.bias"):
            more.append(c[: -len("bias")] + "beta")
    for c in candidates + more:
        if c in w:
            return w[c]
    raise KeyError(f"tensor {name!r} not found (tried {candidates + more})")


def gelu(x):
    """Exact (erf) GELU, as in HF hidden_act='gelu'."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def linear(x, w, b):
    """HF Linear: weight is [out, in]."""
    return x @ w.T + b


def encoder_forward(w, cfg, input_ids, attention_mask=None, token_type_ids=None):
    """BERT embeddings + encoder. Inputs are int arrays [B, T]; returns [B, T, H] float64."""
    ids = np.atleast_2d(np.asarray(input_ids, dtype=np.int64))
    bsz, seq = ids.shape
    mask = np.ones_like(ids) if attention_mask is None else np.atleast_2d(np.asarray(attention_mask))
    tt = np.zeros_like(ids) if token_type_ids is None else np.atleast_2d(np.asarray(token_type_ids))
    eps = cfg.get("layer_norm_eps", 1e-12)
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    dh = hidden // heads

    p = "bert.embeddings."
    x = (
        _get(w, p + "word_embeddings.weight")[ids]
        + _get(w, p + "position_embeddings.weight")[np.arange(seq)][None, :, :]
        + _get(w, p + "token_type_embeddings.weight")[tt]
    )
    x = layer_norm(x, _get(w, p + "LayerNorm.weight"), _get(w, p + "LayerNorm.bias"), eps)

    # Additive key mask: 0 for real tokens, a very large negative for padding.
    key_bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)

    def split(t):  # [B, T, H] -> [B, heads, T, dh]
        return t.reshape(bsz, seq, heads, dh).transpose(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        g = lambda n: _get(w, p + n)  # noqa: E731
        q = split(linear(x, g("attention.self.query.weight"), g("attention.self.query.bias")))
        k = split(linear(x, g("attention.self.key.weight"), g("attention.self.key.bias")))
        v = split(linear(x, g("attention.self.value.weight"), g("attention.self.value.bias")))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + key_bias
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(bsz, seq, hidden)
        attn = linear(ctx, g("attention.output.dense.weight"), g("attention.output.dense.bias"))
        x = layer_norm(attn + x, g("attention.output.LayerNorm.weight"),
                       g("attention.output.LayerNorm.bias"), eps)
        inter = gelu(linear(x, g("intermediate.dense.weight"), g("intermediate.dense.bias")))
        out = linear(inter, g("output.dense.weight"), g("output.dense.bias"))
        x = layer_norm(out + x, g("output.LayerNorm.weight"), g("output.LayerNorm.bias"), eps)
    return x


def mean_pool(hidden, attention_mask):
    """sentence-transformers mean pooling: sum(mask*h) / max(sum(mask), 1e-9)."""
    m = np.atleast_2d(np.asarray(attention_mask, dtype=np.float64))[:, :, None]
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def l2_normalize(x):
    """x / max(||x||, 1e-12) along the last axis (torch.nn.functional.normalize)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pooler_classifier(w, hidden):
    """BertForSequenceClassification head: tanh(dense([CLS])) -> classifier (raw logits)."""
    cls = hidden[:, 0, :]
    pooled = np.tanh(linear(cls, _get(w, "bert.pooler.dense.weight"), _get(w, "bert.pooler.dense.bias")))
    return linear(pooled, w["classifier.weight"], w["classifier.bias"])


def mlm_head(w, cfg, hidden):
    """BertForMaskedLM head: transform dense -> erf-GELU -> LayerNorm -> decoder.

    The decoder weight is `cls.predictions.decoder.weight` when the checkpoint has
    it, otherwise the tied word embeddings; the decoder bias is
    `cls.predictions.decoder.bias` when present, otherwise `cls.predictions.bias`.
    Returns raw logits [B, T, vocab] (float64).
    """
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"mlm_head implements exact erf-GELU only, config has {act!r}")
    eps = cfg.get("layer_norm_eps", 1e-12)
    p = "cls.predictions."
    h = gelu(linear(hidden, _get(w, p + "transform.dense.weight"), _get(w, p + "transform.dense.bias")))
    h = layer_norm(h, _get(w, p + "transform.LayerNorm.weight"), _get(w, p + "transform.LayerNorm.bias"), eps)
    if p + "decoder.weight" in w:
        dec_w = w[p + "decoder.weight"]
    else:
        dec_w = _get(w, "bert.embeddings.word_embeddings.weight")
    dec_b = w[p + "decoder.bias"] if p + "decoder.bias" in w else w[p + "bias"]
    return h @ dec_w.T + dec_b


def splade_pool(logits, attention_mask):
    """SPLADE max pooling: w_j = max over real tokens t of log1p(relu(logit[t, j])).

    logits [B, T, V], attention_mask [B, T] -> [B, V]. Padding positions are
    excluded (their contribution is 0, the minimum of log1p(relu(.)) anyway).
    """
    m = np.atleast_2d(np.asarray(attention_mask))[:, :, None] > 0
    act = np.log1p(np.maximum(np.asarray(logits, dtype=np.float64), 0.0))
    return np.where(m, act, 0.0).max(1)


def tokenizer(path, max_length):
    """Load tokenizer.json, disable its baked-in padding and truncate at max_length."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def cross_encoder_score(w, cfg, tok, query, passage):
    """Raw logit of a cross-encoder for one (query, passage) pair, batch of one."""
    enc = tok.encode(query, passage)
    h = encoder_forward(w, cfg, [enc.ids], [enc.attention_mask], [enc.type_ids])
    return float(pooler_classifier(w, h)[0, 0])

"""Write tiny random-initialised decoder embedders (Qwen3, Qwen2) and their reference outputs,
with the reference libraries (Hugging Face transformers and sentence-transformers, CPU torch):

    tests/models/tiny-qwen3-dense/   sentence-transformers model: Qwen3Model + last-token pooling
                                     + Normalize, a query prompt, EOS appended by the tokenizer
                                     (as Qwen/Qwen3-Embedding-0.6B), padding side left
    tests/models/tiny-qwen2-dense/   the same on Qwen2Model (biases on q, k, v), no EOS, padding
                                     side right, a query and a document prompt
    tests/golden/tiny_decoders.json  token ids and embeddings, per model

Both share one byte-level BPE tokenizer trained here on a fixed text (a vocabulary of 500:
the 256 byte symbols, merges, Qwen's special tokens). Every parameter is drawn at random with a
fixed seed, RMSNorm weights included (transformers initialises those to 1, which would hide a
missing norm); weights are scaled up from the usual 0.02 so that attention is far from uniform
and a position, mask or rotary error moves the outputs.

Shapes exercise what real checkpoints have: grouped-query attention (4 query heads, 2 key/value
heads), Qwen3's explicit head_dim (4 × 24 = 96, not the hidden size 64) with its per-head q/k
RMSNorm, rope_theta 1e6, tied embeddings. max_seq_length is 32; one text is longer.

The reference outputs are:
  single:       each text alone (batch of one) through SentenceTransformer.encode, float32;
  batched:      all texts in one batch, padded on the tokenizer's side (left for Qwen3, so the
                last-token pooling reads the final position of every row);
  queries:      the query texts with prompt_name="query" (batch of one).

Versions: see requirements-transformers.txt beside this script.
Usage:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install -r scripts/reference/requirements-transformers.txt
    /tmp/ref/bin/python scripts/reference/make_tiny_decoders.py
"""

import json
import os
import shutil
import sys

import torch
import transformers
import sentence_transformers
from sentence_transformers.sentence_transformer import modules as st_modules
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (PreTrainedTokenizerFast, Qwen2Config, Qwen2Model, Qwen3Config,
                          Qwen3Model)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.join(REPO, "tests", "models")
GOLDEN = os.path.join(REPO, "tests", "golden", "tiny_decoders.json")

SEED = 20261204
MAX_LENGTH = 32
EOS = "<|endoftext|>"
SPECIAL = [EOS, "<|im_start|>", "<|im_end|>"]

TRAINING_TEXT = [
    "Retrieval systems embed passages and queries into vectors and rank by similarity.",
    "Sparse encoders weight vocabulary terms; dense encoders pool hidden states.",
    "A decoder reads tokens left to right and the last token sees the whole text.",
    "Die Katze sitzt auf der Matte. Le chat est sur le tapis. El gato está en la alfombra.",
    "Proteins fold into structures; cells divide; genes are expressed in tissues.",
    "Numbers like 42, 3.14 and 2026 appear in scientific claims and abstracts.",
    "def embed(texts): return [model(t) for t in texts]  # code is text too",
]

TEXTS = [
    "hello",
    "Retrieval systems rank passages.",
    "Le chat est sur le tapis.",
    "Proteins fold into structures and cells divide in tissues.",
    "def embed(texts): return model(texts)",
    "zzqx ÿ unknown bytes",
    # Longer than 32 tokens: truncated (before the EOS, which the post-processor adds).
    " ".join(TRAINING_TEXT[:3]),
]

QUERIES = ["what do retrieval systems rank", "where is the cat"]
QUERY_PROMPT = "Instruct: find\nQuery:"
DOCUMENT_PROMPT = "Passage: "


def make_tokenizer(append_eos):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, min_frequency=2, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT * 4, trainer=trainer)
    eos_id = tok.token_to_id(EOS)
    if append_eos:
        # What Qwen3-Embedding's tokenizer.json does: every text ends with <|endoftext|>.
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A:0 {EOS}:0", pair=f"$A:0 {EOS}:0 $B:1 {EOS}:1",
            special_tokens=[(EOS, eos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   model_max_length=MAX_LENGTH,
                                   padding_side="left" if append_eos else "right")


def randomise(model):
    """Every parameter random, norms and biases too, at a scale where outputs depend on every
    input (the usual 0.02 makes attention nearly uniform)."""
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(0.15 * noise)
    model.eval()
    return model


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def build(name, model, tokenizer, prompts):
    staging = fresh(os.path.join("/tmp", f"tiny-{name}-staging"))
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    word = st_modules.Transformer(staging, max_seq_length=MAX_LENGTH)
    pooling = st_modules.Pooling(word.get_embedding_dimension(), "lasttoken")
    st = sentence_transformers.SentenceTransformer(
        modules=[word, pooling, st_modules.Normalize()], device="cpu", prompts=prompts)
    out_dir = fresh(os.path.join(MODELS, f"tiny-{name}-dense"))
    st.save(out_dir)
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    # Reload from what the tests read, so the reference is what the committed files give.
    st = sentence_transformers.SentenceTransformer(out_dir, device="cpu")
    tok = st.tokenizer
    entry = {"model": f"tests/models/tiny-{name}-dense", "padding_side": tok.padding_side,
             "prompts": prompts, "texts": []}
    document_prompt = prompts.get("document", "")
    batched = st.encode(TEXTS, batch_size=len(TEXTS), prompt_name="document",
                        convert_to_numpy=True)
    for text, in_batch in zip(TEXTS, batched):
        ids = tok(document_prompt + text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        single = st.encode([text], batch_size=1, prompt_name="document",
                           convert_to_numpy=True)[0]
        entry["texts"].append({"text": text, "input_ids": ids,
                               "single": [float(v) for v in single],
                               "batched": [float(v) for v in in_batch]})
    assert any(len(t["input_ids"]) == MAX_LENGTH for t in entry["texts"])
    entry["queries"] = []
    for query in QUERIES:
        ids = tok(prompts["query"] + query, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        vector = st.encode([query], batch_size=1, prompt_name="query", convert_to_numpy=True)[0]
        entry["queries"].append({"text": query, "input_ids": ids,
                                 "embedding": [float(v) for v in vector]})
    return entry


def main():
    torch.manual_seed(SEED)
    golden = {
        "generator": "scripts/reference/make_tiny_decoders.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "max_length": MAX_LENGTH,
    }
    qwen3_tok = make_tokenizer(append_eos=True)
    vocab = len(qwen3_tok)
    eos_id = qwen3_tok.convert_tokens_to_ids(EOS)
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True,
                  bos_token_id=eos_id, eos_token_id=eos_id, hidden_act="silu")
    qwen3 = randomise(Qwen3Model(Qwen3Config(head_dim=24, attention_bias=False,
                                             architectures=["Qwen3ForCausalLM"], **common)))
    golden["qwen3"] = build("qwen3", qwen3, qwen3_tok, {"query": QUERY_PROMPT, "document": ""})
    assert all(t["input_ids"][-1] == eos_id for t in golden["qwen3"]["texts"])

    qwen2_tok = make_tokenizer(append_eos=False)
    qwen2 = randomise(Qwen2Model(Qwen2Config(architectures=["Qwen2Model"], **common)))
    golden["qwen2"] = build("qwen2", qwen2, qwen2_tok,
                            {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT})
    assert all(t["input_ids"][-1] != eos_id for t in golden["qwen2"]["texts"])

    with open(GOLDEN, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {GOLDEN} and {MODELS}/tiny-{{qwen3,qwen2}}-dense (vocabulary {vocab})",
          file=sys.stderr)


if __name__ == "__main__":
    main()

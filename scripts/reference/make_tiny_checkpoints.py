"""Write tiny random-initialised checkpoints of the architectures we implement besides BERT,
and their reference outputs, with the reference library (Hugging Face transformers, CPU torch):

    tests/models/tiny-xlm-roberta-dense/    sentence-transformers model: XLMRobertaModel + CLS
                                            pooling + Normalize
    tests/models/tiny-xlm-roberta-rerank/   XLMRobertaForSequenceClassification, one label
    tests/models/tiny-xlm-roberta-splade/   XLMRobertaForMaskedLM (tied decoder)
    tests/golden/tiny_xlm_roberta.json      token ids, embeddings, logits, SPLADE weights

The three share one tokenizer: a SentencePiece-style Unigram vocabulary of about 150 pieces
listed here (words of a fixed text, then characters), with XLM-R's special tokens at XLM-R's ids (<s> 0,
<pad> 1, </s> 2, <unk> 3, <mask> last) and RoBERTa's post-processor. Every parameter is drawn
at random with a fixed seed, biases and LayerNorms included (Hugging Face initialises those to
0 and 1, which would hide a missing bias); weights are scaled up from the usual 0.02 so that
attention is far from uniform and a position or mask error moves the outputs.

Positions: max_position_embeddings = 34 with pad_token_id = 1, so XLM-R's position ids run
2..33 and the usable length is 32. One text per set is longer than 32 tokens, so the last
position is exercised.

The reference outputs are each text run alone (batch of one) through:
  dense:  SentenceTransformer.encode (sentence-transformers), float32;
  rerank: the classification logit, tokenizer(query, passage, truncation=True, max_length=32);
  splade: max over tokens of log(1 + relu(MLM logits)), in float64 from the float32 logits.

Versions: see requirements-transformers.txt beside this script.
Usage:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install -r scripts/reference/requirements-transformers.txt
    /tmp/ref/bin/python scripts/reference/make_tiny_checkpoints.py
"""

import json
import os
import shutil
import sys

import torch
import transformers
import sentence_transformers
from sentence_transformers.sentence_transformer import modules as st_modules
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (XLMRobertaConfig, XLMRobertaForMaskedLM,
                          XLMRobertaForSequenceClassification, XLMRobertaModel,
                          XLMRobertaTokenizerFast)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.join(REPO, "tests", "models")
GOLDEN = os.path.join(REPO, "tests", "golden", "tiny_xlm_roberta.json")

SEED = 20261203
MAX_LENGTH = 32
POSITIONS = MAX_LENGTH + 2  # XLM-R: position ids start at pad_token_id + 1 = 2

TRAINING_TEXT = [
    "Retrieval systems embed passages and queries into vectors and rank by similarity.",
    "Sparse encoders weight vocabulary terms; dense encoders pool hidden states.",
    "A cross-encoder reads the query and the passage together and scores the pair.",
    "Die Katze sitzt auf der Matte. Le chat est sur le tapis. El gato está en la alfombra.",
    "Proteins fold into structures; cells divide; genes are expressed in tissues.",
    "Numbers like 42, 3.14 and 2026 appear in scientific claims and abstracts.",
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
]

DENSE_TEXTS = [
    "hello",
    "Retrieval systems rank passages.",
    "Le chat est sur le tapis.",
    "Proteins fold into structures and cells divide in tissues.",
    "zzqx unknown pieces ÿ",
    # Longer than 32 tokens: truncated, so the last position (id 33) is used.
    " ".join(TRAINING_TEXT[:3]),
]

PAIRS = [
    ("what do retrieval systems rank", "Retrieval systems embed passages and rank by similarity."),
    ("what do retrieval systems rank", "The quick brown fox jumps over the lazy dog."),
    ("cat", "Le chat."),
    ("where is the cat", "Le chat est sur le tapis."),
    ("genes", "Proteins fold into structures; cells divide; genes are expressed in tissues. "
              "Numbers like 42 appear in claims. The quick brown fox jumps over the dog."),
]

SPLADE_TEXTS = DENSE_TEXTS


def unigram_vocabulary():
    """A fixed SentencePiece-style vocabulary (the trainer is not deterministic): XLM-R's
    special tokens, "▁word" pieces for the training words (more frequent, more probable), then
    the single characters every text here needs, so nothing but the deliberate "ÿ" is unknown."""
    words = {}
    for line in TRAINING_TEXT:
        for word in line.replace(";", " ").replace(".", " ").replace(",", " ").split():
            words[word] = words.get(word, 0) + 1
    ranked = sorted(words, key=lambda w: (-words[w], w))[:80]
    texts = TRAINING_TEXT + DENSE_TEXTS + [t for pair in PAIRS for t in pair]
    characters = sorted({c for text in texts for c in text if not c.isspace()} - {"ÿ"})
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -2.0 - 0.1 * i) for i, w in enumerate(ranked)]
    pieces += [("▁", -8.0)] + [(c, -10.0) for c in characters]
    return pieces


def make_tokenizer(out_dir):
    tok = Tokenizer(models.Unigram(unigram_vocabulary(), unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", 2), cls=("<s>", 0),
                                                      trim_offsets=True, add_prefix_space=True)
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=MAX_LENGTH)
    assert fast.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>"]) == [0, 1, 2, 3]
    fast.save_pretrained(out_dir)
    return fast


def config(vocab_size, **extra):
    return XLMRobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=POSITIONS, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
        hidden_act="gelu", **extra)


def randomise(model):
    """Every parameter random (biases and LayerNorms too), at a scale where outputs depend on
    every input; the tied decoder follows the word embeddings."""
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
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


def main():
    torch.manual_seed(SEED)
    tok_dir = fresh(os.path.join("/tmp", "tiny-xlmr-tokenizer"))
    tokenizer = make_tokenizer(tok_dir)
    vocab = len(tokenizer)
    golden = {
        "generator": "scripts/reference/make_tiny_checkpoints.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "max_length": MAX_LENGTH,
        "positions": POSITIONS,
    }

    # Dense: a sentence-transformers model (Transformer + CLS pooling + Normalize), as bge-m3.
    dense_dir = fresh(os.path.join(MODELS, "tiny-xlm-roberta-dense"))
    encoder = randomise(XLMRobertaModel(config(vocab, architectures=["XLMRobertaModel"]),
                                        add_pooling_layer=False))
    staging = fresh(os.path.join("/tmp", "tiny-xlmr-encoder"))
    encoder.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    word = st_modules.Transformer(staging, max_seq_length=MAX_LENGTH)
    pooling = st_modules.Pooling(word.get_word_embedding_dimension(), "cls")
    st = sentence_transformers.SentenceTransformer(
        modules=[word, pooling, st_modules.Normalize()], device="cpu")
    st.save(dense_dir)
    golden["dense"] = []
    for text in DENSE_TEXTS:
        ids = tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        vector = st.encode([text], batch_size=1, convert_to_numpy=True)[0]
        golden["dense"].append({"text": text, "input_ids": ids,
                                "embedding": [float(v) for v in vector]})
    assert any(len(item["input_ids"]) == MAX_LENGTH for item in golden["dense"])

    # Rerank: the RoBERTa classification head (dense + tanh + out_proj on <s>, no pooler).
    rerank_dir = fresh(os.path.join(MODELS, "tiny-xlm-roberta-rerank"))
    classifier = randomise(XLMRobertaForSequenceClassification(
        config(vocab, num_labels=1, architectures=["XLMRobertaForSequenceClassification"])))
    classifier.save_pretrained(rerank_dir, safe_serialization=True)
    tokenizer.save_pretrained(rerank_dir)
    golden["rerank"] = []
    for query, passage in PAIRS:
        inputs = tokenizer(query, passage, truncation=True, max_length=MAX_LENGTH,
                           return_tensors="pt")
        with torch.no_grad():
            logit = classifier(**inputs).logits[0, 0].item()
        golden["rerank"].append({"query": query, "passage": passage,
                                 "input_ids": inputs["input_ids"][0].tolist(), "logit": logit})
    assert any(len(item["input_ids"]) == MAX_LENGTH for item in golden["rerank"])

    # SPLADE: the RoBERTa masked-LM head (dense + gelu + layer_norm + tied decoder + bias).
    splade_dir = fresh(os.path.join(MODELS, "tiny-xlm-roberta-splade"))
    mlm = randomise(XLMRobertaForMaskedLM(config(vocab, architectures=["XLMRobertaForMaskedLM"])))
    mlm.tie_weights()
    mlm.save_pretrained(splade_dir, safe_serialization=True)
    tokenizer.save_pretrained(splade_dir)
    golden["splade"] = []
    for text in SPLADE_TEXTS:
        inputs = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            logits = mlm(**inputs).logits[0].double()
        weights = torch.log1p(torch.relu(logits)).max(dim=0).values
        terms = {str(i): float(w) for i, w in enumerate(weights.tolist()) if w > 0}
        golden["splade"].append({"text": text, "input_ids": inputs["input_ids"][0].tolist(),
                                 "weights": terms})

    for directory in (dense_dir, rerank_dir, splade_dir):
        # Only what the tool reads; the tokenizer's sentencepiece-free fast files suffice.
        for name in ("README.md",):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                os.remove(path)
    with open(GOLDEN, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {GOLDEN} and {MODELS}/tiny-xlm-roberta-{{dense,rerank,splade}} "
          f"(vocabulary {vocab})", file=sys.stderr)


if __name__ == "__main__":
    main()

//! Architectures beyond BERT, on tiny random-initialised checkpoints made with the reference
//! library (Hugging Face transformers; `scripts/reference/make_tiny_checkpoints.py` wrote
//! `tests/models/tiny-*` and `tests/golden/tiny_xlm_roberta.json`): parity with its outputs on
//! both backends, each text alone and all in one padded batch, with the longest texts at the
//! last position the model has (XLM-R's positions start at pad_token_id + 1 = 2).

mod util;

use embed_collections::batching::BatchBudget;
use embed_collections::config::DenseModelConfig;
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::{CrossEncoder, DenseEmbedder, SpladeEncoder};
use serde::Deserialize;
use std::collections::BTreeMap;
use util::{cosine, cpu_device, tiny_model};

#[derive(Deserialize)]
struct Golden {
    max_length: usize,
    positions: usize,
    dense: Vec<DenseItem>,
    rerank: Vec<RerankItem>,
    splade: Vec<SpladeItem>,
}

#[derive(Deserialize)]
struct DenseItem {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct RerankItem {
    query: String,
    passage: String,
    input_ids: Vec<u32>,
    logit: f32,
}

#[derive(Deserialize)]
struct SpladeItem {
    text: String,
    input_ids: Vec<u32>,
    weights: BTreeMap<String, f64>,
}

fn golden() -> Golden {
    let path = util::repo_root().join("tests/golden/tiny_xlm_roberta.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const BACKENDS: [EncoderBackend; 2] = [EncoderBackend::Packed, EncoderBackend::Candle];

const ONE_AT_A_TIME: BatchBudget = BatchBudget {
    max_tokens: 1,
    max_items: 1,
};
const ONE_BATCH: BatchBudget = BatchBudget {
    max_tokens: 1 << 20,
    max_items: 1 << 10,
};

/// The golden set reaches the last position: a wrong offset either reads a position row past
/// the table (an error) or the wrong rows (the parity below fails).
fn assert_reaches_the_last_position(lengths: impl Iterator<Item = usize>, golden: &Golden) {
    assert_eq!(golden.positions, golden.max_length + 2);
    let lengths: Vec<usize> = lengths.collect();
    assert!(lengths.contains(&golden.max_length), "{lengths:?}");
    assert!(
        lengths.iter().any(|&l| l < golden.max_length / 2),
        "{lengths:?}"
    );
}

#[test]
fn xlm_roberta_dense_matches_sentence_transformers() {
    let golden = golden();
    assert_reaches_the_last_position(golden.dense.iter().map(|i| i.input_ids.len()), &golden);
    let texts: Vec<&str> = golden.dense.iter().map(|i| i.text.as_str()).collect();
    let model = tiny_model("tiny-xlm-roberta-dense");
    for backend in BACKENDS {
        let config = DenseModelConfig::for_model("xlmr", "tiny-xlm-roberta-dense");
        let embedder = DenseEmbedder::load(&config, &model, &cpu_device(backend)).unwrap();
        let identity = embedder.identity();
        assert_eq!(identity.max_length, golden.max_length, "{backend:?}");
        assert_eq!(identity.architecture, "xlm-roberta");
        for budget in [ONE_AT_A_TIME, ONE_BATCH] {
            let output = embedder.embed_documents(&texts, budget).unwrap();
            assert_eq!(
                output.truncated, 1,
                "one golden text is cut at the max length"
            );
            for (item, vector) in golden.dense.iter().zip(&output.vectors) {
                let similarity = cosine(vector, &item.embedding);
                assert!(
                    similarity >= 0.9999,
                    "{backend:?}, batch of {}: cosine {similarity} for {:?} ({} tokens)",
                    budget.max_items,
                    item.text,
                    item.input_ids.len()
                );
            }
        }
    }
}

#[test]
fn xlm_roberta_cross_encoder_matches_transformers_logits() {
    let golden = golden();
    assert_reaches_the_last_position(golden.rerank.iter().map(|i| i.input_ids.len()), &golden);
    let model = tiny_model("tiny-xlm-roberta-rerank");
    let pairs: Vec<(&str, &str)> = golden
        .rerank
        .iter()
        .map(|i| (i.query.as_str(), i.passage.as_str()))
        .collect();
    for backend in BACKENDS {
        let encoder = CrossEncoder::load("tiny", &model, &cpu_device(backend), None, None).unwrap();
        assert_eq!(
            encoder.identity().architecture,
            "xlm-roberta_sequence_classification"
        );
        let encodings = encoder.tokenizer().encode_pairs(&pairs).unwrap();
        for (encoding, item) in encodings.iter().zip(&golden.rerank) {
            assert_eq!(encoding.ids, item.input_ids, "pair tokenisation");
        }
        let batched = encoder
            .score(&encodings.iter().collect::<Vec<_>>())
            .unwrap();
        for ((encoding, item), in_batch) in encodings.iter().zip(&golden.rerank).zip(&batched) {
            let alone = encoder.score(&[encoding]).unwrap()[0];
            for (how, logit) in [("alone", alone.logit), ("in a batch", in_batch.logit)] {
                assert!(
                    (logit - item.logit).abs() <= 1e-3,
                    "{backend:?} {how}: logit {logit} vs {} for {:?}",
                    item.logit,
                    item.query
                );
            }
        }
    }
}

#[test]
fn xlm_roberta_splade_matches_transformers_mlm_logits() {
    let golden = golden();
    assert_reaches_the_last_position(golden.splade.iter().map(|i| i.input_ids.len()), &golden);
    let model = tiny_model("tiny-xlm-roberta-splade");
    let texts: Vec<&str> = golden.splade.iter().map(|i| i.text.as_str()).collect();
    for backend in BACKENDS {
        let encoder = SpladeEncoder::load(
            "sparse",
            "tiny",
            &model,
            &cpu_device(backend),
            None,
            1 << 20,
            None,
        )
        .unwrap();
        assert_eq!(encoder.identity().architecture, "xlm-roberta_mlm");
        let encodings = encoder.tokenizer().encode_batch(&texts).unwrap();
        let batched = encoder
            .encode(&encodings.iter().collect::<Vec<_>>())
            .unwrap();
        for ((encoding, item), in_batch) in encodings.iter().zip(&golden.splade).zip(&batched) {
            assert_eq!(
                encoding.ids, item.input_ids,
                "tokenisation of {:?}",
                item.text
            );
            let alone = encoder.encode(&[encoding]).unwrap().remove(0);
            for (how, vector) in [("alone", &alone), ("in a batch", in_batch)] {
                let ours: BTreeMap<String, f64> = vector
                    .indices
                    .iter()
                    .zip(&vector.values)
                    .map(|(id, w)| (id.to_string(), *w as f64))
                    .collect();
                // Terms within rounding of zero may fall either side of it.
                for (term, &expected) in &item.weights {
                    let found = ours.get(term).copied().unwrap_or(0.0);
                    assert!(
                        (found - expected).abs() <= 1e-3,
                        "{backend:?} {how}: term {term} weight {found} vs {expected}"
                    );
                }
                for (term, &found) in &ours {
                    assert!(
                        item.weights.contains_key(term) || found <= 1e-3,
                        "{backend:?} {how}: term {term} weight {found} not in the reference"
                    );
                }
            }
        }
    }
}

/// The usable length is the positions less the offset: asking for one more is refused at
/// load, naming the limit.
#[test]
fn xlm_roberta_refuses_a_max_length_past_its_positions() {
    let golden = golden();
    let model = tiny_model("tiny-xlm-roberta-rerank");
    let err = CrossEncoder::load(
        "tiny",
        &model,
        &cpu_device(EncoderBackend::Packed),
        Some(golden.max_length + 1),
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(&format!(
            "max_length {} is more than the model's {} position",
            golden.max_length + 1,
            golden.max_length
        )),
        "{err}"
    );
}

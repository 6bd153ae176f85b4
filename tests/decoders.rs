//! Decoder embedders (Qwen3, Qwen2) on tiny random-initialised checkpoints made with the
//! reference libraries (`scripts/reference/make_tiny_decoders.py` wrote `tests/models/tiny-qwen*`
//! and `tests/golden/tiny_decoders.json`): the token ids (the query prompt, Qwen3's appended EOS),
//! and the vectors against sentence-transformers' — each text alone and all in one batch, where
//! the reference padded Qwen3's batch on the left (its tokenizer's side) and ours pads on the
//! right — on both CPU device settings, with the longest text cut at the max length.

mod util;

use embed_collections::batching::BatchBudget;
use embed_collections::config::{CpuPrecision, DenseModelConfig};
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::tokenize::TextTokenizer;
use embed_collections::models::{DenseEmbedder, Pooling};
use serde::Deserialize;
use util::{cosine, cpu_device, tiny_model};

#[derive(Deserialize)]
struct Golden {
    max_length: usize,
    qwen3: ModelGolden,
    qwen2: ModelGolden,
}

#[derive(Deserialize)]
struct ModelGolden {
    padding_side: String,
    prompts: std::collections::BTreeMap<String, String>,
    texts: Vec<TextItem>,
    queries: Vec<QueryItem>,
}

#[derive(Deserialize)]
struct TextItem {
    text: String,
    input_ids: Vec<u32>,
    /// The text alone (batch of one).
    single: Vec<f32>,
    /// In one batch with the others, padded on the tokenizer's side.
    batched: Vec<f32>,
}

#[derive(Deserialize)]
struct QueryItem {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn golden() -> Golden {
    let path = util::repo_root().join("tests/golden/tiny_decoders.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

const ONE_AT_A_TIME: BatchBudget = BatchBudget {
    max_tokens: 1,
    max_items: 1,
};
const ONE_BATCH: BatchBudget = BatchBudget {
    max_tokens: 1 << 20,
    max_items: 1 << 10,
};

/// The reference's float32 vectors against ours (also float32, other summation order).
const MIN_COSINE: f64 = 0.9999;

fn models(golden: &Golden) -> [(&'static str, &'static str, &ModelGolden); 2] {
    [
        ("qwen3", "tiny-qwen3-dense", &golden.qwen3),
        ("qwen2", "tiny-qwen2-dense", &golden.qwen2),
    ]
}

#[test]
fn decoder_token_ids_carry_the_prompt_and_the_eos_the_tokenizer_adds() {
    let golden = golden();
    for (architecture, dir, model) in models(&golden) {
        let tokenizer = TextTokenizer::load(
            &tiny_model(dir).dir.join("tokenizer.json"),
            golden.max_length,
        )
        .unwrap();
        let document_prompt = model.prompts.get("document").cloned().unwrap_or_default();
        let query_prompt = &model.prompts["query"];
        let texts: Vec<String> = (model
            .texts
            .iter()
            .map(|t| format!("{document_prompt}{}", t.text)))
        .chain(
            model
                .queries
                .iter()
                .map(|q| format!("{query_prompt}{}", q.text)),
        )
        .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs).unwrap();
        let expected = model
            .texts
            .iter()
            .map(|t| &t.input_ids)
            .chain(model.queries.iter().map(|q| &q.input_ids));
        for ((encoding, ids), text) in encoded.iter().zip(expected).zip(&texts) {
            assert_eq!(&encoding.ids, ids, "{architecture}: {text:?}");
        }
        // Qwen3-Embedding's tokenizer ends every text with <|endoftext|>, a cut one too.
        let eos = 0;
        let ends_with_eos = encoded.iter().all(|e| e.ids.last() == Some(&eos));
        assert_eq!(ends_with_eos, architecture == "qwen3", "{architecture}");
        assert!(encoded
            .iter()
            .any(|e| e.len() == golden.max_length && e.truncated));
    }
}

#[test]
fn decoder_embeddings_match_sentence_transformers_alone_and_padded() {
    let golden = golden();
    assert_eq!(
        golden.qwen3.padding_side, "left",
        "the reference batch pads on the left"
    );
    assert_eq!(golden.qwen2.padding_side, "right");
    for (architecture, dir, model) in models(&golden) {
        let texts: Vec<&str> = model.texts.iter().map(|t| t.text.as_str()).collect();
        let lengths: Vec<usize> = model.texts.iter().map(|t| t.input_ids.len()).collect();
        assert!(
            lengths.iter().any(|&l| l < golden.max_length / 2),
            "{lengths:?}"
        );
        for backend in [EncoderBackend::Packed, EncoderBackend::Candle] {
            let config = DenseModelConfig::for_model(architecture, dir);
            let embedder =
                DenseEmbedder::load(&config, &tiny_model(dir), &cpu_device(backend)).unwrap();
            let identity = embedder.identity();
            assert_eq!(identity.architecture, architecture);
            assert_eq!(identity.max_length, golden.max_length);
            assert_eq!(identity.pooling, Some(Pooling::LastToken));
            assert_eq!(identity.normalize, Some(true));
            for budget in [ONE_AT_A_TIME, ONE_BATCH] {
                let output = embedder.embed_documents(&texts, budget).unwrap();
                assert_eq!(output.truncated, 1, "one text is cut at the max length");
                for (item, vector) in model.texts.iter().zip(&output.vectors) {
                    for (reference, what) in [(&item.single, "alone"), (&item.batched, "batched")] {
                        let similarity = cosine(vector, reference);
                        assert!(
                            similarity >= MIN_COSINE,
                            "{architecture} {backend:?}, batch of {}: cosine {similarity} with \
                             the reference {what} for {:?} ({} tokens)",
                            budget.max_items,
                            item.text,
                            item.input_ids.len()
                        );
                    }
                }
            }
            let queries: Vec<&str> = model.queries.iter().map(|q| q.text.as_str()).collect();
            let output = embedder.embed_queries(&queries, ONE_BATCH).unwrap();
            for (item, vector) in model.queries.iter().zip(&output.vectors) {
                let similarity = cosine(vector, &item.embedding);
                assert!(
                    similarity >= MIN_COSINE,
                    "{architecture} query {:?}: cosine {similarity}",
                    item.text
                );
            }
        }
    }
}

/// Without the prompt (or with the wrong pooling) the vectors differ: the parity above could
/// not pass with either mistake.
#[test]
fn the_query_prompt_and_last_token_pooling_change_the_vectors() {
    let golden = golden();
    let model = &golden.qwen3;
    let resolved = tiny_model("tiny-qwen3-dense");
    let device = cpu_device(EncoderBackend::Packed);
    let query = model.queries[0].text.as_str();
    let mut config = DenseModelConfig::for_model("qwen3", "tiny-qwen3-dense");
    config.query_prompt = Some(String::new());
    let unprompted = DenseEmbedder::load(&config, &resolved, &device)
        .unwrap()
        .embed_queries(&[query], ONE_BATCH)
        .unwrap();
    let similarity = cosine(&unprompted.vectors[0], &model.queries[0].embedding);
    assert!(similarity < 0.99, "cosine {similarity} without the prompt");
    let mut config = DenseModelConfig::for_model("qwen3", "tiny-qwen3-dense");
    config.pooling = Some(Pooling::Mean);
    let text = model.texts[3].text.as_str();
    let mean = DenseEmbedder::load(&config, &resolved, &device)
        .unwrap()
        .embed_documents(&[text], ONE_BATCH)
        .unwrap();
    let similarity = cosine(&mean.vectors[0], &model.texts[3].single);
    assert!(similarity < 0.99, "cosine {similarity} with mean pooling");
}

#[test]
fn a_decoder_refuses_cpu_products_it_does_not_have() {
    let mut config = DenseModelConfig::for_model("qwen2", "tiny-qwen2-dense");
    config.precision = Some(CpuPrecision::Int8);
    let err = DenseEmbedder::load(
        &config,
        &tiny_model("tiny-qwen2-dense"),
        &cpu_device(EncoderBackend::Packed),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("precision \"int8\" is implemented for BERT-family encoders")
            && err.contains("qwen2"),
        "{err}"
    );
}

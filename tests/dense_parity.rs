//! Dense parity on the real all-MiniLM-L6-v2 against golden vectors from an independent float64
//! numpy forward pass (`scripts/reference/make_dense_golden.py`), and batch invariance.

mod util;

use embed_collections::batching::BatchBudget;
use embed_collections::config::{DenseModelConfig, DeviceSpec, Precision};
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::{select_device, DenseEmbedder, ModelManager};
use serde::Deserialize;
use util::{cosine, max_abs_diff, models_dir, norm};

#[derive(Deserialize)]
struct Golden {
    model: String,
    max_length: usize,
    items: Vec<GoldenItem>,
}

#[derive(Deserialize)]
struct GoldenItem {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn golden() -> Golden {
    let path = util::repo_root().join("tests/golden/dense_minilm.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn embedder(model: &str) -> DenseEmbedder {
    embedder_on(model, EncoderBackend::Packed)
}

fn embedder_on(model: &str, backend: EncoderBackend) -> DenseEmbedder {
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(model, None, None).unwrap();
    let config = DenseModelConfig::for_model("minilm", model);
    let mut device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
    assert_eq!(device.backend, EncoderBackend::Packed, "CPU f32 default");
    device.backend = backend;
    DenseEmbedder::load(&config, &resolved, &device).unwrap()
}

const ONE_AT_A_TIME: BatchBudget = BatchBudget {
    max_tokens: 1,
    max_items: 1,
};
const ONE_BATCH: BatchBudget = BatchBudget {
    max_tokens: 1 << 20,
    max_items: 1 << 10,
};

#[test]
fn minilm_matches_the_numpy_reference() {
    for backend in [EncoderBackend::Packed, EncoderBackend::Candle] {
        minilm_matches_the_numpy_reference_on(backend);
    }
}

fn minilm_matches_the_numpy_reference_on(backend: EncoderBackend) {
    let golden = golden();
    let embedder = embedder_on(&golden.model, backend);
    assert_eq!(embedder.identity().max_length, golden.max_length);
    assert!(
        golden
            .items
            .iter()
            .any(|i| i.input_ids.len() == golden.max_length),
        "golden set must exercise truncation"
    );
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let output = embedder.embed_documents(&texts, ONE_AT_A_TIME).unwrap();
    assert_eq!(
        output.truncated, 1,
        "exactly one golden text is longer than the max length"
    );
    for (item, vector) in golden.items.iter().zip(&output.vectors) {
        let similarity = cosine(vector, &item.embedding);
        assert!(
            similarity >= 0.999,
            "cosine {similarity} for text of {} tokens",
            item.input_ids.len()
        );
        // Tighter than the contract: f32 against float64 should agree to ~1e-6.
        assert!(max_abs_diff(vector, &item.embedding) < 1e-4);
        assert!((norm(vector) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn padded_batch_equals_one_at_a_time() {
    let golden = golden();
    let embedder = embedder(&golden.model);
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let alone = embedder.embed_documents(&texts, ONE_AT_A_TIME).unwrap();
    let batched = embedder.embed_documents(&texts, ONE_BATCH).unwrap();
    assert_eq!(alone.stats.batches, texts.len());
    // One padded batch, split once per worker so that every worker has a share.
    assert_eq!(
        batched.stats.batches,
        embedder.workers().clamp(1, texts.len()),
        "all texts in one padded batch per worker"
    );
    assert!(
        batched.stats.padded_tokens > batched.stats.tokens,
        "the batch must contain padding"
    );
    for (a, b) in alone.vectors.iter().zip(&batched.vectors) {
        let diff = max_abs_diff(a, b);
        assert!(diff <= 1e-5, "batched result differs by {diff}");
    }
}

#[test]
fn results_keep_input_order_across_batches() {
    let golden = golden();
    let embedder = embedder(&golden.model);
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let small_batches = BatchBudget {
        max_tokens: 100,
        max_items: 3,
    };
    let output = embedder.embed_documents(&texts, small_batches).unwrap();
    assert!(output.stats.batches > 2);
    for (item, vector) in golden.items.iter().zip(&output.vectors) {
        assert!(cosine(vector, &item.embedding) >= 0.999);
    }
}

#[test]
fn packed_and_candle_backends_agree_on_a_padded_batch() {
    let golden = golden();
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let packed = embedder_on(&golden.model, EncoderBackend::Packed)
        .embed_documents(&texts, ONE_BATCH)
        .unwrap();
    let candle = embedder_on(&golden.model, EncoderBackend::Candle)
        .embed_documents(&texts, ONE_BATCH)
        .unwrap();
    for (a, b) in packed.vectors.iter().zip(&candle.vectors) {
        let diff = max_abs_diff(a, b);
        assert!(diff <= 1e-5, "backends differ by {diff}");
    }
}

/// Embeds the golden texts in `precision` on the CPU (through `backend`) and checks every
/// vector's cosine to the float64 reference; returns the worst.
fn worst_cosine_at(precision: Precision, backend: EncoderBackend, min_cosine: f64) -> f64 {
    let golden = golden();
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(&golden.model, None, None).unwrap();
    let config = DenseModelConfig::for_model("minilm", &golden.model);
    let device = select_device(&DeviceSpec::Cpu, precision).unwrap();
    assert_eq!(
        device.backend, backend,
        "{precision:?} runs through {backend:?}"
    );
    let embedder = DenseEmbedder::load(&config, &resolved, &device).unwrap();
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let output = embedder.embed_documents(&texts, ONE_BATCH).unwrap();
    let mut worst = 1.0f64;
    for (item, vector) in golden.items.iter().zip(&output.vectors) {
        let similarity = cosine(vector, &item.embedding);
        worst = worst.min(similarity);
        assert!(
            similarity >= min_cosine,
            "{precision:?} cosine {similarity}"
        );
    }
    worst
}

/// bf16 products (opt-in, AVX512-BF16 CPUs only) stay within cosine 0.9995 of the float64
/// reference on all-MiniLM-L6-v2 (measured worst: 0.99998).
#[test]
fn bf16_products_stay_close_to_the_reference() {
    if !embed_collections::models::packed::bf16::supported() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let worst = worst_cosine_at(Precision::Bf16, EncoderBackend::Packed, 0.9995);
    eprintln!("bf16 dense: worst cosine {worst:.6}");
}

/// f16 end to end through candle (the path `precision = "auto"` takes on a CUDA GPU such as a
/// T4), run here on the CPU: same weights, same ops, f16 arithmetic. Stays within cosine 0.999
/// of the float64 reference (measured worst: 0.99999; NaN before the mask fix).
#[test]
fn f16_through_candle_stays_close_to_the_reference() {
    let worst = worst_cosine_at(Precision::F16, EncoderBackend::Candle, 0.999);
    eprintln!("f16 dense (candle, CPU): worst cosine {worst:.6}");
}

#[derive(Deserialize)]
struct BgeGolden {
    model: String,
    max_length: usize,
    items: Vec<BgeItem>,
}

#[derive(Deserialize)]
struct BgeItem {
    role: String,
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

/// bge-small-en-v1.5 (the second real dense model: CLS pooling, a query instruction) against
/// the float64 numpy reference (`scripts/reference/make_bge_golden.py`), on both backends:
/// documents plain, queries with the model's own query prompt, each alone and in one batch.
#[test]
fn bge_small_matches_the_numpy_reference_with_its_query_prompt() {
    let path = util::repo_root().join("tests/golden/dense_bge_small.json");
    let golden: BgeGolden = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(&golden.model, None, None).unwrap();
    let config = DenseModelConfig::for_model("bge", &golden.model);
    for backend in [EncoderBackend::Packed, EncoderBackend::Candle] {
        let mut device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
        device.backend = backend;
        let embedder = DenseEmbedder::load(&config, &resolved, &device).unwrap();
        assert_eq!(embedder.identity().max_length, golden.max_length);
        for role in ["document", "query"] {
            let items: Vec<&BgeItem> = golden.items.iter().filter(|i| i.role == role).collect();
            let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
            for budget in [ONE_AT_A_TIME, ONE_BATCH] {
                let output = match role {
                    "query" => embedder.embed_queries(&texts, budget),
                    _ => embedder.embed_documents(&texts, budget),
                }
                .unwrap();
                for (item, vector) in items.iter().zip(&output.vectors) {
                    let similarity = cosine(vector, &item.embedding);
                    assert!(
                        similarity >= 0.999 && max_abs_diff(vector, &item.embedding) < 1e-4,
                        "{backend:?} {role} of {} tokens: cosine {similarity}",
                        item.input_ids.len()
                    );
                }
            }
        }
    }
}

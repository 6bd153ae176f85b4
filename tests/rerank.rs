//! CrossEncoder parity on the real ms-marco-MiniLM-L-12-v2 (converted from its INT8 ONNX wheel
//! by `scripts/fetch-models.sh`) against an independent float64 numpy reference
//! (`scripts/reference/make_cross_encoder_golden.py`), and batch invariance.

mod util;

use embed_collections::config::{DeviceSpec, Precision};
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::{select_device, CrossEncoder, ModelManager, ScoreActivation};
use serde::Deserialize;
use util::models_dir;

#[derive(Deserialize)]
struct Golden {
    model: String,
    max_length: usize,
    items: Vec<GoldenItem>,
}

#[derive(Deserialize)]
struct GoldenItem {
    query: String,
    passage: String,
    input_ids: Vec<u32>,
    type_ids: Vec<u32>,
    logit: f64,
}

impl Golden {
    /// The (query, passage) pairs, in order.
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.items
            .iter()
            .map(|i| (i.query.as_str(), i.passage.as_str()))
            .collect()
    }
}

fn golden() -> Golden {
    let path = util::repo_root().join("tests/golden/cross_encoder.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn cross_encoder(model: &str) -> CrossEncoder {
    cross_encoder_on(model, EncoderBackend::Packed)
}

fn cross_encoder_on(model: &str, backend: EncoderBackend) -> CrossEncoder {
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(model, None, None).unwrap();
    let mut device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
    device.backend = backend;
    CrossEncoder::load(model, &resolved, &device, None, None).unwrap()
}

#[test]
fn packed_and_candle_backends_agree() {
    let golden = golden();
    let packed = cross_encoder_on(&golden.model, EncoderBackend::Packed);
    let candle = cross_encoder_on(&golden.model, EncoderBackend::Candle);
    let pairs = golden.pairs();
    let encodings = packed.tokenizer().encode_pairs(&pairs).unwrap();
    let batch: Vec<_> = encodings.iter().collect();
    for (a, b) in packed
        .score(&batch)
        .unwrap()
        .iter()
        .zip(candle.score(&batch).unwrap())
    {
        assert!(
            (a.logit - b.logit).abs() < 1e-4,
            "{} vs {}",
            a.logit,
            b.logit
        );
    }
}

#[test]
fn logits_match_the_numpy_reference() {
    let golden = golden();
    let model = cross_encoder(&golden.model);
    assert_eq!(model.identity().max_length, golden.max_length);
    assert_eq!(
        model.activation(),
        ScoreActivation::Identity,
        "ms-marco CE exports raw logits"
    );
    let pairs = golden.pairs();
    let encodings = model.tokenizer().encode_pairs(&pairs).unwrap();
    assert!(
        encodings.iter().any(|e| e.len() == golden.max_length),
        "golden must exercise pair truncation"
    );
    for (item, encoding) in golden.items.iter().zip(&encodings) {
        assert_eq!(encoding.ids, item.input_ids, "pair tokenization differs");
        assert_eq!(encoding.type_ids, item.type_ids, "segment ids differ");
        let score = model.score(&[encoding]).unwrap()[0];
        let diff = (score.logit as f64 - item.logit).abs();
        assert!(
            diff <= 1e-3,
            "logit {} vs {} (diff {diff})",
            score.logit,
            item.logit
        );
        assert_eq!(score.score, score.logit, "identity activation");
    }
}

#[test]
fn padded_batch_scores_equal_one_at_a_time() {
    let golden = golden();
    let model = cross_encoder(&golden.model);
    let pairs = golden.pairs();
    let encodings = model.tokenizer().encode_pairs(&pairs).unwrap();
    let batched = model.score(&encodings.iter().collect::<Vec<_>>()).unwrap();
    for (encoding, together) in encodings.iter().zip(&batched) {
        let alone = model.score(&[encoding]).unwrap()[0];
        assert!(
            (alone.logit - together.logit).abs() <= 1e-4,
            "{} vs {}",
            alone.logit,
            together.logit
        );
    }
}

#[test]
fn sanity_ordering_from_models_md() {
    let model = cross_encoder("cross-encoder/ms-marco-MiniLM-L-12-v2");
    let query = "how many people live in berlin";
    let pairs = [
        (query, "Berlin has a population of 3.5 million"),
        (query, "The weather is nice today"),
    ];
    let encodings = model.tokenizer().encode_pairs(&pairs).unwrap();
    let scores = model.score(&encodings.iter().collect::<Vec<_>>()).unwrap();
    // The reference values of this INT8-derived checkpoint: about +8.7 and about −11.3 for this INT8-derived checkpoint.
    assert!((scores[0].logit - 8.7).abs() < 0.5, "{}", scores[0].logit);
    assert!((scores[1].logit + 11.3).abs() < 0.5, "{}", scores[1].logit);
}

/// Scores the golden pairs in `precision` on the CPU (through `backend`) and checks every
/// logit against the float64 reference; returns (logits, worst |Δlogit|).
fn logits_at(precision: Precision, backend: EncoderBackend, tolerance: f64) -> (Vec<f32>, f64) {
    let golden = golden();
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(&golden.model, None, None).unwrap();
    let device = select_device(&DeviceSpec::Cpu, precision).unwrap();
    assert_eq!(
        device.backend, backend,
        "{precision:?} runs through {backend:?}"
    );
    let model = CrossEncoder::load(&golden.model, &resolved, &device, None, None).unwrap();
    let pairs = golden.pairs();
    let encodings = model.tokenizer().encode_pairs(&pairs).unwrap();
    let logits: Vec<f32> = model
        .score(&encodings.iter().collect::<Vec<_>>())
        .unwrap()
        .iter()
        .map(|s| s.logit)
        .collect();
    let mut worst = 0.0f64;
    for (item, logit) in golden.items.iter().zip(&logits) {
        let diff = (*logit as f64 - item.logit).abs();
        worst = worst.max(diff);
        assert!(
            diff <= tolerance,
            "{precision:?} logit {logit} vs {} (diff {diff})",
            item.logit
        );
    }
    (logits, worst)
}

/// bf16 products (opt-in, AVX512-BF16 CPUs only): logits stay near the float64 reference and
/// the ranking of the golden pairs is unchanged (measured worst |Δlogit|: 0.0095).
#[test]
fn bf16_logits_stay_close_to_the_reference_and_keep_the_order() {
    if !embed_collections::models::packed::bf16::supported() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let (logits, worst) = logits_at(Precision::Bf16, EncoderBackend::Packed, 0.05);
    let order = |values: Vec<f64>| {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        idx
    };
    assert_eq!(
        order(logits.iter().map(|&l| l as f64).collect()),
        order(golden().items.iter().map(|i| i.logit).collect()),
        "bf16 keeps the order of the golden pairs"
    );
    eprintln!("bf16 CrossEncoder: worst |Δlogit| {worst:.4}");
}

/// f16 through candle (the default on a CUDA GPU), run here on the CPU: logits stay within 0.1
/// of the float64 reference (measured worst: 0.054).
#[test]
fn f16_through_candle_stays_close_to_the_reference() {
    let (_, worst) = logits_at(Precision::F16, EncoderBackend::Candle, 0.1);
    eprintln!("f16 CrossEncoder (candle, CPU): worst |dlogit| {worst:.4}");
}

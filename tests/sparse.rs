//! SPLADE on the real SPLADE-tiny checkpoint as its wheel ships it: parity with an independent
//! float64 numpy reference (`scripts/reference/make_splade_golden.py`), batch invariance, bounded
//! logits slicing, checkpoint variants, and the flagged metadata fallback.

mod util;

use candle_core::{Device, Tensor};
use embed_collections::config::{self, DeviceSpec, Environment, Overrides, Precision};
use embed_collections::dispatch::Fault;
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::{select_device, ModelManager, ResolvedModel, SpladeEncoder};
use embed_collections::pipeline::BatchRunner;
use embed_collections::vectors::SparseVector;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use util::{models_dir, read_jsonl};

#[derive(Deserialize)]
struct Golden {
    max_length: usize,
    items: Vec<GoldenItem>,
}

#[derive(Deserialize)]
struct GoldenItem {
    text: String,
    input_ids: Vec<u32>,
    terms: Vec<(u32, f64)>,
}

fn golden() -> Golden {
    let path = util::repo_root().join("tests/golden/splade_tiny.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn resolved() -> ResolvedModel {
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    manager.resolve("splade-tiny", None, None).unwrap()
}

fn encoder_from(resolved: &ResolvedModel) -> SpladeEncoder {
    encoder_on(resolved, EncoderBackend::Packed)
}

fn encoder_on(resolved: &ResolvedModel, backend: EncoderBackend) -> SpladeEncoder {
    let mut device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
    device.backend = backend;
    SpladeEncoder::load(
        "splade",
        "splade-tiny",
        resolved,
        &device,
        None,
        1 << 30,
        None,
    )
    .unwrap()
}

#[test]
fn packed_and_candle_backends_agree() {
    let golden = golden();
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let packed = encoder_on(&resolved(), EncoderBackend::Packed);
    let candle = encoder_on(&resolved(), EncoderBackend::Candle);
    let encodings = packed.tokenizer().encode_batch(&texts).unwrap();
    let batch: Vec<_> = encodings.iter().collect();
    assert_same_vectors(
        &packed.encode(&batch).unwrap(),
        &candle.encode(&batch).unwrap(),
        "packed and candle backends",
    );
}

fn encode_each(encoder: &SpladeEncoder, texts: &[&str]) -> Vec<SparseVector> {
    let encodings = encoder.tokenizer().encode_batch(texts).unwrap();
    encodings
        .iter()
        .map(|e| encoder.encode(&[e]).unwrap().remove(0))
        .collect()
}

fn top_ids(terms: &[(u32, f64)], k: usize) -> Vec<u32> {
    let mut sorted = terms.to_vec();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted.into_iter().take(k).map(|(id, _)| id).collect()
}

fn as_terms(vector: &SparseVector) -> Vec<(u32, f64)> {
    vector
        .indices
        .iter()
        .zip(&vector.values)
        .map(|(i, v)| (*i, *v as f64))
        .collect()
}

#[test]
fn shipped_checkpoint_matches_the_numpy_reference() {
    let golden = golden();
    let encoder = encoder_from(&resolved());
    assert_eq!(encoder.identity().max_length, golden.max_length);
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let encodings = encoder.tokenizer().encode_batch(&texts).unwrap();
    assert!(
        encodings.iter().any(|e| e.truncated),
        "golden set must exercise truncation"
    );
    for (item, encoding) in golden.items.iter().zip(&encodings) {
        assert_eq!(encoding.ids, item.input_ids, "tokenization differs");
    }
    for (item, ours) in golden.items.iter().zip(encode_each(&encoder, &texts)) {
        let ours = as_terms(&ours);
        assert_eq!(
            top_ids(&ours, 20),
            top_ids(&item.terms, 20),
            "top-20 terms differ"
        );
        let weights: HashMap<u32, f64> = ours.iter().copied().collect();
        for (id, expected) in item.terms.iter().filter(|(_, w)| *w > 1e-3) {
            let got = weights.get(id).copied().unwrap_or(0.0);
            let relative = (got - expected).abs() / expected;
            // Relative 1e-3, plus 2e-6 absolute: a weight near 1e-3 is a logit near 1e-3 that
            // is a sum of products of magnitude ~1, where f32 (vs the float64 reference) is
            // good to ~1e-6 absolute.
            assert!(
                (got - expected).abs() <= 1e-3 * expected + 2e-6,
                "term {id}: {got} vs {expected} (relative {relative})"
            );
        }
    }
}

#[test]
fn padded_mixed_length_batch_equals_one_at_a_time() {
    let golden = golden();
    let encoder = encoder_from(&resolved());
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let alone = encode_each(&encoder, &texts);
    let encodings = encoder.tokenizer().encode_batch(&texts).unwrap();
    let lengths: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
    assert!(
        lengths.iter().max() > lengths.iter().min(),
        "lengths must differ so there is padding"
    );
    let batched = encoder
        .encode(&encodings.iter().collect::<Vec<_>>())
        .unwrap();
    assert_same_vectors(&alone, &batched, "padding must never add or remove terms");
}

/// Same terms, weights within 1e-5 (relative above 1): products of different shapes may sum
/// in a different order.
fn assert_same_vectors(a: &[SparseVector], b: &[SparseVector], what: &str) {
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.indices, b.indices, "{what}");
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!((x - y).abs() <= 1e-5 * x.max(1.0), "{what}: {x} vs {y}");
        }
    }
}

#[test]
fn sliced_logits_equal_whole_logits() {
    let golden = golden();
    let mut encoder = encoder_from(&resolved());
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let encodings = encoder.tokenizer().encode_batch(&texts).unwrap();
    let batch: Vec<_> = encodings.iter().collect();
    let whole = encoder.encode(&batch).unwrap();
    encoder.set_logits_budget(1); // one token (one sequence position) per slice
    let sliced = encoder.encode(&batch).unwrap();
    assert_same_vectors(&whole, &sliced, "slicing must not change the vectors");
}

/// Rewrites the shipped checkpoint with modern names and an explicit decoder.
fn variant_checkpoint(
    dir: &Path,
    decoder: impl Fn(&Tensor) -> Tensor,
    bias: impl Fn(&Tensor) -> Tensor,
) -> ResolvedModel {
    let shipped = resolved();
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(shipped.dir.join(file), dir.join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(shipped.dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut renamed: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.replace("LayerNorm.gamma", "LayerNorm.weight")
                    .replace("LayerNorm.beta", "LayerNorm.bias"),
                t.clone(),
            )
        })
        .collect();
    let embeddings = &tensors["bert.embeddings.word_embeddings.weight"];
    renamed.insert("cls.predictions.decoder.weight".into(), decoder(embeddings));
    let shipped_bias = renamed.remove("cls.predictions.bias").unwrap();
    renamed.insert("cls.predictions.decoder.bias".into(), bias(&shipped_bias));
    assert!(!renamed
        .keys()
        .any(|k| k.ends_with(".gamma") || k.ends_with(".beta")));
    candle_core::safetensors::save(&renamed, dir.join("model.safetensors")).unwrap();
    ResolvedModel {
        reference: "variant".into(),
        dir: dir.to_path_buf(),
        source: embed_collections::models::ModelSource::LocalDir,
        revision: None,
    }
}

#[test]
fn checkpoint_with_explicit_decoder_and_modern_names_loads() {
    let golden = golden();
    let texts: Vec<&str> = golden
        .items
        .iter()
        .map(|i| i.text.as_str())
        .take(4)
        .collect();
    let shipped = encode_each(&encoder_from(&resolved()), &texts);
    let tmp = tempfile::tempdir().unwrap();

    let same = variant_checkpoint(&tmp.path().join("same"), |e| e.clone(), |b| b.clone());
    assert_eq!(
        encode_each(&encoder_from(&same), &texts),
        shipped,
        "explicit copy of the tied weights"
    );

    // A decoder of zeros with a negative bias gives no positive logit: proves the explicit
    // tensors are the ones used.
    let zeroed = variant_checkpoint(
        &tmp.path().join("zeroed"),
        |e| e.zeros_like().unwrap(),
        |b| (b.zeros_like().unwrap() - 1.0).unwrap(),
    );
    assert!(encode_each(&encoder_from(&zeroed), &texts)
        .iter()
        .all(SparseVector::is_empty));
}

#[test]
fn forced_failure_falls_back_to_metadata_in_the_same_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let collection = tmp.path().join("in/notes");
    std::fs::create_dir_all(&collection).unwrap();
    let lines = [
        r#"{"id": "ok-1", "text": "Vitamin D supplements and bone health."}"#,
        r#"{"id": "weights", "text": "fails, has term weights", "metadata": {"sparse_features": {"term_weights": [{"term": "vitamin", "weight": 0.9}, {"term": "bone density", "weight": 0.4}]}}}"#,
        r#"{"id": "ok-2", "text": "Transformers encode text into vectors."}"#,
        r#"{"id": "keywords", "text": "fails, has keywords", "metadata": {"search_keywords": ["insulin"]}}"#,
        r#"{"id": "nothing", "text": "fails, has no metadata terms"}"#,
    ];
    std::fs::write(collection.join("chunks.jsonl"), lines.join("\n")).unwrap();
    let out = tmp.path().join("out");
    let flags = Overrides {
        input: Some(tmp.path().join("in")),
        output: Some(out.clone()),
        no_rerank: true,
        device: Some(DeviceSpec::Cpu),
        models_dir: Some(models_dir()),
        ..Overrides::default()
    };
    let config = config::resolve_layers(
        None,
        Default::default(),
        &Environment::from_pairs([("HOME", "/nonexistent")]),
        &flags,
    )
    .unwrap();
    let manager = ModelManager::new(models_dir(), tmp.path().join("hf"), true);
    // Any batch holding chunk 1 runs out of memory (even alone), any holding 3 or 4 fails: the
    // stage must narrow it down to those chunks (halving on OOM, splitting on failure).
    let runner =
        BatchRunner::new(config, manager).with_sparse_fault(Box::new(|items: &[usize]| {
            if items.contains(&1) {
                Some(Fault::OutOfMemory)
            } else if items.iter().any(|i| [3, 4].contains(i)) {
                Some(Fault::Fail)
            } else {
                None
            }
        }));
    runner.run().unwrap();

    let points = read_jsonl(&out.join("notes/points.jsonl"));
    let source = |i: usize| {
        points[i]["payload"]["sparse_source"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(source(0).as_deref(), Some("splade"));
    assert_eq!(source(2).as_deref(), Some("splade"));
    assert_eq!(source(1).as_deref(), Some("metadata"));
    assert_eq!(source(3).as_deref(), Some("metadata"));
    assert_eq!(
        source(4),
        None,
        "no model result and no metadata: no sparse vector"
    );
    assert!(points[4]["vector"].get("splade").is_none());

    // Metadata terms are mapped with the SPLADE tokenizer itself (independently loaded here).
    let tokenizer =
        tokenizers::Tokenizer::from_file(resolved().dir.join("tokenizer.json")).unwrap();
    let ids = |term: &str| tokenizer.encode(term, false).unwrap().get_ids().to_vec();
    let mut expected: Vec<(u32, f32)> = ids("vitamin")
        .into_iter()
        .map(|i| (i, 0.9))
        .chain(ids("bone density").into_iter().map(|i| (i, 0.4)))
        .collect();
    expected.sort_by_key(|(i, _)| *i);
    let sparse = &points[1]["vector"]["splade"];
    let indices: Vec<u32> = serde_json::from_value(sparse["indices"].clone()).unwrap();
    let values: Vec<f32> = serde_json::from_value(sparse["values"].clone()).unwrap();
    assert_eq!(
        indices,
        expected.iter().map(|(i, _)| *i).collect::<Vec<_>>()
    );
    assert_eq!(values, expected.iter().map(|(_, w)| *w).collect::<Vec<_>>());
    assert!(indices.iter().all(|i| *i < 30522), "vocabulary index space");
    let keyword: Vec<u32> =
        serde_json::from_value(points[3]["vector"]["splade"]["indices"].clone()).unwrap();
    assert_eq!(keyword, ids("insulin"));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let run = &manifest["collections"][0]["stages"]["sparse"]["runs"][0];
    assert_eq!(run["fallbacks"], 2);
    assert_eq!(run["missing"], 1);
    assert_eq!(run["failure_reasons"]["injected"], 2);
    assert_eq!(run["failure_reasons"]["out_of_memory"], 1);
    assert!(run["dispatch"]["oom_events"].as_u64().unwrap() > 0);
    assert!(run["retries"].as_u64().unwrap() > 0);
    assert!(manifest["warnings"].as_array().unwrap().iter().any(|w| w
        .as_str()
        .unwrap()
        .contains("SPLADE failed for 3 of 5 chunks")));
    assert!(manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "sparse"
            && m["weights_sha256"]
                == "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"));
}

/// f16 through candle (the default on a CUDA GPU), run here on the CPU: the vectors keep their
/// strongest terms and weights close to f32's.
#[test]
fn f16_through_candle_keeps_the_top_terms() {
    let golden = golden();
    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let resolved = resolved();
    let f32_encoder = encoder_from(&resolved);
    let device = select_device(&DeviceSpec::Cpu, Precision::F16).unwrap();
    assert_eq!(device.backend, EncoderBackend::Candle);
    let f16_encoder = SpladeEncoder::load(
        "splade",
        "splade-tiny",
        &resolved,
        &device,
        None,
        1 << 30,
        None,
    )
    .unwrap();
    let encodings = f32_encoder.tokenizer().encode_batch(&texts).unwrap();
    let batch: Vec<_> = encodings.iter().collect();
    let reference = f32_encoder.encode(&batch).unwrap();
    let half = f16_encoder.encode(&batch).unwrap();
    let (mut worst_overlap, mut worst_diff) = (1.0f64, 0.0f32);
    for (a, b) in reference.iter().zip(&half) {
        let terms = |v: &SparseVector| -> Vec<(u32, f64)> {
            v.indices
                .iter()
                .zip(&v.values)
                .map(|(&i, &x)| (i, x as f64))
                .collect()
        };
        let (top_a, top_b) = (top_ids(&terms(a), 10), top_ids(&terms(b), 10));
        let shared = top_a.iter().filter(|id| top_b.contains(id)).count();
        worst_overlap = worst_overlap.min(shared as f64 / top_a.len().max(1) as f64);
        let weights: HashMap<u32, f32> = terms(b).into_iter().map(|(i, x)| (i, x as f32)).collect();
        for (id, x) in a.indices.iter().zip(&a.values) {
            worst_diff = worst_diff.max((x - weights.get(id).copied().unwrap_or(0.0)).abs());
        }
    }
    eprintln!("f16 SPLADE (candle, CPU): worst top-10 overlap {worst_overlap:.2}, worst |dw| {worst_diff:.4}");
    assert!(worst_overlap >= 0.8, "top-10 overlap {worst_overlap}");
    assert!(worst_diff <= 0.05, "weight difference {worst_diff}");
}

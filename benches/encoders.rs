//! Encoder forward passes on real texts (the bundled SciFact slice) with the real models, for
//! both backends side by side: `packed` (ours) and `candle` (candle-transformers' BERT).
//! Needs `scripts/fetch-models.sh`; without the models it says so and measures nothing.
//!
//!     cargo bench --bench encoders                 # all
//!     cargo bench --bench encoders -- dense/       # one group
//!
//! Shapes: dense and SPLADE one batch of 32 chunks (≈ 250 tokens each, cut at the model's
//! limit), CrossEncoder 32 (query, chunk) pairs at 256 tokens. Each pass runs on one worker
//! with all threads (`Threads::Pool`), so the two backends are compared on equal terms;
//! `scripts/compare-runtimes.py` measures whole runs with the run's default of one worker per
//! thread. Criterion's throughput is in tokens (real, unpadded).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embed_collections::batching::BatchBudget;
use embed_collections::config::{
    CpuPrecision, DenseModelConfig, DeviceSpec, Environment, Precision, DEFAULT_DENSE_MODEL,
    DEFAULT_RERANK_MODEL, DEFAULT_SPARSE_MODEL,
};
use embed_collections::input::{
    discover_collections, read_collection, InputFormat, InvalidInputPolicy,
};
use embed_collections::models::bert_family::EncoderBackend;
use embed_collections::models::packed::Threads;
use embed_collections::models::{
    select_device, CrossEncoder, DenseEmbedder, ModelManager, ResolvedModel, SelectedDevice,
    SpladeEncoder,
};
use std::path::Path;

const BATCH: usize = 32;
const BACKENDS: [EncoderBackend; 2] = [EncoderBackend::Packed, EncoderBackend::Candle];

fn manager() -> ModelManager {
    let env = Environment::from_process();
    let models_dir = std::env::var_os("EMBED_COLLECTIONS_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env.default_models_dir());
    ModelManager::new(models_dir, std::env::temp_dir().join("no-hf-cache"), true)
}

fn resolve(model: &str) -> Option<ResolvedModel> {
    match manager().resolve(model, None, None) {
        Ok(resolved) => Some(resolved),
        Err(err) => {
            eprintln!("skipping {model}: {err} (run scripts/fetch-models.sh)");
            None
        }
    }
}

fn device(backend: EncoderBackend) -> Option<SelectedDevice> {
    let mut device = select_device(&DeviceSpec::Cpu, Precision::F32).ok()?;
    device.backend = backend;
    Some(device)
}

fn threads() -> Threads {
    Threads::Pool(rayon::current_num_threads())
}

/// The first BATCH chunk texts of the bundled slice, and its first queries.
fn texts() -> Option<(Vec<String>, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/collections");
    let collections = discover_collections(&root, None, &[InputFormat::Jsonl]).ok()?;
    // The 300-abstract slice: the texts BENCHMARKS.md was measured on.
    let mini = collections.iter().find(|c| c.name == "scifact-mini")?;
    let chunks = read_collection(mini, InvalidInputPolicy::Error)
        .ok()?
        .chunks;
    let texts = chunks
        .iter()
        .take(BATCH)
        .map(|c| c.embedding_text().into_owned())
        .collect();
    let queries = std::fs::read_to_string(root.join("scifact-mini/queries.jsonl"))
        .ok()?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .take(BATCH)
        .collect();
    Some((texts, queries))
}

fn dense(c: &mut Criterion) {
    let (Some(resolved), Some((texts, _))) = (resolve(DEFAULT_DENSE_MODEL), texts()) else {
        return;
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let budget = BatchBudget {
        max_tokens: 1 << 20,
        max_items: BATCH,
    };
    let mut group = c.benchmark_group("dense");
    group.sample_size(10);
    for backend in BACKENDS {
        let Some(device) = device(backend) else {
            return;
        };
        let config = DenseModelConfig::for_model("minilm", DEFAULT_DENSE_MODEL);
        let Ok(mut model) = DenseEmbedder::load(&config, &resolved, &device) else {
            return;
        };
        model.set_parallelism(1, threads());
        let tokens = model
            .embed_documents(&refs, budget)
            .map(|o| o.stats.tokens)
            .unwrap_or(0);
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(
            BenchmarkId::new("minilm_batch32", backend.as_str()),
            &refs,
            |b, refs| b.iter(|| model.embed_documents(refs, budget).map(|o| o.vectors.len())),
        );
    }
    group.finish();
}

fn sparse(c: &mut Criterion) {
    let (Some(resolved), Some((texts, _))) = (resolve(DEFAULT_SPARSE_MODEL), texts()) else {
        return;
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("sparse");
    group.sample_size(10);
    for backend in BACKENDS {
        let Some(device) = device(backend) else {
            return;
        };
        let Ok(mut model) = SpladeEncoder::load(
            "splade",
            DEFAULT_SPARSE_MODEL,
            &resolved,
            &device,
            None,
            256 << 20,
            None,
        ) else {
            return;
        };
        model.set_parallelism(1, threads());
        let Ok(encodings) = model.tokenizer().encode_batch(&refs) else {
            return;
        };
        let batch: Vec<_> = encodings.iter().collect();
        let tokens: usize = encodings.iter().map(|e| e.len()).sum();
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(
            BenchmarkId::new("splade_tiny_batch32", backend.as_str()),
            &batch,
            |b, batch| b.iter(|| model.encode(batch).map(|v| v.len())),
        );
    }
    group.finish();
}

fn rerank(c: &mut Criterion) {
    let (Some(resolved), Some((texts, queries))) = (resolve(DEFAULT_RERANK_MODEL), texts()) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = queries
        .iter()
        .zip(&texts)
        .map(|(q, t)| (q.as_str(), t.as_str()))
        .collect();
    let mut group = c.benchmark_group("rerank");
    group.sample_size(10);
    // The packed encoder also with its INT8 products (and bf16 where the CPU has it).
    let mut variants = vec![
        (EncoderBackend::Packed, CpuPrecision::F32),
        (EncoderBackend::Packed, CpuPrecision::Int8),
        (EncoderBackend::Candle, CpuPrecision::F32),
    ];
    if embed_collections::models::packed::bf16::supported() {
        variants.insert(2, (EncoderBackend::Packed, CpuPrecision::Bf16));
    }
    for (backend, precision) in variants {
        let Some(device) = device(backend) else {
            return;
        };
        let Ok(mut model) = CrossEncoder::load(
            DEFAULT_RERANK_MODEL,
            &resolved,
            &device,
            Some(256),
            Some(precision),
        ) else {
            return;
        };
        model.set_parallelism(1, threads());
        let Ok(encodings) = model.tokenizer().encode_pairs(&pairs) else {
            return;
        };
        let batch: Vec<_> = encodings.iter().collect();
        let tokens: usize = encodings.iter().map(|e| e.len()).sum();
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(
            BenchmarkId::new(
                "ms_marco_minilm_l12_pairs32",
                match precision {
                    CpuPrecision::F32 => backend.as_str().to_string(),
                    other => format!("{}-{}", backend.as_str(), other.as_str()),
                },
            ),
            &batch,
            |b, batch| b.iter(|| model.score(batch).map(|v| v.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, dense, sparse, rerank);
criterion_main!(benches);

//! Dense encoder throughput on real texts (the bundled SciFact slice) with the real
//! all-MiniLM-L6-v2. Needs `scripts/fetch-models.sh`; without the models it says so and exits.
//!
//!     cargo bench --bench dense_encoder
//!
//! Criterion reports time per batch of 32 texts; tokens/s = tokens per batch (printed) / time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use embed_collections::batching::BatchBudget;
use embed_collections::config::{DenseModelConfig, DeviceSpec, Environment, Precision};
use embed_collections::input::{
    discover_collections, read_collection, InputFormat, InvalidInputPolicy,
};
use embed_collections::models::{select_device, DenseEmbedder, ModelManager};
use std::path::Path;

fn load() -> Option<(DenseEmbedder, Vec<String>)> {
    let env = Environment::from_process();
    let models_dir = std::env::var_os("EMBED_COLLECTIONS_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| env.default_models_dir());
    let manager = ModelManager::new(models_dir, std::env::temp_dir().join("no-hf-cache"), true);
    let model = "sentence-transformers/all-MiniLM-L6-v2";
    let resolved = match manager.resolve(model, None, None) {
        Ok(resolved) => resolved,
        Err(err) => {
            eprintln!("skipping dense_encoder bench: {err} (run scripts/fetch-models.sh)");
            return None;
        }
    };
    let config = DenseModelConfig::for_model("minilm", model);
    let device = select_device(&DeviceSpec::Cpu, Precision::F32).ok()?;
    let embedder = DenseEmbedder::load(&config, &resolved, &device).ok()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/collections");
    let collections = discover_collections(&root, None, &[InputFormat::Jsonl]).ok()?;
    let chunks = read_collection(collections.first()?, InvalidInputPolicy::Error)
        .ok()?
        .chunks;
    let texts = chunks
        .iter()
        .take(32)
        .map(|c| c.embedding_text().into_owned())
        .collect();
    Some((embedder, texts))
}

fn dense(c: &mut Criterion) {
    let Some((embedder, texts)) = load() else {
        return;
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let budget = BatchBudget {
        max_tokens: 1 << 16,
        max_items: 32,
    };
    let tokens = embedder
        .embed_documents(&refs, budget)
        .map(|o| o.stats.tokens)
        .unwrap_or(0);
    eprintln!(
        "dense_encoder: batch of {} texts, {tokens} tokens",
        refs.len()
    );
    let mut group = c.benchmark_group("dense");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function("minilm_batch32_scifact", |b| {
        b.iter(|| {
            embedder
                .embed_documents(&refs, budget)
                .map(|o| o.vectors.len())
        })
    });
    group.finish();
}

criterion_group!(benches, dense);
criterion_main!(benches);

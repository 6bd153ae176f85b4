//! `embed-collections bench`: encoder throughput on a file of texts, end to end (tokenisation,
//! batching, forward pass, head), printed as one JSON line per repetition. It is the "our side"
//! of `scripts/compare-runtimes.py`, which runs a reference runtime on the same texts with the
//! same batch policy and threads. Texts never reach the output: only counts and timings.

use crate::batching::BatchBudget;
use crate::config::{CpuPrecision, DenseModelConfig, DeviceSpec, Precision};
use crate::models::bert_family::EncoderBackend;
use crate::models::packed::Threads;
use crate::models::tokenize::Encoded;
use crate::models::{
    run_encoded, select_device, CrossEncoder, DenseEmbedder, Encoder, ModelError, ModelManager,
    SpladeEncoder,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which encoder to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchModel {
    Dense,
    Sparse,
    Rerank,
}

/// What to run; mirrors the flags of the subcommand.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub model: BenchModel,
    pub model_ref: String,
    pub texts: PathBuf,
    pub limit: Option<usize>,
    pub batch_size: usize,
    pub max_length: Option<usize>,
    pub backend: EncoderBackend,
    /// Concurrent batch workers (each with `threads` per pass).
    pub workers: usize,
    pub threads: Threads,
    pub repeat: usize,
    /// The packed encoder's products (`bf16`: AVX512-BF16 CPUs only).
    pub precision: CpuPrecision,
}

/// One repetition's figures.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub model: BenchModel,
    pub backend: &'static str,
    pub precision: String,
    pub workers: usize,
    pub threads_per_pass: usize,
    pub items: usize,
    pub tokens: usize,
    pub batches: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub items_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}:{line}: {message}")]
    Texts {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A line of the texts file: `{"text": …}`, plus `"query"` for rerank pairs.
#[derive(Deserialize)]
struct TextLine {
    text: String,
    #[serde(default)]
    query: Option<String>,
}

fn read_texts(path: &Path, limit: Option<usize>) -> Result<Vec<TextLine>, BenchError> {
    let content = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    for (number, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: TextLine = serde_json::from_str(line).map_err(|err| BenchError::Texts {
            path: path.to_path_buf(),
            line: number + 1,
            message: format!("expected {{\"text\": …, \"query\"?: …}}: {err}"),
        })?;
        lines.push(parsed);
        if limit.is_some_and(|limit| lines.len() >= limit) {
            break;
        }
    }
    Ok(lines)
}

/// Loads the model once and runs the texts `repeat` times.
pub fn run_bench(spec: &BenchSpec, manager: &ModelManager) -> Result<Vec<BenchResult>, BenchError> {
    let lines = read_texts(&spec.texts, spec.limit)?;
    let mut device = select_device(&DeviceSpec::Cpu, Precision::F32)?;
    device.backend = spec.backend;
    let resolved = manager.resolve(&spec.model_ref, None, None)?;
    let budget = BatchBudget {
        max_tokens: usize::MAX / 2,
        max_items: spec.batch_size.max(1),
    };
    let workers = spec.workers.max(1);
    let mut results = Vec::with_capacity(spec.repeat);
    match spec.model {
        BenchModel::Dense => {
            let mut config = DenseModelConfig::for_model("bench", &spec.model_ref);
            config.max_length = spec.max_length;
            config.precision = Some(spec.precision);
            let mut model = DenseEmbedder::load(&config, &resolved, &device)?;
            model.set_parallelism(workers, spec.threads);
            let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
            for _ in 0..spec.repeat {
                let started = Instant::now();
                let output = model.embed_documents(&texts, budget)?;
                results.push(result(
                    spec,
                    output.stats.tokens,
                    output.stats.batches,
                    texts.len(),
                    started,
                ));
            }
        }
        BenchModel::Sparse => {
            let mut model = SpladeEncoder::load(
                "bench",
                &spec.model_ref,
                &resolved,
                &device,
                None,
                256 << 20,
                Some(spec.precision),
            )?;
            model.set_parallelism(workers, spec.threads);
            let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
            for _ in 0..spec.repeat {
                let started = Instant::now();
                let encodings = model.tokenizer().encode_batch(&texts)?;
                let (tokens, batches) = dispatch(&model, workers, &encodings, budget)?;
                results.push(result(spec, tokens, batches, texts.len(), started));
            }
        }
        BenchModel::Rerank => {
            let mut model = CrossEncoder::load(
                &spec.model_ref,
                &resolved,
                &device,
                spec.max_length,
                Some(spec.precision),
            )?;
            model.set_parallelism(workers, spec.threads);
            let pairs: Vec<(&str, &str)> = lines
                .iter()
                .map(|l| (l.query.as_deref().unwrap_or(""), l.text.as_str()))
                .collect();
            for _ in 0..spec.repeat {
                let started = Instant::now();
                let encodings = model.tokenizer().encode_pairs(&pairs)?;
                let (tokens, batches) = dispatch(&model, workers, &encodings, budget)?;
                results.push(result(spec, tokens, batches, pairs.len(), started));
            }
        }
    }
    Ok(results)
}

/// Runs every encoding through `model` on `workers` workers, the path every stage takes
/// ([`run_encoded`]); returns (tokens, batches).
fn dispatch<M: Encoder>(
    model: &M,
    workers: usize,
    encodings: &[Encoded],
    budget: BatchBudget,
) -> Result<(usize, usize), ModelError> {
    let outcome = run_encoded(
        &vec![model; workers.max(1)],
        encodings,
        budget,
        None,
        &|i| i,
        &|_| {},
    )
    .map_err(|err| ModelError::Item {
        message: err.to_string(),
    })?;
    for result in outcome.results {
        result?;
    }
    Ok((outcome.stats.tokens, outcome.stats.batches))
}

fn result(
    spec: &BenchSpec,
    tokens: usize,
    batches: usize,
    items: usize,
    started: Instant,
) -> BenchResult {
    let seconds = started.elapsed().as_secs_f64();
    BenchResult {
        model: spec.model,
        backend: spec.backend.as_str(),
        precision: spec.precision.as_str().to_string(),
        workers: spec.workers.max(1),
        threads_per_pass: match spec.threads {
            Threads::Single => 1,
            Threads::Pool(n) => n,
        },
        items,
        tokens,
        batches,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        items_per_s: items as f64 / seconds.max(1e-9),
    }
}

//! The TOML file as written by users: every field optional, unknown keys rejected.
//!
//! These structs only mirror the file. Defaults, environment and flags are merged in
//! [`super::resolve`], which also records where each effective value came from.

use super::values::{
    ByteSize, CpuPrecision, DeviceSpec, FusionMethod, LogFormat, Precision, ProgressMode,
    RerankBlend, RerankBudget, RetrievalMethod, Secret, SparseFallback, Timeout,
};
use crate::input::{InputFormat, InvalidInputPolicy};
use crate::models::Pooling;
use serde::Deserialize;
use std::path::PathBuf;

/// The whole run configuration file (`--config run.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub input: FileInput,
    #[serde(default)]
    pub output: FileOutput,
    #[serde(default)]
    pub models: FileModels,
    #[serde(default)]
    pub dense: FileDense,
    #[serde(default)]
    pub sparse: FileSparse,
    #[serde(default)]
    pub fusion: FileFusion,
    #[serde(default)]
    pub rerank: FileRerank,
    #[serde(default)]
    pub eval: FileEval,
    #[serde(default)]
    pub gpu: FileGpu,
    #[serde(default)]
    pub telemetry: FileTelemetry,
    #[serde(default)]
    pub shard: FileShard,
    #[serde(default)]
    pub serve: FileServe,
}

/// `[serve]`: `embed-collections serve` (the other commands ignore it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServe {
    /// Address to listen on; default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Bearer token the inference routes require.
    pub api_key: Option<Secret>,
    /// A file holding that token (a Kubernetes Secret mounted as a file). Relative to the
    /// config file.
    pub api_key_file: Option<PathBuf>,
    /// Tokens one batch of concurrent requests' inputs may hold.
    pub max_batch_tokens: Option<usize>,
    /// Inputs one request may carry.
    pub max_client_batch_size: Option<usize>,
    /// Inputs accepted at once across requests; beyond, 429.
    pub max_concurrent_inputs: Option<usize>,
    /// Largest request body.
    pub payload_limit: Option<ByteSize>,
    /// Longest a request may take, queue included.
    pub request_timeout: Option<Timeout>,
    /// Origins allowed by CORS; none (the default) sends no CORS headers.
    pub cors_origins: Option<Vec<String>>,
}

/// `[shard]` (which shard a process is comes from `--shard` or the environment, never the
/// file: every shard reads the same file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileShard {
    /// Collections above this many bytes of chunk files are split among the shards by chunk
    /// id; smaller ones go whole to one shard (by name). Default 64MiB.
    pub split_bytes: Option<ByteSize>,
}

/// `[input]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    /// Directory of collections, or one chunk file. Relative to the config file.
    pub root: Option<PathBuf>,
    /// Only these collections (names as discovered).
    pub collections: Option<Vec<String>>,
    /// Chunk file formats to read; default `["jsonl", "json"]`.
    pub formats: Option<Vec<InputFormat>>,
    /// `error` (default) stops a collection at the first bad record; `skip` counts and reports it.
    pub on_invalid: Option<InvalidInputPolicy>,
    /// Chunks per streaming window (read → dense → sparse → append points); default 10000.
    pub window_chunks: Option<usize>,
}

/// `[output]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    /// Output directory. Relative to the config file.
    pub dir: Option<PathBuf>,
    /// Copy chunk text (and title) into point payloads. Default false (privacy).
    pub include_text: Option<bool>,
    /// Formats of the points and query vectors; default `["jsonl"]`.
    pub formats: Option<Vec<crate::config::OutputFormat>>,
    /// The Parquet type of dense vectors; default `fixed_size_list`.
    pub parquet_dense: Option<crate::config::ParquetDense>,
    /// An earlier run's output whose unchanged vectors are reused. Relative to the config file.
    pub reuse: Option<PathBuf>,
}

/// `[models]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModels {
    /// Where `scripts/fetch-models.sh` puts models; searched before the Hugging Face cache.
    pub dir: Option<PathBuf>,
}

/// `[dense]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDense {
    /// One entry per bi-encoder; each becomes a named vector in the points.
    pub models: Option<Vec<FileDenseModel>>,
    /// Padded tokens per batch (batch size × longest sequence).
    pub batch_tokens: Option<usize>,
    /// Most texts per batch, whatever their length.
    pub max_batch_size: Option<usize>,
}

/// `[[dense.models]]`
#[derive(Clone, Debug, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileDenseModel {
    /// Vector name in the points; default: the last segment of `model`.
    pub name: Option<String>,
    /// Hugging Face id or local directory.
    pub model: String,
    /// Hub revision (branch, tag or commit); default `main`.
    pub revision: Option<String>,
    /// Override of the model's `max_seq_length`.
    pub max_length: Option<usize>,
    /// Override of the model's pooling: `mean`, `cls`, `max` or `last_token`.
    pub pooling: Option<Pooling>,
    /// Override of the model's Normalize module.
    pub normalize: Option<bool>,
    /// Prompt prepended to queries (default: the model's `query` prompt).
    pub query_prompt: Option<String>,
    /// Prompt prepended to documents (default: the model's `document` prompt, or none).
    pub document_prompt: Option<String>,
    /// This model's list's weight in fusion (default: `fusion.dense_weight`).
    pub fusion_weight: Option<f64>,
    /// Its CPU products: `f32`, `bf16` or `int8` (default: as `gpu.precision`).
    pub precision: Option<CpuPrecision>,
}

/// `[sparse]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSparse {
    pub enabled: Option<bool>,
    pub model: Option<String>,
    pub name: Option<String>,
    pub max_terms: Option<usize>,
    pub fallback: Option<SparseFallback>,
    /// CPU products: `f32`, `bf16` or `int8` (default: as `gpu.precision`).
    pub precision: Option<CpuPrecision>,
}

/// `[fusion]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFusion {
    pub method: Option<FusionMethod>,
    pub normalization: Option<crate::fusion::Normalization>,
    pub rrf_k: Option<f64>,
    pub depth: Option<usize>,
    pub dense_weight: Option<f64>,
    pub sparse_weight: Option<f64>,
    pub retrieval: Option<RetrievalMethod>,
    pub retrieval_memory: Option<ByteSize>,
}

/// `[rerank]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRerank {
    pub enabled: Option<bool>,
    pub model: Option<String>,
    pub queries: Option<PathBuf>,
    pub candidates: Option<usize>,
    pub top_k: Option<usize>,
    pub batch_tokens: Option<usize>,
    /// Cap on (query, passage) pair length; default: the model's max positions.
    pub max_length: Option<usize>,
    /// Probe queries sampled when there is no query file (0 turns the probe off).
    pub probe_queries: Option<usize>,
    /// CPU products: `f32`, `bf16` or `int8` (default: as `gpu.precision`).
    pub precision: Option<CpuPrecision>,
    /// The overhead allowed as a fraction of the dense stage's time, or `off`.
    pub budget: Option<RerankBudget>,
    /// With a budget, the fewest candidates per query (never below `top_k`).
    pub min_candidates: Option<usize>,
    /// How the CrossEncoder's order and the fused order make the final list.
    pub blend: Option<RerankBlend>,
    /// The CrossEncoder's weight in the convex blend.
    pub blend_weight: Option<f64>,
}

/// `[eval]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEval {
    pub qrels: Option<PathBuf>,
}

/// `[gpu]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGpu {
    /// `auto`, `cpu`, or `cuda:0,1`.
    pub devices: Option<DeviceSpec>,
    /// Per-device ceiling, e.g. `"12GiB"`.
    pub memory_ceiling: Option<ByteSize>,
    /// `auto`, `f32`, `f16` or `bf16`.
    pub precision: Option<Precision>,
}

/// `[telemetry]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTelemetry {
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Prometheus text file; default `<output.dir>/metrics.prom`.
    pub metrics_file: Option<PathBuf>,
    /// `auto` (bars on a terminal, plain lines otherwise), `lines` or `never`.
    pub progress: Option<ProgressMode>,
}

/// Checks `raw` as the value of `key`, exactly as the file would take it: TOML syntax
/// (`true`, `50`, `["a", "b"]`, `[{ model = "m" }]`), where a bare word that is no TOML value
/// is a string (`cuda:0,1`, `12GiB`, `/data/in`).
pub fn keyed_value(key: &str, raw: &str) -> Result<toml::Value, String> {
    let Some(setting) = super::keys::find(key) else {
        let near = super::keys::nearest(key);
        return Err(if near.is_empty() {
            format!("unknown setting `{key}` (the keys are listed in docs/configuration.md and by `embed-collections config`)")
        } else {
            let near: Vec<String> = near.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown setting `{key}`; did you mean {}?", near.join(", "))
        });
    };
    let (section, field) = setting.split();
    let check = |value: toml::Value| -> Result<toml::Value, String> {
        let mut inner = toml::Table::new();
        inner.insert(field.to_string(), value.clone());
        let mut outer = toml::Table::new();
        outer.insert(section.to_string(), toml::Value::Table(inner));
        toml::Value::Table(outer)
            .try_into::<FileConfig>()
            .map(|_| value)
            .map_err(|err| one_line(&err.to_string()))
    };
    let parsed = toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("value"));
    match parsed {
        // A TOML value of the wrong type may still be a valid string (a vector name such as
        // `2024-01-01`); if not, its own error says what was expected.
        Some(value) => check(value.clone()).or_else(|err| match value {
            toml::Value::String(_) => Err(err),
            _ => check(toml::Value::String(raw.to_string())).map_err(|_| err),
        }),
        None => check(toml::Value::String(raw.to_string())),
    }
    .or_else(|err| {
        // The environment's usual booleans (1/0, yes/no, on/off) for a boolean setting.
        let word = match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" => Some(true),
            "0" | "no" | "off" => Some(false),
            _ => None,
        };
        match word {
            Some(b) => check(toml::Value::Boolean(b)).map_err(|_| err),
            None => Err(err),
        }
    })
}

/// A (toml) error message on one line.
pub(super) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

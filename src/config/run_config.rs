//! The effective run configuration ([`RunConfig`]) and its sections, as the resolver
//! ([`super::resolve`]) produces them: typed, complete, validated; and the defaults and the
//! rerank probe policy they are built with.

use super::provenance::{Provenance, Source};
use super::values::Pooling;
use super::values::{
    ByteSize, CpuPrecision, DeviceSpec, FusionMethod, LogFormat, Precision, ProgressMode,
    RerankBlend, RerankBudget, RetrievalMethod, Secret, SparseFallback, Timeout,
};
use crate::input::{InputFormat, InvalidInputPolicy};
use crate::shard::Shard;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default dense model when the config names none.
pub const DEFAULT_DENSE_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Default SPLADE model (as laid out by `scripts/fetch-models.sh`).
pub const DEFAULT_SPARSE_MODEL: &str = "splade-tiny";
/// Default CrossEncoder.
pub const DEFAULT_RERANK_MODEL: &str = "cross-encoder/ms-marco-MiniLM-L-12-v2";

/// The effective run configuration.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The config file, if one was given.
    pub config_file: Option<PathBuf>,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub models: ModelsConfig,
    pub dense: DenseConfig,
    pub sparse: SparseConfig,
    pub fusion: FusionConfig,
    pub rerank: RerankingConfig,
    pub eval: EvalConfig,
    pub gpu: GpuConfig,
    pub telemetry: TelemetryConfig,
    pub shard: ShardConfig,
    pub serve: ServeConfig,
    /// Where each setting above came from.
    pub provenance: Provenance,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputConfig {
    pub root: PathBuf,
    pub collections: Option<Vec<String>>,
    pub formats: Vec<InputFormat>,
    pub on_invalid: InvalidInputPolicy,
    /// Chunks per streaming window: memory is bounded by a window, and a window is the unit
    /// `--resume` continues from.
    pub window_chunks: usize,
}

/// Sharded runs (see [`crate::shard`]).
#[derive(Clone, Debug, Serialize)]
pub struct ShardConfig {
    /// This process's shard; `None` for an unsharded run (and for `merge`).
    pub spec: Option<Shard>,
    /// Collections with more bytes of chunk files than this are split among the shards by
    /// chunk id; smaller ones go whole to one shard.
    pub split_bytes: ByteSize,
}

/// `embed-collections serve` (see [`crate::serve`]).
#[derive(Clone, Debug, Serialize)]
pub struct ServeConfig {
    pub listen: String,
    /// The bearer token, from `serve.api_key` or read from `serve.api_key_file` (serialised
    /// redacted).
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub max_batch_tokens: usize,
    pub max_client_batch_size: usize,
    pub max_concurrent_inputs: usize,
    pub payload_limit: ByteSize,
    pub request_timeout: Timeout,
    pub cors_origins: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputConfig {
    pub dir: PathBuf,
    pub include_text: bool,
    /// The formats of the points and query vectors (`jsonl`, `parquet`), in a fixed order.
    pub formats: Vec<crate::config::OutputFormat>,
    /// The Parquet type of dense vectors.
    pub parquet_dense: crate::config::ParquetDense,
    /// `--reuse`: an earlier run's output (possibly this one's own directory).
    pub reuse: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelsConfig {
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct DenseConfig {
    pub models: Vec<DenseModelConfig>,
    pub batch_tokens: usize,
    pub max_batch_size: usize,
}

/// One bi-encoder; `None` fields defer to what the model's own files say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DenseModelConfig {
    pub name: String,
    pub model: String,
    pub revision: Option<String>,
    pub max_length: Option<usize>,
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub query_prompt: Option<String>,
    pub document_prompt: Option<String>,
    /// This model's list's weight in fusion; `None`: `fusion.dense_weight`.
    pub fusion_weight: Option<f64>,
    /// The dimension the model must have (set by a model alias); `None`: whatever it has.
    pub expected_dim: Option<usize>,
    /// Its packed CPU encoder's products; `None`: as `gpu.precision`.
    pub precision: Option<CpuPrecision>,
}

impl DenseModelConfig {
    /// A model with every setting deferred to its own files.
    pub fn for_model(name: &str, model: &str) -> Self {
        Self {
            name: name.to_string(),
            model: model.to_string(),
            revision: None,
            max_length: None,
            pooling: None,
            normalize: None,
            query_prompt: None,
            document_prompt: None,
            fusion_weight: None,
            expected_dim: None,
            precision: None,
        }
    }

    /// The weight of this model's list in fusion.
    pub fn weight(&self, fusion: &FusionConfig) -> f64 {
        self.fusion_weight.unwrap_or(fusion.dense_weight)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SparseConfig {
    pub enabled: bool,
    pub model: String,
    pub name: String,
    pub max_terms: Option<usize>,
    pub fallback: SparseFallback,
    /// The packed CPU encoder's products; `None`: as `gpu.precision`.
    pub precision: Option<CpuPrecision>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FusionConfig {
    pub method: FusionMethod,
    /// How `convex` normalises each list's scores.
    pub normalization: crate::fusion::Normalization,
    pub rrf_k: f64,
    pub depth: usize,
    pub dense_weight: f64,
    pub sparse_weight: f64,
    /// How the stored vectors are searched; the results do not depend on it.
    pub retrieval: RetrievalMethod,
    /// The most memory the in-memory index may hold; above it the scan is used.
    pub retrieval_memory: ByteSize,
}

impl RunConfig {
    /// The configured fusion with each list's weight; for `auto`, the menu's baseline (RRF with
    /// the configured k and weights), which stays unless the judge finds clear evidence.
    pub fn fusion(&self) -> crate::fusion::Fusion {
        crate::fusion::Fusion {
            method: self
                .fusion
                .method
                .fixed()
                .unwrap_or(crate::fusion::Method::Rrf),
            rrf_k: self.fusion.rrf_k,
            normalization: self.fusion.normalization,
            dense_weights: self
                .dense
                .models
                .iter()
                .map(|model| model.weight(&self.fusion))
                .collect(),
            sparse_weight: self.fusion.sparse_weight,
        }
    }
}

/// Probe queries at most, where `rerank.probe_queries` is not set.
pub const PROBE_QUERIES_MAX: usize = 32;
/// Probe queries at least (a collection with fewer chunks probes each of them).
pub const PROBE_QUERIES_MIN: usize = 4;
/// The probe's share of the dense stage's cost it is sized to.
pub const PROBE_COST_SHARE: f64 = 0.05;
/// What one (query, passage) pair costs in the CrossEncoder relative to embedding one chunk:
/// twice the layers (12 against MiniLM's 6) on about the same tokens. The manifest's overhead
/// report gives the real figure of every run.
pub const PROBE_PAIR_COST: f64 = 2.0;

/// How many probe queries a collection of `chunks` gets when the setting is left to its
/// default: enough pairs (`queries × candidates`) to cost about [`PROBE_COST_SHARE`] of the
/// dense stage (each pair [`PROBE_PAIR_COST`] chunk embeddings), between [`PROBE_QUERIES_MIN`]
/// and [`PROBE_QUERIES_MAX`]. With 100 candidates: 4 queries below 20,000 chunks, 32 from
/// 128,000 on.
pub fn probe_budget(chunks: usize, candidates: usize) -> usize {
    let affordable =
        chunks as f64 * PROBE_COST_SHARE / (PROBE_PAIR_COST * candidates.max(1) as f64);
    (affordable.floor() as usize).clamp(PROBE_QUERIES_MIN, PROBE_QUERIES_MAX)
}

/// `[rerank]`: the CrossEncoder stage.
#[derive(Clone, Debug, Serialize)]
pub struct RerankingConfig {
    pub enabled: bool,
    pub model: String,
    pub queries: Option<PathBuf>,
    pub candidates: usize,
    pub top_k: usize,
    pub batch_tokens: usize,
    /// Cap on (query, passage) pair length; `None` = the model's max positions.
    pub max_length: Option<usize>,
    /// Probe queries sampled when there is no query file (0 turns the probe off); `None`:
    /// sized to the collection ([`probe_budget`]).
    pub probe_queries: Option<usize>,
    /// The packed CPU encoder's products; `None`: as `gpu.precision`.
    pub precision: Option<CpuPrecision>,
    /// The overhead allowed (sparse + fusion + rerank over the dense stage's time); it limits
    /// the candidates per query (ranking::budget).
    pub budget: RerankBudget,
    /// With a budget, the fewest candidates per query; the floor is this or `top_k`, the larger.
    pub min_candidates: usize,
    /// How the CrossEncoder's order and the fused order make the final list.
    pub blend: RerankBlend,
    /// The CrossEncoder's weight in the convex blend (0 to 1).
    pub blend_weight: f64,
}

impl RerankingConfig {
    /// The candidates every query gets under a budget: `min_candidates` or `top_k`, whichever
    /// is larger, and no more than `candidates`.
    pub fn budget_floor(&self) -> usize {
        self.min_candidates.max(self.top_k).min(self.candidates)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalConfig {
    pub qrels: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GpuConfig {
    pub devices: DeviceSpec,
    pub memory_ceiling: ByteSize,
    pub precision: Precision,
}

#[derive(Clone, Debug, Serialize)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub metrics_file: Option<PathBuf>,
    pub progress: ProgressMode,
}

impl RunConfig {
    /// A path as logs, tables and the manifest show it ([`super::paths::shown_path`]):
    /// absolute when given absolute, else relative to the working directory unless that
    /// climbs above it.
    pub fn display_path(&self, path: &Path) -> PathBuf {
        super::paths::shown_path(path)
    }

    /// This configuration with every path shown as [`Self::display_path`] shows it (for the
    /// manifest).
    pub fn for_manifest(&self) -> RunConfig {
        let mut shown = self.clone();
        let show = |p: &Path| self.display_path(p);
        shown.config_file = self
            .config_file
            .as_deref()
            .and_then(Path::file_name)
            .map(PathBuf::from);
        shown.input.root = show(&self.input.root);
        shown.output.dir = show(&self.output.dir);
        shown.output.reuse = self.output.reuse.as_deref().map(show);
        shown.models.dir = show(&self.models.dir);
        shown.rerank.queries = self.rerank.queries.as_deref().map(show);
        shown.eval.qrels = self.eval.qrels.as_deref().map(show);
        shown.telemetry.metrics_file = self.telemetry.metrics_file.as_deref().map(show);
        for source in shown.provenance.0.values_mut() {
            if let Source::File(path) = source {
                *path = path
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| path.clone());
            }
        }
        shown
    }
}

/// One `[[dense.models]]` entry as written (in the file, `--set` or the environment); the
/// resolver turns it into a [`DenseModelConfig`].
#[derive(Clone, Debug, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenseModelEntry {
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

impl DenseModelEntry {
    /// An entry naming only its model: everything else as the model's own files say.
    pub fn for_model(model: &str) -> Self {
        Self {
            name: None,
            model: model.to_string(),
            revision: None,
            max_length: None,
            pooling: None,
            normalize: None,
            query_prompt: None,
            document_prompt: None,
            fusion_weight: None,
            precision: None,
        }
    }
}

//! `manifest.json`: what ran, with what, where each setting came from, and what happened per
//! collection and stage. Ids, counts and hashes only — never chunk or query text.

use crate::batching::BatchStats;
use crate::config::{RetrievalMethod, RunConfig};
use crate::dispatch::DispatchStats;
use crate::gpu::{LeaseEvent, StageMemory};
use crate::input::SkipReport;
use crate::models::ModelIdentity;
use crate::ranking::budget::RerankPlan;
use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The run manifest.
#[derive(Serialize)]
pub struct Manifest<'a> {
    pub schema_version: u32,
    pub tool: Tool,
    pub run_id: String,
    /// The process that ran (or runs) it: a `running` manifest whose pid is gone was killed.
    pub pid: u32,
    pub started_at: String,
    /// Absent while the run is in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub status: RunStatus,
    /// Why the run failed before or between collections (per-collection errors are in
    /// `collections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The earlier starts this run resumed (oldest first); empty for a run started afresh.
    pub resumed_from: Vec<Attempt>,
    /// Effective configuration, with `provenance` naming each setting's source.
    pub config: &'a RunConfig,
    pub models: Vec<ModelIdentity>,
    /// What a vector database needs to create the collection the points go into.
    pub vectors: Vec<VectorSchema>,
    /// The config file as given (absolute path) and its sha256, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<FileRecord>,
    /// Every file the run wrote (outputs and metrics), with size, lines and sha256; written
    /// once the run is over.
    pub files: Vec<FileRecord>,
    /// Seconds from start to the end of the run (absent while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// A shard of a sharded run: which one, the partition and what it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// A merge: the shards it merged, in index order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
    pub collections: Vec<CollectionReport>,
    /// Device lease, release and memory events of every stage, in order.
    pub leases: Vec<LeaseEvent>,
    /// What the CUDA start-up check found (driver, libraries, GPUs), when the run used a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda: Option<crate::gpu::runtime::CudaReport>,
    pub warnings: Vec<String>,
}

/// One start of the run (the first, and each `--resume`): the manifest's `resumed_from` and
/// the work directory's `run.json` record them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub run_id: String,
    pub started_at: String,
    pub pid: u32,
}

/// A shard manifest's `shard` section: what `merge` checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    pub count: u32,
    /// The partition rule ([`crate::shard::RULE`]) and its threshold.
    pub rule: String,
    pub split_bytes: u64,
    /// sha256 of [`Self::fingerprint`].
    pub fingerprint_sha256: String,
    /// What the outputs depend on, wherever the shard ran: the settings (without the shard,
    /// the paths and the devices), the models' identities and the input's file sizes (the
    /// contents are compared per collection through `input_sha256`).
    pub fingerprint: serde_json::Value,
    /// Every discovered collection and how it is shared (this shard's are in `collections`).
    pub partition: Vec<SharedCollection>,
}

/// A collection in a shard's partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCollection {
    pub name: String,
    pub bytes: u64,
    #[serde(flatten)]
    pub share: crate::shard::Share,
}

/// One shard a merge read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u32,
    pub count: u32,
    /// The shard's directory (absolute).
    pub dir: String,
    pub run_id: String,
    /// sha256 of the shard's `manifest.json`.
    pub manifest_sha256: String,
}

#[derive(Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    /// Cargo features the binary was built with (`cuda` or none).
    pub features: Vec<&'static str>,
    /// The git commit the binary was built from, when the build could read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<&'static str>,
}

impl Default for Tool {
    fn default() -> Self {
        Self {
            name: crate::TOOL_NAME,
            version: crate::TOOL_VERSION,
            features: if cfg!(feature = "cuda") {
                vec!["cuda"]
            } else {
                Vec::new()
            },
            git_commit: option_env!("EMBED_COLLECTIONS_GIT_COMMIT").filter(|c| !c.is_empty()),
        }
    }
}

/// One named vector of the points.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSchema {
    pub name: String,
    /// `dense` or `sparse`.
    pub kind: &'static str,
    /// Dense: the dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// Dense: `cosine` for L2-normalised vectors (equal to dot there), else `dot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<&'static str>,
    /// Sparse: `none` (SPLADE weights are used as they are; no IDF modifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modifier: Option<&'static str>,
    pub normalized: bool,
    /// The model that makes it (as configured).
    pub model: String,
}

impl VectorSchema {
    /// The vectors the models make: one per dense model, then the sparse one.
    pub fn from_models(models: &[ModelIdentity]) -> Vec<Self> {
        use crate::models::ModelRole;
        models
            .iter()
            .filter_map(|m| match m.role {
                ModelRole::Dense => {
                    let normalized = m.normalize.unwrap_or(false);
                    Some(Self {
                        name: m.name.clone(),
                        kind: "dense",
                        dim: Some(m.dim),
                        distance: Some(if normalized { "cosine" } else { "dot" }),
                        modifier: None,
                        normalized,
                        model: m.model.clone(),
                    })
                }
                ModelRole::Sparse => Some(Self {
                    name: m.name.clone(),
                    kind: "sparse",
                    dim: None,
                    distance: None,
                    modifier: Some("none"),
                    normalized: false,
                    model: m.model.clone(),
                }),
                ModelRole::Rerank => None,
            })
            .collect()
    }
}

/// A file and what identifies its content.
#[derive(Clone, Debug, Serialize)]
pub struct FileRecord {
    /// Relative to the output directory for outputs; absolute for files outside it.
    pub path: String,
    pub bytes: u64,
    /// Newline count (JSONL: records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// A Parquet file's rows (from its footer; it has no lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub sha256: String,
}

impl FileRecord {
    /// Reads `file` once for its size, lines and sha256; shown as `shown`.
    /// A Parquet file (`.parquet`) records its rows instead of lines.
    pub fn of(file: &std::path::Path, shown: String, count_lines: bool) -> std::io::Result<Self> {
        let digest = crate::files::digest_file(file)?;
        let parquet = file.extension().is_some_and(|e| e == "parquet");
        let rows = match parquet {
            true => Some(super::parquet::row_count(file).map_err(std::io::Error::other)?),
            false => None,
        };
        Ok(Self {
            path: shown,
            bytes: digest.bytes,
            lines: (count_lines && !parquet).then_some(digest.lines),
            rows,
            sha256: digest.sha256,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The run is in progress (or died: a `running` manifest whose `pid` is gone).
    Running,
    Ok,
    Partial,
    Failed,
    /// Stopped by SIGINT or SIGTERM; `--resume` continues it.
    Interrupted,
}

/// Why a collection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Its input could not be read (bad records under the `error` policy).
    Input,
    /// A model stage failed.
    Model,
    /// Its outputs could not be written.
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionStatus {
    Ok,
    /// Written, but some chunks failed dense embedding even alone (`failed_chunks`).
    Partial,
    Failed,
    /// The run was interrupted while working on it.
    Interrupted,
}

/// One collection's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionReport {
    pub name: String,
    pub status: CollectionStatus,
    /// Which class of problem failed it (decides the exit code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub files: usize,
    /// Chunks read and kept.
    pub chunks: usize,
    pub skipped: SkippedSummary,
    pub points: usize,
    /// Chunks that failed dense embedding even alone (no point written for them), and the
    /// first of their ids.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_chunks: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_chunk_ids: Vec<String>,
    /// Streaming windows processed, and how many of them an earlier (interrupted) run had
    /// already completed.
    #[serde(default)]
    pub windows: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed_windows: usize,
    /// Files written, relative to the output directory.
    pub outputs: Vec<String>,
    /// Sharded runs and merges: sha256 of the collection's chunk files
    /// ([`crate::shard::input_sha256`]), so a merge knows every shard read the same input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    pub stages: BTreeMap<Stage, StageReport>,
    /// Queries ranked for this collection (absent when no ranking ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<RankingReport>,
    /// Retrieval quality per list (absent without qrels or probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationReport>,
    /// What sparse, fusion and rerank cost next to dense (absent before the collection's
    /// stages are all in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<OverheadReport>,
    /// A run with `--reuse`: what it took from the earlier output and what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseReport>,
}

/// What a run with `--reuse` took from the earlier output, what it embedded and why, and the
/// changes (`<collection>/changes.jsonl`) a vector store loaded from the earlier output must
/// apply. Counts only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReuseReport {
    /// Chunks whose every vector came from the earlier output.
    pub reused: usize,
    /// Chunks that went through at least one model.
    pub embedded: usize,
    /// Why each embedded chunk was: `new` (not in the earlier output), `text_changed`,
    /// `model_changed` (its text is unchanged but a model's vectors could not be reused).
    pub embedded_because: BTreeMap<String, usize>,
    /// Per vector name: how many vectors were reused and how many computed.
    pub vectors: BTreeMap<String, VectorReuse>,
    /// Point changes since the earlier output.
    pub changes: ChangeCounts,
    /// CrossEncoder scores of (query, passage) pairs: taken from the earlier output's
    /// `rerank.jsonl` where both texts and the model are unchanged, else computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_pairs: Option<VectorReuse>,
    /// Whether the deletions (earlier points whose chunk is gone) are recorded yet.
    #[serde(default, skip_serializing)]
    pub deletions_recorded: bool,
}

/// One vector name's reuse.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VectorReuse {
    pub reused: usize,
    pub computed: usize,
}

/// The changes of `changes.jsonl`, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    /// Points whose chunk is new.
    pub added: usize,
    /// Points whose line changed (text, vectors or payload).
    pub updated: usize,
    /// Earlier points whose chunk is gone (or failed this time).
    pub deleted: usize,
    /// Points identical to the earlier output's (not in `changes.jsonl`).
    pub unchanged: usize,
}

impl ReuseReport {
    /// Adds a window's counts.
    pub fn absorb(&mut self, other: &ReuseReport) {
        self.reused += other.reused;
        self.embedded += other.embedded;
        for (why, n) in &other.embedded_because {
            *self.embedded_because.entry(why.clone()).or_default() += n;
        }
        for (name, v) in &other.vectors {
            let total = self.vectors.entry(name.clone()).or_default();
            total.reused += v.reused;
            total.computed += v.computed;
        }
        self.changes.added += other.changes.added;
        self.changes.updated += other.changes.updated;
        self.changes.deleted += other.changes.deleted;
        self.changes.unchanged += other.changes.unchanged;
    }
}

/// The requirement on a batch's latency: sparse + fusion + rerank add at most this fraction
/// of the dense stage's time.
pub const OVERHEAD_LIMIT: f64 = 0.10;

/// A stage's time in a collection: the sum of its runs' latencies (0 when it did not run).
pub fn stage_seconds(report: &CollectionReport, stage: Stage) -> f64 {
    report
        .stages
        .get(&stage)
        .map_or(0.0, |s| s.runs.iter().map(|run| run.latency_s).sum::<f64>())
}

/// The +10 % rule, measured: the time of the stages after dense against the dense stage's
/// (every dense model together), and what that time bought. With `rerank.budget` the limit is
/// the budget, and the plan that enforced it is recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverheadReport {
    pub dense_s: f64,
    pub sparse_s: f64,
    pub fusion_s: f64,
    pub rerank_s: f64,
    /// (sparse + fusion + rerank) / dense; absent when the dense stage took no time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// [`OVERHEAD_LIMIT`].
    pub limit: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_limit: Option<bool>,
    /// (query, passage) pairs the CrossEncoder scored.
    pub rerank_pairs: usize,
    /// Queries ranked, and where they came from (`file` or `probe`; `none` without ranking).
    pub queries: usize,
    pub queries_from: String,
    /// `rerank.budget`: the plan (candidates per query, predicted cost) and whether it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_budget: Option<RerankPlan>,
}

impl OverheadReport {
    /// The budget's limit instead of the rule's, and its plan.
    pub fn limit_by_budget(&mut self, plan: RerankPlan) {
        self.limit = plan.budget;
        self.within_limit = self.ratio.map(|ratio| ratio <= plan.budget);
        self.rerank_budget = Some(plan);
    }

    /// From a collection's stage runs and ranking.
    pub fn of(report: &CollectionReport) -> Self {
        let seconds = |stage: Stage| stage_seconds(report, stage);
        let (dense_s, sparse_s, fusion_s, rerank_s) = (
            seconds(Stage::Dense),
            seconds(Stage::Sparse),
            seconds(Stage::Fusion),
            seconds(Stage::Rerank),
        );
        let ratio = (dense_s > 0.0).then(|| (sparse_s + fusion_s + rerank_s) / dense_s);
        let rerank_pairs = report
            .stages
            .get(&Stage::Rerank)
            .map_or(0, |s| s.runs.iter().map(|run| run.items).sum());
        let (queries, queries_from) = match &report.ranking {
            Some(ranking) if ranking.queries_source == "probe" => (ranking.queries, "probe"),
            Some(ranking) => (ranking.queries, "file"),
            None => (0, "none"),
        };
        Self {
            dense_s,
            sparse_s,
            fusion_s,
            rerank_s,
            ratio,
            limit: OVERHEAD_LIMIT,
            within_limit: ratio.map(|r| r <= OVERHEAD_LIMIT),
            rerank_pairs,
            queries,
            queries_from: queries_from.to_string(),
            rerank_budget: None,
        }
    }
}

/// What the ranking stages ran on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankingReport {
    /// `file:<path>` or `probe`.
    pub queries_source: String,
    pub queries: usize,
    pub failed_queries: usize,
    /// Fusion method and parameters as applied (`rrf k=60`, or dense alone when sparse is off).
    pub fusion: String,
    /// How the stored vectors were searched (absent in manifests from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalReport>,
    /// The Qdrant Query API request that reproduces the fused lists, and whether exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdrant: Option<QdrantReport>,
    /// `fusion.method = "auto"`: the menu as judged, and the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoReport>,
}

/// The Query API request (`POST /collections/{collection}/points/query`) that returns a
/// query's fused list: `$query_vectors.<name>` stands for the query's vector of that name in
/// `query_vectors.jsonl` (or `/v1/query`'s answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QdrantReport {
    #[serde(flatten)]
    pub plan: crate::fusion::qdrant::FusionPlan,
    pub request: serde_json::Value,
}

/// What `fusion.method = "auto"` judged and chose ([`crate::fusion::auto`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoReport {
    /// The CrossEncoder that judged.
    pub judge: String,
    /// The pooled pairs the judge scored, and those taken from an earlier run (`--reuse`);
    /// the rerank stage reuses them.
    pub pairs_scored: usize,
    pub pairs_reused: usize,
    /// Wall time of the judging (counted in the fusion stage, so in the overhead).
    pub seconds: f64,
    #[serde(flatten)]
    pub choice: crate::fusion::auto::Choice,
}

/// How retrieval searched the stored vectors, and why (`fusion.retrieval`). The lists are the
/// same either way; this says what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// `scan` (one pass over the stored vectors in blocks) or `index` (mapped, inverted).
    pub method: RetrievalMethod,
    /// The rule that chose it.
    pub reason: String,
    pub queries: usize,
    pub points: usize,
    /// What the index holds resident, estimated from the stored vectors: all of them plus the
    /// sparse postings.
    pub index_bytes: u64,
    /// What the scan holds: its blocks and the queries' best hits.
    pub scan_bytes: u64,
    /// `fusion.retrieval_memory`.
    pub memory_budget_bytes: u64,
    /// Wall time of the search (retrieval only: no query encoding, fusion or rerank).
    pub seconds: f64,
}

/// Metrics per ranked list (`dense`, `sparse`, `fused`, `reranked`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// `file:<path>` of the qrels, or `probe` (the source chunk is the one relevant answer).
    pub qrels: String,
    /// Judged, missing and unjudged queries: the averages are over the judged ones only, and
    /// `lists` is empty when none was judged.
    #[serde(flatten)]
    pub coverage: crate::eval::Coverage,
    pub lists: BTreeMap<String, crate::eval::Metrics>,
}

/// Skipped records by reason, with the first few locations.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SkippedSummary {
    pub total: usize,
    pub by_reason: BTreeMap<String, usize>,
    pub examples: Vec<String>,
}

impl From<&SkipReport> for SkippedSummary {
    fn from(report: &SkipReport) -> Self {
        Self {
            total: report.total(),
            by_reason: report
                .counts
                .iter()
                .map(|(reason, count)| (reason.to_string(), *count))
                .collect(),
            examples: report
                .examples
                .iter()
                .map(|(reason, location)| format!("{location}: {reason}"))
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Ok,
    Failed,
    /// Switched off by config, environment or flag.
    Disabled,
    /// Requested, but this version cannot run it (said in the warnings too).
    NotAvailable,
    /// Not reached because an earlier stage failed.
    Skipped,
}

/// A stage's outcome for one collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageReport {
    pub status: StageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One entry per model the stage ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<StageRun>,
}

impl StageReport {
    pub fn with_status(status: StageStatus, detail: Option<String>) -> Self {
        Self {
            status,
            detail,
            runs: Vec::new(),
        }
    }
}

/// What one model did in a stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRun {
    pub model: String,
    pub items: usize,
    pub tokens: usize,
    pub padded_tokens: usize,
    /// The largest batch's items × longest.
    pub max_batch_tokens: usize,
    pub batches: usize,
    pub min_batch_size: usize,
    pub max_batch_size: usize,
    pub mean_batch_size: f64,
    pub truncated: usize,
    pub retries: usize,
    /// Items served by a fallback instead of the model (sparse: metadata term weights).
    pub fallbacks: usize,
    /// Items left without an output (no model result and no fallback).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: usize,
    /// Why the model failed, by reason, counting each item once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, usize>,
    /// Peak resident memory of the process during the stage (CPU; Linux), when measurable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// Workers, out-of-memory recoveries (halvings, growths, lowest budget) and per-worker
    /// batches, when the stage ran through the adaptive dispatcher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<DispatchStats>,
    /// The device budget the stage ran under and the batch token budget planned from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<StageMemory>,
    pub latency_s: f64,
    pub items_per_s: f64,
    pub tokens_per_s: f64,
}

impl StageRun {
    /// A model's run over nothing (every vector of the window was reused).
    pub fn idle(model: &str) -> Self {
        Self::new(model, &BatchStats::default(), 0, Duration::ZERO)
    }

    /// Adds another window's run of the same model: counts add up, extremes combine, rates are
    /// recomputed over the summed latency.
    pub fn absorb(&mut self, other: &StageRun) {
        let (b1, b2) = (self.batches as f64, other.batches as f64);
        self.mean_batch_size = if b1 + b2 > 0.0 {
            (self.mean_batch_size * b1 + other.mean_batch_size * b2) / (b1 + b2)
        } else {
            0.0
        };
        self.min_batch_size = match (self.batches, other.batches) {
            (0, _) => other.min_batch_size,
            (_, 0) => self.min_batch_size,
            _ => self.min_batch_size.min(other.min_batch_size),
        };
        self.items += other.items;
        self.tokens += other.tokens;
        self.padded_tokens += other.padded_tokens;
        self.max_batch_tokens = self.max_batch_tokens.max(other.max_batch_tokens);
        self.batches += other.batches;
        self.max_batch_size = self.max_batch_size.max(other.max_batch_size);
        self.truncated += other.truncated;
        self.retries += other.retries;
        self.fallbacks += other.fallbacks;
        self.missing += other.missing;
        for (reason, count) in &other.failure_reasons {
            *self.failure_reasons.entry(reason.clone()).or_default() += count;
        }
        self.peak_rss_bytes = match (self.peak_rss_bytes, other.peak_rss_bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.dispatch = match (self.dispatch.take(), &other.dispatch) {
            (Some(mut a), Some(b)) => {
                a.absorb(b);
                Some(a)
            }
            (a, b) => a.or_else(|| b.clone()),
        };
        if self.memory.is_none() {
            self.memory = other.memory.clone();
        }
        self.latency_s += other.latency_s;
        let rate = |count: usize| {
            if self.latency_s > 0.0 {
                count as f64 / self.latency_s
            } else {
                0.0
            }
        };
        self.items_per_s = rate(self.items);
        self.tokens_per_s = rate(self.tokens);
    }

    /// Records the dispatcher's statistics; its retries count as the stage's.
    pub fn record_dispatch(&mut self, stats: DispatchStats) {
        self.retries += stats.retries;
        self.dispatch = Some(stats);
    }

    pub fn new(model: &str, stats: &BatchStats, truncated: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        let rate = |count: usize| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            model: model.to_string(),
            items: stats.items,
            tokens: stats.tokens,
            padded_tokens: stats.padded_tokens,
            max_batch_tokens: stats.max_batch_tokens,
            batches: stats.batches,
            min_batch_size: stats.min_batch_size,
            max_batch_size: stats.max_batch_size,
            mean_batch_size: stats.mean_batch_size(),
            truncated,
            retries: 0,
            fallbacks: 0,
            missing: 0,
            failure_reasons: BTreeMap::new(),
            peak_rss_bytes: None,
            dispatch: None,
            memory: None,
            latency_s: seconds,
            items_per_s: rate(stats.items),
            tokens_per_s: rate(stats.tokens),
        }
    }
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

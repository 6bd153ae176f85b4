//! `BatchRunner`: discovers collections, loads the models once, runs each collection through the
//! stages (dense → sparse → export), writes points atomically and, last, the manifest.
//!
//! Failure policy (DESIGN §5): configuration, discovery and model-load problems stop the run
//! before any collection is processed. Per collection: bad input (under `on_invalid = "error"`)
//! or a dense failure marks the collection failed and the run goes on with the next one; a
//! sparse failure never fails a collection — the affected chunks fall back, flagged and counted.

use super::devices::{lease_stage, StageNeeds};
use super::rank::{
    encode_dense_queries, encode_sparse_queries, evaluate_lists, probe_qrels, probe_queries,
    query_budget, rank_queries, QuerySet, QuerySource, QueryStatus, QueryVectors, RankModels,
    RankedQuery,
};
use super::sparse::{run_sparse, SparseStageOutput};
use crate::batching::BatchBudget;
use crate::config::FusionMethod;
use crate::config::RunConfig;
use crate::dispatch::FaultInjector;
use crate::eval::{self, Qrels};
use crate::export::manifest::{EvaluationReport, RankingReport};
use crate::export::manifest::{SkippedSummary, Tool};
use crate::export::{
    write_atomic, write_points, CollectionReport, CollectionStatus, CollectionVectors,
    FailureClass, Manifest, RunStatus, StageReport, StageStatus, MANIFEST_FILE, POINTS_FILE,
    SCHEMA_VERSION,
};
use crate::export::{write_ranked, RANKED_FILE};
use crate::gpu::{
    DeviceLease, LeaseError, LeaseLog, LeaseOptions, LeaseWait, MemoryProbe, StageMemory,
};
use crate::input::{self, Chunk, Collection, InputError, Query};
use crate::models::{
    select_devices, CrossEncoder, DenseEmbedder, ModelError, ModelManager, Replica, Replicas,
    SelectedDevice, SpladeEncoder,
};
use crate::stage::Stage;
use crate::telemetry::{memory, metrics};

/// Largest SPLADE logits slice on the CPU (see `load_models`).
const CPU_LOGITS_BUDGET: u64 = 256 << 20;

/// Default metrics file name in the output directory (node_exporter's textfile collector reads
/// `*.prom`).
pub const METRICS_FILE: &str = "metrics.prom";
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot discover collections")]
    Discover(#[source] InputError),
    #[error("cannot load model {name:?}")]
    Model {
        name: String,
        #[source]
        source: Box<ModelError>,
    },
    #[error("cannot use the configured devices (gpu.devices)")]
    Device(#[source] ModelError),
    #[error("cannot read the query file")]
    Queries(#[source] InputError),
    #[error("cannot read the qrels file")]
    Qrels(#[source] eval::EvalError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub manifest: PathBuf,
    pub collections: Vec<CollectionReport>,
    /// Collections that failed because of their input.
    pub input_failures: usize,
}

/// Runs the configured stages over every collection.
pub struct BatchRunner {
    config: RunConfig,
    manager: ModelManager,
    dense_fault: Option<Box<FaultInjector>>,
    sparse_fault: Option<Box<FaultInjector>>,
    rerank_fault: Option<Box<FaultInjector>>,
    /// Reads device memory for leases (the host's, or injected readings in tests).
    probe: Box<dyn MemoryProbe>,
    lease_options: LeaseOptions,
    lease_log: LeaseLog,
    /// Exclusive stages on the CPU too (GPUs always are).
    exclusive_models: bool,
}

/// `cpu` or `cuda:0,cuda:1`: the devices a stage's replicas sit on, for logs.
fn device_labels(devices: &[SelectedDevice]) -> String {
    devices
        .iter()
        .map(|d| d.label.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Maps a model error to the run error naming the model.
fn model_error(name: &str) -> impl FnOnce(crate::models::ModelError) -> RunError {
    let name = name.to_string();
    move |source| RunError::Model {
        name,
        source: Box::new(source),
    }
}

/// Run-wide inputs read once: the global query file and qrels, when configured.
#[derive(Clone, Copy)]
struct Shared<'a> {
    queries: Option<&'a (PathBuf, Vec<Query>)>,
    qrels: Option<&'a (PathBuf, Qrels)>,
}

/// A dense model's vector name and one vector per chunk.
type NamedDenseVectors = (String, Vec<Vec<f32>>);

/// The primary dense model's query vectors, or why there are none.
type DenseQueryVectors = Result<Vec<Vec<f32>>, String>;

/// What a collection is ranked with.
struct RankingInputs {
    set: QuerySet,
    /// Label (`file:…` or `probe`) and judgements, when there are any to evaluate with.
    qrels: Option<(String, Qrels)>,
}

/// The models resident now (all of them on the CPU; the current stage's in exclusive mode).
#[derive(Default)]
struct LoadedModels {
    dense: Vec<Replicas<DenseEmbedder>>,
    sparse: Option<Replicas<SpladeEncoder>>,
    cross_encoder: Option<Replicas<CrossEncoder>>,
}

impl LoadedModels {
    /// The identities of `stage`'s resident models.
    fn identities(&self, stage: Stage) -> Vec<crate::models::ModelIdentity> {
        let identity = |m: &dyn Replica| m.identity().clone();
        match stage {
            Stage::Dense => self.dense.iter().map(|m| identity(m.primary())).collect(),
            Stage::Sparse => self.sparse.iter().map(|m| identity(m.primary())).collect(),
            Stage::Rerank => self
                .cross_encoder
                .iter()
                .map(|m| identity(m.primary()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl BatchRunner {
    pub fn new(config: RunConfig, manager: ModelManager) -> Self {
        let ceiling_bytes = config.gpu.memory_ceiling.0;
        Self {
            config,
            manager,
            dense_fault: None,
            sparse_fault: None,
            rerank_fault: None,
            probe: crate::gpu::default_probe(),
            lease_options: LeaseOptions {
                ceiling_bytes,
                // A cron job queues behind another job's lease instead of failing at once.
                wait: LeaseWait::Wait(Duration::from_secs(30 * 60)),
                // A build without `cuda` cannot read GPUs (and cannot run on them either); the
                // ceiling is then the budget, recorded as such, rather than a failed stage.
                ceiling_when_unprobed: true,
                ..LeaseOptions::default()
            },
            lease_log: LeaseLog::new(),
            exclusive_models: false,
        }
    }

    /// Runs stages exclusively on the CPU too: each stage loads its model and the others are
    /// unloaded, as on GPUs (tests check that the output does not change).
    pub fn with_exclusive_models(mut self) -> Self {
        self.exclusive_models = true;
        self
    }

    /// Reads device memory through `probe` (tests inject readings).
    pub fn with_memory_probe(mut self, probe: Box<dyn MemoryProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Keeps device lock files in `dir` and fails at once when a device is busy (tests).
    pub fn with_lock_dir(mut self, dir: PathBuf) -> Self {
        self.lease_options.lock_dir = dir;
        self.lease_options.wait = LeaseWait::Fail;
        self
    }

    /// Leases `needs.device_label` for a stage and plans its batches (see [`super::devices`]).
    fn lease_stage(
        &self,
        needs: &StageNeeds<'_>,
    ) -> Result<(DeviceLease<'_>, BatchBudget, StageMemory), LeaseError> {
        lease_stage(
            needs,
            &self.lease_options,
            self.probe.as_ref(),
            &self.lease_log,
        )
    }

    /// Makes the dense stage fail (or run out of memory on) the batches `fault` picks, by chunk
    /// index within the collection.
    pub fn with_dense_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.dense_fault = Some(fault);
        self
    }

    /// Makes the sparse stage fail the batches `fault` picks (by chunk index within the
    /// collection), so tests can exercise the fallback without relying on chance.
    pub fn with_sparse_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.sparse_fault = Some(fault);
        self
    }

    /// Makes the rerank stage fail the pair batches `fault` picks (by query index), so tests can
    /// check that failed queries are reported, never scored.
    pub fn with_rerank_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.rerank_fault = Some(fault);
        self
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Runs every collection, then writes the manifest and the metrics file. The metrics file
    /// is written on failure too (`run_success 0`), so a cron watcher sees a failed run.
    pub fn run(&self) -> Result<RunOutcome, RunError> {
        let started_at = SystemTime::now();
        let run_id = uuid::Uuid::new_v4().to_string();
        let result = self.run_collections(&run_id, started_at);
        let (status, collections) = match &result {
            Ok(outcome) => (outcome.status, outcome.collections.as_slice()),
            Err(_) => (RunStatus::Failed, &[][..]),
        };
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let text = metrics::render(
            &run_id,
            status,
            unix(started_at),
            unix(SystemTime::now()),
            collections,
        );
        let path = self.metrics_path();
        match metrics::write(&path, &text) {
            Ok(()) => info!(path = %path.display(), "metrics written"),
            Err(err) => warn!(path = %path.display(), "cannot write the metrics file: {err}"),
        }
        result
    }

    /// `telemetry.metrics_file`, else `<output.dir>/metrics.prom`.
    pub fn metrics_path(&self) -> PathBuf {
        self.config
            .telemetry
            .metrics_file
            .clone()
            .unwrap_or_else(|| self.config.output.dir.join(METRICS_FILE))
    }

    fn run_collections(
        &self,
        run_id: &str,
        started_at: SystemTime,
    ) -> Result<RunOutcome, RunError> {
        let config = &self.config;
        let mut warnings = Vec::new();
        // A global query file or qrels file is read before any model loads: a bad one is a
        // configuration problem, and a run never starts half-configured.
        let global_queries = match &config.rerank.queries {
            Some(path) => Some((
                path.clone(),
                input::read_queries(path).map_err(RunError::Queries)?,
            )),
            None => None,
        };
        let global_qrels = match &config.eval.qrels {
            Some(path) => Some((
                path.clone(),
                eval::read_qrels(path).map_err(RunError::Qrels)?,
            )),
            None => None,
        };

        let collections = discover(config).map_err(RunError::Discover)?;
        info!(count = collections.len(), "collections discovered");

        // Every listed GPU gets one replica of a stage's model (data parallelism).
        let devices =
            select_devices(&config.gpu.devices, config.gpu.precision).map_err(RunError::Device)?;
        // Exclusive mode (GPUs): each stage loads only its own model, so one model at a time
        // sits on a device; on the CPU they stay resident (small, shared by the workers).
        let (mut models, identities) = self.load_models(&devices)?;

        let mut reports = Vec::new();
        for collection in &collections {
            let shared = Shared {
                queries: global_queries.as_ref(),
                qrels: global_qrels.as_ref(),
            };
            let report =
                self.run_collection(collection, &mut models, &devices, shared, &mut warnings);
            if let (CollectionStatus::Failed, Some(message)) = (report.status, &report.error) {
                error!(collection = %collection.name, "collection failed: {message}");
            }
            reports.push(report);
        }

        let failed = reports
            .iter()
            .filter(|r| r.status == CollectionStatus::Failed)
            .count();
        let status = match failed {
            0 => RunStatus::Ok,
            n if n == reports.len() => RunStatus::Failed,
            _ => RunStatus::Partial,
        };
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run_id: run_id.to_string(),
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            status,
            config: &config.for_manifest(),
            models: identities,
            collections: reports.clone(),
            leases: self.lease_log.events(),
            warnings,
        };
        let manifest_path = config.output.dir.join(MANIFEST_FILE);
        let write_error = |source| RunError::Write {
            path: manifest_path.clone(),
            source,
        };
        let mut bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|err| write_error(err.into()))?;
        bytes.push(b'\n');
        write_atomic(&manifest_path, &bytes).map_err(write_error)?;
        Ok(RunOutcome {
            status,
            manifest: manifest_path.clone(),
            input_failures: reports
                .iter()
                .filter(|r| r.failure == Some(FailureClass::Input))
                .count(),
            collections: reports,
        })
    }

    /// Loads every model once, so a missing or broken model fails the run before any
    /// collection, and returns their identities for the manifest. On the CPU they stay
    /// resident; in exclusive mode each is dropped before the next loads (never two on the
    /// device), and each stage loads its own again when it runs.
    fn load_models(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<(LoadedModels, Vec<crate::models::ModelIdentity>), RunError> {
        let mut models = LoadedModels::default();
        let mut identities = Vec::new();
        // `activate` is what the stages call: in exclusive mode it unloads the other stages'
        // models before loading this one's.
        for stage in [Stage::Dense, Stage::Sparse, Stage::Rerank] {
            self.activate(&mut models, stage, devices)?;
            identities.extend(models.identities(stage));
        }
        Ok((models, identities))
    }

    /// Model paths in the config are relative to the config file.
    fn model_base_dir(&self) -> Option<&Path> {
        self.config.config_file.as_deref().and_then(Path::parent)
    }

    /// Whether stages hold their device exclusively: always on GPUs, on the CPU when a test
    /// asks ([`Self::with_exclusive_models`]).
    fn exclusive(&self, devices: &[SelectedDevice]) -> bool {
        self.exclusive_models || devices.iter().any(|d| !d.device.is_cpu())
    }

    /// Makes `stage`'s models resident; in exclusive mode first unloads every other stage's.
    fn activate(
        &self,
        models: &mut LoadedModels,
        stage: Stage,
        devices: &[SelectedDevice],
    ) -> Result<(), RunError> {
        if self.exclusive(devices) {
            let unloaded = [
                (stage != Stage::Dense && !models.dense.is_empty(), "dense"),
                (stage != Stage::Sparse && models.sparse.is_some(), "sparse"),
                (
                    stage != Stage::Rerank && models.cross_encoder.is_some(),
                    "rerank",
                ),
            ];
            if stage != Stage::Dense {
                models.dense.clear();
            }
            if stage != Stage::Sparse {
                models.sparse = None;
            }
            if stage != Stage::Rerank {
                models.cross_encoder = None;
            }
            for (_, kind) in unloaded.iter().filter(|(was, _)| *was) {
                info!(stage = kind, devices = %device_labels(devices), "model unloaded (exclusive stages)");
            }
        }
        match stage {
            Stage::Dense if models.dense.is_empty() => models.dense = self.load_dense(devices)?,
            Stage::Sparse if models.sparse.is_none() => {
                models.sparse = self.load_sparse(devices)?
            }
            Stage::Rerank if models.cross_encoder.is_none() => {
                models.cross_encoder = self.load_cross_encoder(devices)?
            }
            _ => {}
        }
        Ok(())
    }

    fn load_dense(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Vec<Replicas<DenseEmbedder>>, RunError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let mut dense = Vec::new();
        for model in &config.dense.models {
            let resolved = self
                .manager
                .resolve(&model.model, model.revision.as_deref(), base_dir)
                .map_err(model_error(&model.name))?;
            let embedder = Replicas::load(devices, |device| {
                DenseEmbedder::load(model, &resolved, device)
            })
            .map_err(model_error(&model.name))?;
            let id = embedder.primary().identity();
            info!(name = %id.name, model = %id.model, dim = id.dim, max_length = id.max_length,
                devices = %device_labels(devices), dtype = %id.dtype, "dense model loaded");
            dense.push(embedder);
        }
        Ok(dense)
    }

    fn load_sparse(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Option<Replicas<SpladeEncoder>>, RunError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let sparse = if config.sparse.enabled {
            let name = &config.sparse.name;
            let resolved = self
                .manager
                .resolve(&config.sparse.model, None, base_dir)
                .map_err(model_error(name))?;
            // One slice of SPLADE logits may take an eighth of the device ceiling; on the CPU at
            // most 256 MiB: the ceiling is a GPU budget, and bigger slices only raise peak RSS
            // (2.8 GB vs 0.9 GB for dense on the quickstart) without speeding anything up.
            let ceiling_share = config.gpu.memory_ceiling.0 / 8;
            let share = if devices.iter().all(|d| d.device.is_cpu()) {
                ceiling_share.min(CPU_LOGITS_BUDGET)
            } else {
                ceiling_share
            };
            let logits_budget = usize::try_from(share).unwrap_or(usize::MAX);
            let encoder = Replicas::load(devices, |device| {
                SpladeEncoder::load(
                    name,
                    &config.sparse.model,
                    &resolved,
                    device,
                    config.sparse.max_terms,
                    logits_budget,
                )
            })
            .map_err(model_error(name))?;
            let id = encoder.primary().identity();
            info!(name = %id.name, model = %id.model, vocab = id.dim, max_length = id.max_length,
                devices = %device_labels(devices), "sparse model loaded");
            Some(encoder)
        } else {
            None
        };
        Ok(sparse)
    }

    fn load_cross_encoder(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Option<Replicas<CrossEncoder>>, RunError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let cross_encoder = if config.rerank.enabled {
            let resolved = self
                .manager
                .resolve(&config.rerank.model, None, base_dir)
                .map_err(model_error("rerank"))?;
            let ce = Replicas::load(devices, |device| {
                CrossEncoder::load(
                    &config.rerank.model,
                    &resolved,
                    device,
                    config.rerank.max_length,
                )
            })
            .map_err(model_error("rerank"))?;
            let primary = ce.primary();
            info!(model = %primary.identity().model, max_length = primary.identity().max_length,
                activation = ?primary.activation(), devices = %device_labels(devices),
                "rerank model loaded");
            Some(ce)
        } else {
            None
        };
        Ok(cross_encoder)
    }

    fn run_collection(
        &self,
        collection: &Collection,
        models: &mut LoadedModels,
        devices: &[SelectedDevice],
        shared: Shared<'_>,
        warnings: &mut Vec<String>,
    ) -> CollectionReport {
        let config = &self.config;
        let span = tracing::info_span!("collection", name = %collection.name);
        let _entered = span.enter();
        let mut report = CollectionReport {
            name: collection.name.clone(),
            status: CollectionStatus::Failed,
            failure: None,
            error: None,
            files: collection.files.len(),
            chunks: 0,
            skipped: SkippedSummary::default(),
            points: 0,
            outputs: Vec::new(),
            stages: BTreeMap::new(),
            ranking: None,
            evaluation: None,
        };

        let read = match input::read_collection(collection, config.input.on_invalid) {
            Ok(read) => read,
            Err(err) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(err.to_string());
                return report;
            }
        };
        report.chunks = read.chunks.len();
        report.skipped = SkippedSummary::from(&read.skipped);
        if read.skipped.total() > 0 {
            warn!(
                skipped = read.skipped.total(),
                "invalid records skipped (see manifest)"
            );
        }
        info!(
            files = report.files,
            chunks = report.chunks,
            "collection read"
        );
        let budget = BatchBudget {
            max_tokens: config.dense.batch_tokens,
            max_items: config.dense.max_batch_size,
        };

        let inputs = self.ranking_inputs(collection, shared, &read.chunks, &mut report, warnings);
        let queries = inputs.as_ref().map(|inputs| &inputs.set);

        if let Err(err) = self.activate(models, Stage::Dense, devices) {
            report.failure = Some(FailureClass::Model);
            report.error = Some(error_chain(&err));
            return report;
        }
        let dense = self.dense_stage(
            collection,
            models,
            &read.chunks,
            queries,
            budget,
            &mut report,
        );
        let (dense_vectors, dense_queries) = match dense {
            Some(vectors) => vectors,
            None => {
                for stage in [Stage::Sparse, Stage::Fusion, Stage::Rerank, Stage::Export] {
                    let status = if self.stage_enabled(stage) {
                        StageStatus::Skipped
                    } else {
                        StageStatus::Disabled
                    };
                    report
                        .stages
                        .insert(stage, StageReport::with_status(status, None));
                }
                return report;
            }
        };

        if let Err(err) = self.activate(models, Stage::Sparse, devices) {
            warnings.push(format!(
                "collection {}: sparse stage not run: {}",
                collection.name,
                error_chain(&err)
            ));
        }
        let mut sparse_queries = None;
        let sparse_output = models.sparse.as_ref().and_then(|encoder| {
            let needs = StageNeeds::for_model("sparse", encoder, budget);
            let (output, peak) = memory::measure(|| {
                let (_lease, budget, plan) = self.lease_stage(&needs)?;
                let mut output = run_sparse(
                    &collection.name,
                    encoder,
                    &read.chunks,
                    budget,
                    &config.sparse,
                    self.sparse_fault.as_deref(),
                    config.telemetry.progress,
                );
                output.run.memory = Some(plan);
                if let Some(set) = queries {
                    sparse_queries =
                        Some(encode_sparse_queries(encoder, set, query_budget(config)));
                }
                Ok::<_, LeaseError>(output)
            });
            match output {
                Ok(mut output) => {
                    output.run.peak_rss_bytes = peak;
                    Some(output)
                }
                Err(err) => {
                    warnings.push(format!(
                        "collection {}: sparse stage not run: {err}",
                        collection.name
                    ));
                    None
                }
            }
        });
        report.stages.insert(
            Stage::Sparse,
            sparse_report(sparse_output.as_ref(), &collection.name, warnings),
        );
        let query_vectors = QueryVectors {
            dense: dense_queries,
            sparse: sparse_output.as_ref().and(sparse_queries),
        };
        if self.stage_enabled(Stage::Rerank) && inputs.is_some() {
            if let Err(err) = self.activate(models, Stage::Rerank, devices) {
                warnings.push(format!(
                    "collection {}: rerank not run: {}",
                    collection.name,
                    error_chain(&err)
                ));
            }
        }
        let ranked = self.ranking_stages(
            collection,
            models,
            inputs,
            query_vectors,
            &read.chunks,
            &dense_vectors,
            sparse_output.as_ref(),
            &mut report,
            warnings,
        );

        let path = config.output.dir.join(&collection.name).join(POINTS_FILE);
        let vectors = CollectionVectors {
            dense: dense_vectors
                .iter()
                .map(|(name, vectors)| (name.as_str(), vectors.as_slice()))
                .collect(),
            sparse: sparse_output
                .as_ref()
                .map(|output| (config.sparse.name.as_str(), output.points.as_slice())),
        };
        let written = write_points(
            &path,
            &collection.name,
            &read.chunks,
            &vectors,
            config.output.include_text,
        );
        let export_status = match written {
            Ok(points) => {
                report.points = points;
                report
                    .outputs
                    .push(format!("{}/{}", collection.name, POINTS_FILE));
                report.status = CollectionStatus::Ok;
                info!(points, path = %path.display(), "points written");
                StageStatus::Ok
            }
            Err(err) => {
                report.failure = Some(FailureClass::Output);
                report.error = Some(format!("cannot write {}: {err}", path.display()));
                StageStatus::Failed
            }
        };
        let export_status = match (&ranked, export_status) {
            (Some((set, queries)), StageStatus::Ok) if self.stage_enabled(Stage::Fusion) => {
                let path = config.output.dir.join(&collection.name).join(RANKED_FILE);
                match write_ranked(&path, set, queries, &read.chunks, config.rerank.top_k) {
                    Ok(_) => {
                        report
                            .outputs
                            .push(format!("{}/{}", collection.name, RANKED_FILE));
                        StageStatus::Ok
                    }
                    Err(err) => {
                        report.status = CollectionStatus::Failed;
                        report.failure = Some(FailureClass::Output);
                        report.error = Some(format!("cannot write {}: {err}", path.display()));
                        StageStatus::Failed
                    }
                }
            }
            (_, status) => status,
        };
        report
            .stages
            .insert(Stage::Export, StageReport::with_status(export_status, None));
        report
    }

    /// The queries of a collection: the global file, the collection's own `queries.jsonl`, or
    /// the probe. `Err` when the collection's own file is bad.
    fn query_set(
        &self,
        collection: &Collection,
        shared: Shared<'_>,
        chunks: &[Chunk],
    ) -> Result<Option<QuerySet>, InputError> {
        if let Some((path, queries)) = shared.queries {
            return Ok(Some(QuerySet {
                source: QuerySource::File(path.clone()),
                queries: queries.clone(),
                targets: None,
            }));
        }
        if let Some(path) = collection.own_file("queries.jsonl") {
            let queries = input::read_queries(&path)?;
            return Ok(Some(QuerySet {
                source: QuerySource::File(path),
                queries,
                targets: None,
            }));
        }
        let probe = probe_queries(chunks, self.config.rerank.probe_queries);
        Ok((!probe.queries.is_empty()).then_some(probe))
    }

    /// The queries and qrels a collection is ranked with, decided before any model runs so the
    /// dense and sparse stages can encode the queries while their models are resident. `None`
    /// when nothing will be ranked: no queries, or a dense-only run with nothing to evaluate.
    /// A bad query file of the collection is an input failure in `report`.
    fn ranking_inputs(
        &self,
        collection: &Collection,
        shared: Shared<'_>,
        chunks: &[Chunk],
        report: &mut CollectionReport,
        warnings: &mut Vec<String>,
    ) -> Option<RankingInputs> {
        let config = &self.config;
        let fusion_on = self.stage_enabled(Stage::Fusion);
        let set = match self.query_set(collection, shared, chunks) {
            Ok(set) => set,
            Err(err) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(format!("cannot read the collection's queries: {err}"));
                return None;
            }
        };
        let qrels = match (&set, shared.qrels) {
            (
                Some(QuerySet {
                    source: QuerySource::Probe,
                    ..
                }),
                _,
            ) => set
                .as_ref()
                .and_then(|s| probe_qrels(s, chunks).map(|q| ("probe".to_string(), q))),
            (Some(_), Some((path, qrels))) => Some((
                format!("file:{}", config.display_path(path).display()),
                qrels.clone(),
            )),
            (Some(_), None) => match collection.own_file("qrels/test.tsv") {
                Some(path) => match eval::read_qrels(&path) {
                    Ok(qrels) => Some((
                        format!("file:{}", config.display_path(&path).display()),
                        qrels,
                    )),
                    Err(err) => {
                        warnings.push(format!(
                            "collection {}: qrels not used: {err}",
                            collection.name
                        ));
                        None
                    }
                },
                None => None,
            },
            (None, _) => None,
        };
        let set = set?;
        let is_probe = set.source == QuerySource::Probe;
        if !fusion_on && (is_probe || qrels.is_none()) {
            return None;
        }
        Some(RankingInputs { set, qrels })
    }

    /// Fusion, rerank and evaluation for a collection, from the query vectors the dense and
    /// sparse stages made.
    #[allow(clippy::too_many_arguments)]
    fn ranking_stages(
        &self,
        collection: &Collection,
        models: &LoadedModels,
        inputs: Option<RankingInputs>,
        query_vectors: QueryVectors,
        chunks: &[Chunk],
        dense_vectors: &[NamedDenseVectors],
        sparse_output: Option<&SparseStageOutput>,
        report: &mut CollectionReport,
        warnings: &mut Vec<String>,
    ) -> Option<(QuerySet, Vec<RankedQuery>)> {
        let config = &self.config;
        let fusion_on = self.stage_enabled(Stage::Fusion);
        let disabled = |stage: Stage| {
            let status = if self.stage_enabled(stage) {
                StageStatus::Skipped
            } else {
                StageStatus::Disabled
            };
            StageReport::with_status(status, None)
        };
        report.stages.insert(Stage::Fusion, disabled(Stage::Fusion));
        report.stages.insert(Stage::Rerank, disabled(Stage::Rerank));
        let RankingInputs { set, qrels } = inputs?;
        let (_, primary) = dense_vectors.first()?;
        let rank_models = RankModels {
            cross_encoder: models.cross_encoder.as_ref(),
            rerank_budget: None,
        };
        let (mut output, peak) = memory::measure(|| {
            // The CrossEncoder's lease covers the whole ranking step (queries, fusion, rerank).
            let lease = match models.cross_encoder.as_ref() {
                Some(ce) => {
                    let budget = BatchBudget {
                        max_tokens: config.rerank.batch_tokens,
                        max_items: config.dense.max_batch_size,
                    };
                    let needs = StageNeeds::for_model("rerank", ce, budget);
                    Some(self.lease_stage(&needs))
                }
                None => None,
            };
            let (rank_models, plan, _lease) = match lease {
                Some(Ok((lease, budget, plan))) => (
                    RankModels {
                        rerank_budget: Some(budget),
                        ..rank_models
                    },
                    Some(plan),
                    Some(lease),
                ),
                Some(Err(err)) => {
                    warnings.push(format!(
                        "collection {}: rerank not run: {err}",
                        collection.name
                    ));
                    (
                        RankModels {
                            cross_encoder: None,
                            ..rank_models
                        },
                        None,
                        None,
                    )
                }
                None => (rank_models, None, None),
            };
            let mut output = rank_queries(
                &collection.name,
                &set,
                chunks,
                primary,
                sparse_output.map(|o| o.points.as_slice()),
                &query_vectors,
                &rank_models,
                config,
                self.rerank_fault.as_deref(),
            );
            if let Some(run) = output.rerank_run.as_mut() {
                run.memory = plan;
            }
            output
        });
        // Ranking is one measurement: the CrossEncoder dominates it when it runs.
        match output.rerank_run.as_mut() {
            Some(run) => run.peak_rss_bytes = peak,
            None => output.fusion_run.peak_rss_bytes = peak,
        }
        let failed = output
            .queries
            .iter()
            .filter(|q| q.status == QueryStatus::Failed)
            .count();
        if failed > 0 {
            warnings.push(format!(
                "collection {}: {failed} of {} queries failed (see rerank.jsonl for the reasons)",
                collection.name,
                output.queries.len()
            ));
        }
        let fusion_label = match (config.fusion.method, query_vectors.sparse.is_some()) {
            (_, false) => "dense only (sparse disabled)".to_string(),
            (FusionMethod::Rrf, true) => format!(
                "rrf k={} weights dense={} sparse={}",
                config.fusion.rrf_k, config.fusion.dense_weight, config.fusion.sparse_weight
            ),
            (FusionMethod::Convex, true) => format!(
                "convex weights dense={} sparse={}",
                config.fusion.dense_weight, config.fusion.sparse_weight
            ),
        };
        report.ranking = Some(RankingReport {
            queries_source: match &set.source {
                QuerySource::File(path) => format!("file:{}", config.display_path(path).display()),
                QuerySource::Probe => "probe".to_string(),
            },
            queries: output.queries.len(),
            failed_queries: failed,
            fusion: fusion_label,
        });
        if fusion_on {
            report.stages.insert(
                Stage::Fusion,
                StageReport {
                    status: StageStatus::Ok,
                    detail: None,
                    runs: vec![output.fusion_run.clone()],
                },
            );
        }
        if let Some(run) = &output.rerank_run {
            report.stages.insert(
                Stage::Rerank,
                StageReport {
                    status: StageStatus::Ok,
                    detail: None,
                    runs: vec![run.clone()],
                },
            );
        }
        if let Some((label, qrels)) = qrels {
            let lists =
                evaluate_lists(&qrels, &output.queries, chunks, output.rerank_run.is_some());
            for (list, metrics) in &lists {
                info!(list = %list, ndcg_at_10 = format!("{:.4}", metrics.ndcg_at_10), recall_at_100 = format!("{:.4}", metrics.recall_at_100),
                    mrr_at_10 = format!("{:.4}", metrics.mrr_at_10), queries = metrics.queries, qrels = %label, "evaluation");
            }
            report.evaluation = Some(EvaluationReport {
                qrels: label,
                lists,
            });
        }
        Some((set, output.queries))
    }

    /// Every dense model over the chunks; `None` (with the report filled in) when one fails,
    /// which fails the collection.
    /// The primary (first) model also encodes `queries`, while it is resident and leased.
    fn dense_stage(
        &self,
        collection: &Collection,
        models: &LoadedModels,
        chunks: &[Chunk],
        queries: Option<&QuerySet>,
        budget: BatchBudget,
        report: &mut CollectionReport,
    ) -> Option<(Vec<NamedDenseVectors>, DenseQueryVectors)> {
        let mut stage = StageReport::with_status(StageStatus::Ok, None);
        let mut vectors = Vec::new();
        let mut query_vectors = Ok(Vec::new());
        for (index, embedder) in models.dense.iter().enumerate() {
            let needs = StageNeeds::for_model("dense", embedder, budget);
            let (result, peak) = memory::measure(|| {
                let (_lease, budget, plan) =
                    self.lease_stage(&needs)
                        .map_err(|err| crate::models::ModelError::Device {
                            device: needs.device_labels.join(","),
                            message: err.to_string(),
                        })?;
                let (vectors, run) = super::dense::run_dense(
                    &collection.name,
                    embedder,
                    chunks,
                    budget,
                    self.config.telemetry.progress,
                    self.dense_fault.as_deref(),
                )?;
                if let (0, Some(set)) = (index, queries) {
                    query_vectors = encode_dense_queries(embedder, set, query_budget(&self.config));
                }
                Ok::<_, crate::models::ModelError>((vectors, run, plan))
            });
            match result {
                Ok((set, mut run, plan)) => {
                    run.peak_rss_bytes = peak;
                    run.memory = Some(plan);
                    stage.runs.push(run);
                    vectors.push((embedder.primary().identity().name.clone(), set));
                }
                Err(err) => {
                    stage.status = StageStatus::Failed;
                    stage.detail = Some(embedder.primary().identity().name.clone());
                    report.failure = Some(FailureClass::Model);
                    report.error = Some(format!("dense stage failed: {}", error_chain(&err)));
                    break;
                }
            }
        }
        let ok = stage.status == StageStatus::Ok;
        report.stages.insert(Stage::Dense, stage);
        ok.then_some((vectors, query_vectors))
    }

    /// Whether the configuration asks for `stage` (fusion runs when anything ranks).
    fn stage_enabled(&self, stage: Stage) -> bool {
        let config = &self.config;
        match stage {
            Stage::Dense | Stage::Export => true,
            Stage::Sparse => config.sparse.enabled,
            Stage::Fusion => config.sparse.enabled || config.rerank.enabled,
            Stage::Rerank => config.rerank.enabled,
        }
    }
}

/// The sparse stage's report; fallbacks are counted there and raised as a run warning.
fn sparse_report(
    output: Option<&SparseStageOutput>,
    collection: &str,
    warnings: &mut Vec<String>,
) -> StageReport {
    let Some(output) = output else {
        return StageReport::with_status(StageStatus::Disabled, None);
    };
    let run = &output.run;
    if run.fallbacks + run.missing > 0 {
        warnings.push(format!(
            "collection {collection}: SPLADE failed for {} of {} chunks ({} fell back to metadata term weights, {} have no sparse vector; reasons: {:?})",
            run.fallbacks + run.missing,
            run.items,
            run.fallbacks,
            run.missing,
            run.failure_reasons
        ));
    }
    StageReport {
        status: StageStatus::Ok,
        detail: None,
        runs: vec![run.clone()],
    }
}

/// The collections a run (or `check`) works on: those discovered under `input.root`, minus any
/// inside the output directory — with the output under the input root, a second run would
/// otherwise read the first run's points and manifest as chunks.
pub fn discover(config: &RunConfig) -> Result<Vec<Collection>, InputError> {
    let collections = input::discover_collections(
        &config.input.root,
        config.input.collections.as_deref(),
        &config.input.formats,
    )?;
    Ok(without_output_dir(collections, &config.output.dir))
}

fn without_output_dir(collections: Vec<Collection>, output_dir: &Path) -> Vec<Collection> {
    let Ok(output_dir) = output_dir.canonicalize() else {
        return collections; // not created yet, so nothing in it can have been discovered
    };
    collections
        .into_iter()
        .filter(|collection| {
            let inside = !collection.files.is_empty()
                && collection.files.iter().all(|file| {
                    file.canonicalize()
                        .map(|file| file.starts_with(&output_dir))
                        .unwrap_or(false)
                });
            if inside {
                warn!(collection = %collection.name, "skipping a collection inside the output directory");
            }
            !inside
        })
        .collect()
}

/// `error: caused by: …` on one line, for the manifest.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

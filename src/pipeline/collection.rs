//! One collection through the pipeline, in streaming windows:
//!
//! 1. **scan**: one pass over the input that validates every record (under `on_invalid =
//!    "error"` a bad record fails the collection before any model runs, as without windows),
//!    counts the chunks and samples the probe queries, holding only the chunk ids;
//! 2. **windows** of `input.window_chunks` chunks: read → dense (every model) → sparse → the
//!    window's points appended to the work file, the primary dense vectors and the sparse
//!    vectors appended to the compact retrieval state, then a checkpoint ([`super::store`]);
//! 3. `points.jsonl` moved into place;
//! 4. **ranking** over the retrieval state: queries encoded, dense and sparse retrieval, fusion,
//!    CrossEncoder rerank on the candidates' passages (fetched by a second pass over the input)
//!    and evaluation; `rerank.jsonl` written.
//!
//! Memory is bounded by one window, the models and the retrieval state (one row of floats per
//! point for dense, memory-mapped; the sparse postings), never by the corpus' text.
//!
//! Each step returns its output; the job assembles the collection's report from them. A
//! SIGINT/SIGTERM stops at the next batch boundary: the unfinished window is dropped (its
//! checkpoint was never written) and `--resume` redoes it.

use super::dense::run_dense;
use super::devices::lease_stage;
use super::rank::{
    encode_dense_queries, encode_sparse_queries, evaluate_lists, fuse_queries, probe_qrels,
    query_budget, rerank, rerank_candidates, ProbeSampler, QueryVectors,
};
use super::sparse::run_sparse;
use super::store::{Checkpoint, CollectionStore, Phase};
use crate::batching::BatchBudget;
use crate::config::{FusionMethod, RunConfig};
use crate::dispatch::FaultInjector;
use crate::eval::{self, Qrels};
use crate::export::manifest::{EvaluationReport, RankingReport, SkippedSummary};
use crate::export::{
    render_point, write_ranked, CollectionReport, CollectionStatus, FailureClass, PointVectors,
    StageReport, StageRun, StageStatus, POINTS_FILE, RANKED_FILE,
};
use crate::gpu::{DeviceLease, LeaseLog, LeaseOptions, MemoryProbe, StageMemory};
use crate::input::{self, Chunk, ChunkStream, Collection, InputError, Query};
use crate::models::ResidentModels;
use crate::ranking::{QuerySet, QuerySource, QueryStatus, RankedQuery};
use crate::stage::Stage;
use crate::telemetry::{memory, progress::SharedProgress};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// How many ids of failed chunks the manifest lists.
const FAILED_IDS_SHOWN: usize = 20;

/// Test hooks: faults forced on chosen batches of a stage (by chunk position in the
/// collection; by query index for rerank), so recovery paths run without relying on chance.
#[derive(Default)]
pub struct Faults {
    pub dense: Option<Box<FaultInjector>>,
    pub sparse: Option<Box<FaultInjector>>,
    pub rerank: Option<Box<FaultInjector>>,
}

/// How stages lease their devices.
pub struct Leasing<'a> {
    pub options: &'a LeaseOptions,
    pub probe: &'a dyn MemoryProbe,
    pub log: &'a LeaseLog,
}

/// A stage's hold on its devices and the batch budget planned under it.
type StageLease<'p> = (DeviceLease<'p>, BatchBudget, StageMemory);

impl Leasing<'_> {
    /// Leases the devices of `stage`'s `index`-th model, *then* makes the stage's models
    /// resident: weights are uploaded only to devices the stage holds, and the plan reads free
    /// memory before the upload (so the weights are counted once).
    fn lease_and_activate(
        &self,
        models: &mut ResidentModels<'_>,
        stage: Stage,
        index: usize,
        configured: BatchBudget,
    ) -> Result<StageLease<'_>, Stop> {
        let needs = models.needs(stage, index, configured).ok_or_else(|| {
            Stop::Failed(
                FailureClass::Model,
                format!("no {stage} model {index} is configured"),
            )
        })?;
        let lease = lease_stage(&needs, self.options, self.probe, self.log).map_err(|err| {
            Stop::Failed(
                FailureClass::Model,
                format!("cannot lease the {stage} stage's devices: {err}"),
            )
        })?;
        models
            .activate(stage)
            .map_err(|err| Stop::Failed(FailureClass::Model, error_chain(&err)))?;
        Ok(lease)
    }
}

/// Run-wide inputs read once: the global query file and qrels, when configured.
#[derive(Clone, Copy)]
pub struct SharedInputs<'a> {
    pub queries: Option<&'a (PathBuf, Vec<Query>)>,
    pub qrels: Option<&'a (PathBuf, Qrels)>,
}

/// What a collection's job produced.
pub struct CollectionOutcome {
    pub report: CollectionReport,
    pub warnings: Vec<String>,
    /// The run was interrupted during this collection.
    pub interrupted: bool,
}

/// Why a collection's work stopped early.
enum Stop {
    Interrupted,
    Failed(FailureClass, String),
}

impl Stop {
    fn input(err: impl std::fmt::Display) -> Self {
        Stop::Failed(FailureClass::Input, err.to_string())
    }

    fn output(path: &Path, err: impl std::fmt::Display) -> Self {
        Stop::Failed(
            FailureClass::Output,
            format!("cannot write {}: {err}", path.display()),
        )
    }
}

/// Stops if a SIGINT/SIGTERM arrived.
fn check_interrupt() -> Result<(), Stop> {
    if crate::interrupt::requested() {
        Err(Stop::Interrupted)
    } else {
        Ok(())
    }
}

/// The scan's findings.
struct Scan {
    chunks: usize,
    skipped: input::SkipReport,
    /// Probe queries, when the collection has no query file.
    probe: Option<QuerySet>,
}

/// What a collection is ranked with.
struct RankingInputs {
    set: QuerySet,
    /// Label (`file:…` or `probe`) and judgements, when there are any to evaluate with.
    qrels: Option<(String, Qrels)>,
}

/// Everything a collection's job reads from the run.
pub struct JobContext<'a> {
    pub config: &'a RunConfig,
    pub leasing: Leasing<'a>,
    pub faults: &'a Faults,
    pub shared: SharedInputs<'a>,
    /// `<output>/.work`.
    pub work_dir: &'a Path,
    pub fingerprint: &'a str,
    pub resume: bool,
}

/// Runs one collection (see the module docs).
pub fn run_collection(
    ctx: &JobContext<'_>,
    models: &mut ResidentModels<'_>,
    collection: &Collection,
) -> CollectionOutcome {
    let span = tracing::info_span!("collection", name = %collection.name);
    let _entered = span.enter();
    let job = Job {
        ctx,
        collection,
        config: ctx.config,
    };
    job.run(models)
}

struct Job<'a> {
    ctx: &'a JobContext<'a>,
    collection: &'a Collection,
    config: &'a RunConfig,
}

impl Job<'_> {
    fn run(&self, models: &mut ResidentModels<'_>) -> CollectionOutcome {
        let config = self.config;
        let name = &self.collection.name;
        let store_dir = self.ctx.work_dir.join(name);
        let mut warnings = Vec::new();
        let mut report = empty_report(self.collection);

        let checkpoint = if self.ctx.resume {
            CollectionStore::load_checkpoint(&store_dir, self.ctx.fingerprint)
        } else {
            None
        };
        if let Some(done) = checkpoint.as_ref().and_then(|c| self.finished_report(c)) {
            info!("collection already complete (resumed)");
            return CollectionOutcome {
                report: done,
                warnings,
                interrupted: false,
            };
        }
        // A collection that failed or was never finished is redone from its last complete
        // window (or afresh).
        let checkpoint = checkpoint.filter(|c| c.phase != Phase::Done);

        let scan = match self.scan(config.rerank.probe_queries) {
            Ok(scan) => scan,
            Err(err) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(err.to_string());
                return self.finish_failed(report, warnings, &store_dir);
            }
        };
        report.chunks = scan.chunks;
        report.skipped = SkippedSummary::from(&scan.skipped);
        if scan.skipped.total() > 0 {
            warn!(
                skipped = scan.skipped.total(),
                "invalid records skipped (see manifest)"
            );
        }
        info!(
            files = report.files,
            chunks = report.chunks,
            "collection read"
        );

        let inputs = match self.ranking_inputs(scan.probe.clone(), &mut warnings) {
            Ok(inputs) => inputs,
            Err(message) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(message);
                return self.finish_failed(report, warnings, &store_dir);
            }
        };

        let resumed_windows = checkpoint.as_ref().map_or(0, |c| c.windows);
        let mut store = match CollectionStore::open(&store_dir, self.ctx.fingerprint, checkpoint) {
            Ok(store) => store,
            Err(err) => {
                report.failure = Some(FailureClass::Output);
                report.error = Some(format!("cannot use {}: {err}", store_dir.display()));
                return self.finish_failed(report, warnings, &store_dir);
            }
        };
        if resumed_windows > 0 {
            info!(
                windows = resumed_windows,
                chunks = store.checkpoint().chunks_consumed,
                "resuming after the last complete window"
            );
        }
        report.resumed_windows = resumed_windows;

        let points_path = config.output.dir.join(name).join(POINTS_FILE);
        let embedded = match store.checkpoint().phase {
            Phase::Windows => self
                .embed_windows(models, &mut store, scan.chunks)
                .and_then(|()| {
                    store
                        .finish_points(&points_path)
                        .map_err(|err| Stop::output(&points_path, err))
                }),
            Phase::Embedded | Phase::Done => Ok(()),
        };
        absorb_checkpoint(&mut report, store.checkpoint());
        match embedded {
            Ok(()) => {}
            Err(stop) => return self.stopped(report, warnings, stop),
        }
        let sparse_status = if config.sparse.enabled {
            StageStatus::Ok
        } else {
            StageStatus::Disabled
        };
        report
            .stages
            .entry(Stage::Sparse)
            .or_insert_with(|| StageReport::with_status(sparse_status, None));
        report.points = store.checkpoint().points;
        report.outputs.push(format!("{name}/{POINTS_FILE}"));
        info!(points = report.points, path = %points_path.display(), "points written");
        warnings.extend(sparse_warning(&report, name));
        log_stage_totals(&report);

        let ranked = match inputs {
            Some(inputs) => match self.rank(models, &store, inputs) {
                Ok(ranked) => Some(ranked),
                Err(stop) => return self.stopped(report, warnings, stop),
            },
            None => None,
        };
        let mut export = StageStatus::Ok;
        insert_ranking_stages(&mut report, ranked.as_ref(), self.config);
        if let Some(ranked) = ranked {
            warnings.extend(ranked.warnings.iter().cloned());
            report.ranking = Some(ranked.report.clone());
            report.evaluation = ranked.evaluation.clone();
            if self.fusion_enabled() {
                let path = config.output.dir.join(name).join(RANKED_FILE);
                match write_ranked(
                    &path,
                    &ranked.set,
                    &ranked.queries,
                    &ranked.ids,
                    config.rerank.top_k,
                ) {
                    Ok(_) => report.outputs.push(format!("{name}/{RANKED_FILE}")),
                    Err(err) => {
                        export = StageStatus::Failed;
                        report.failure = Some(FailureClass::Output);
                        report.error = Some(format!("cannot write {}: {err}", path.display()));
                    }
                }
            }
        }
        report
            .stages
            .insert(Stage::Export, StageReport::with_status(export, None));
        report.status = match (export, report.failed_chunks) {
            (StageStatus::Failed, _) => CollectionStatus::Failed,
            (_, 0) => CollectionStatus::Ok,
            _ => CollectionStatus::Partial,
        };
        if report.status == CollectionStatus::Partial {
            warnings.push(format!(
                "collection {name}: {} chunks failed dense embedding even alone and have no point (ids in the manifest)",
                report.failed_chunks
            ));
        }
        if report.status != CollectionStatus::Failed {
            if let Err(err) = store.finish(&report) {
                warnings.push(format!(
                    "collection {name}: cannot record completion in {}: {err}",
                    store_dir.display()
                ));
            }
        }
        CollectionOutcome {
            report,
            warnings,
            interrupted: false,
        }
    }

    /// The report of a collection an earlier run completed, if its outputs are still there.
    fn finished_report(&self, checkpoint: &Checkpoint) -> Option<CollectionReport> {
        let report = checkpoint.report.as_ref()?;
        let present = report
            .outputs
            .iter()
            .all(|file| self.config.output.dir.join(file).is_file());
        (checkpoint.phase == Phase::Done && present).then(|| report.clone())
    }

    fn finish_failed(
        &self,
        mut report: CollectionReport,
        warnings: Vec<String>,
        store_dir: &Path,
    ) -> CollectionOutcome {
        report.status = CollectionStatus::Failed;
        self.skip_stages(&mut report);
        // Nothing of a failed collection is kept for a resume.
        let _ = std::fs::remove_dir_all(store_dir);
        CollectionOutcome {
            report,
            warnings,
            interrupted: false,
        }
    }

    fn stopped(
        &self,
        mut report: CollectionReport,
        warnings: Vec<String>,
        stop: Stop,
    ) -> CollectionOutcome {
        match stop {
            Stop::Interrupted => {
                report.status = CollectionStatus::Interrupted;
                report.error = Some(format!(
                    "interrupted by {} after {} complete windows; --resume continues",
                    crate::interrupt::signal_name().unwrap_or("a signal"),
                    report.windows
                ));
                self.skip_stages(&mut report);
                CollectionOutcome {
                    report,
                    warnings,
                    interrupted: true,
                }
            }
            Stop::Failed(class, message) => {
                report.failure = Some(class);
                report.error = Some(message);
                report.status = CollectionStatus::Failed;
                self.skip_stages(&mut report);
                CollectionOutcome {
                    report,
                    warnings,
                    interrupted: false,
                }
            }
        }
    }

    /// Stages not reached: `skipped` where enabled, `disabled` otherwise.
    fn skip_stages(&self, report: &mut CollectionReport) {
        for stage in Stage::ALL {
            report.stages.entry(stage).or_insert_with(|| {
                let status = if self.stage_enabled(stage) {
                    StageStatus::Skipped
                } else {
                    StageStatus::Disabled
                };
                StageReport::with_status(status, None)
            });
        }
    }

    fn stage_enabled(&self, stage: Stage) -> bool {
        let config = self.config;
        match stage {
            Stage::Dense | Stage::Export => true,
            Stage::Sparse => config.sparse.enabled,
            Stage::Fusion => self.fusion_enabled(),
            Stage::Rerank => config.rerank.enabled,
        }
    }

    /// Fusion runs when anything ranks.
    fn fusion_enabled(&self) -> bool {
        self.config.sparse.enabled || self.config.rerank.enabled
    }

    /// The validating pass (see the module docs).
    fn scan(&self, probe_count: usize) -> Result<Scan, InputError> {
        let needs_probe = self.ctx.shared.queries.is_none()
            && self.collection.own_file("queries.jsonl").is_none();
        let mut sampler = ProbeSampler::new(if needs_probe { probe_count } else { 0 });
        let mut stream = ChunkStream::open(self.collection, self.config.input.on_invalid);
        let mut chunks = 0;
        for chunk in stream.by_ref() {
            sampler.offer(chunks, &chunk?);
            chunks += 1;
        }
        let probe = needs_probe.then(|| sampler.finish());
        Ok(Scan {
            chunks,
            skipped: stream.into_skipped(),
            probe: probe.filter(|set| !set.queries.is_empty()),
        })
    }

    /// The queries and qrels the collection is ranked with; `None` when nothing will be
    /// ranked (no queries, or a dense-only run with nothing to evaluate). `Err`: the
    /// collection's own query file is bad (an input failure).
    fn ranking_inputs(
        &self,
        probe: Option<QuerySet>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<RankingInputs>, String> {
        let config = self.config;
        let collection = self.collection;
        let set = if let Some((path, queries)) = self.ctx.shared.queries {
            Some(QuerySet {
                source: QuerySource::File(path.clone()),
                queries: queries.clone(),
                targets: None,
            })
        } else if let Some(path) = collection.own_file("queries.jsonl") {
            let queries = input::read_queries(&path)
                .map_err(|err| format!("cannot read the collection's queries: {err}"))?;
            Some(QuerySet {
                source: QuerySource::File(path),
                queries,
                targets: None,
            })
        } else {
            probe
        };
        let Some(set) = set else {
            return Ok(None);
        };
        let label = |path: &Path| format!("file:{}", config.display_path(path).display());
        let qrels = if set.source == QuerySource::Probe {
            probe_qrels(&set).map(|q| ("probe".to_string(), q))
        } else if let Some((path, qrels)) = self.ctx.shared.qrels {
            Some((label(path), qrels.clone()))
        } else {
            match collection.own_file("qrels/test.tsv") {
                Some(path) => match eval::read_qrels(&path) {
                    Ok(qrels) => Some((label(&path), qrels)),
                    Err(err) => {
                        warnings.push(format!(
                            "collection {}: qrels not used: {err}",
                            collection.name
                        ));
                        None
                    }
                },
                None => None,
            }
        };
        let is_probe = set.source == QuerySource::Probe;
        if !self.fusion_enabled() && (is_probe || qrels.is_none()) {
            return Ok(None);
        }
        Ok(Some(RankingInputs { set, qrels }))
    }

    /// The windows after the last checkpoint (see the module docs).
    fn embed_windows(
        &self,
        models: &mut ResidentModels<'_>,
        store: &mut CollectionStore,
        total_chunks: usize,
    ) -> Result<(), Stop> {
        let config = self.config;
        let name = &self.collection.name;
        let mut stream = ChunkStream::open(self.collection, config.input.on_invalid);
        let consumed = store.checkpoint().chunks_consumed;
        for _ in 0..consumed {
            match stream.next() {
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(Stop::input(err)),
                None => {
                    return Err(Stop::input(format!(
                        "the input has fewer chunks than the checkpoint records ({consumed})"
                    )))
                }
            }
        }
        let remaining = total_chunks.saturating_sub(consumed) as u64;
        let dense_progress = SharedProgress::new(
            config.telemetry.progress,
            format!("dense {name}"),
            "chunks",
            remaining,
        );
        let sparse_progress = config.sparse.enabled.then(|| {
            SharedProgress::new(
                config.telemetry.progress,
                format!("sparse {name}"),
                "chunks",
                remaining,
            )
        });
        let budget = BatchBudget {
            max_tokens: config.dense.batch_tokens,
            max_items: config.dense.max_batch_size,
        };
        loop {
            check_interrupt()?;
            let offset = stream.position();
            let window: Vec<Chunk> = stream
                .by_ref()
                .take(config.input.window_chunks)
                .collect::<Result<_, _>>()
                .map_err(Stop::input)?;
            if window.is_empty() {
                break;
            }
            let window_index = store.checkpoint().windows;
            let span = tracing::info_span!("window", index = window_index, chunks = window.len());
            let _entered = span.enter();
            tracing::debug!(first_chunk = offset, "window started");

            // Dense: every model over the window.
            let mut dense_runs = Vec::new();
            let mut dense_vectors = Vec::new();
            for index in 0..config.dense.models.len() {
                let (result, peak) = memory::measure(|| {
                    let (_lease, budget, plan) =
                        self.ctx
                            .leasing
                            .lease_and_activate(models, Stage::Dense, index, budget)?;
                    let embedder = models.dense.get(index).ok_or_else(|| {
                        Stop::Failed(FailureClass::Model, "dense model not loaded".to_string())
                    })?;
                    let output = run_dense(
                        name,
                        embedder,
                        &window,
                        offset,
                        budget,
                        &|n| dense_progress.inc(n),
                        self.ctx.faults.dense.as_deref(),
                    )
                    .map_err(|err| {
                        Stop::Failed(
                            FailureClass::Model,
                            format!("dense stage failed: {}", error_chain(&err)),
                        )
                    })?;
                    Ok::<_, Stop>((output, plan))
                });
                let (mut output, plan) = result?;
                output.run.peak_rss_bytes = peak;
                output.run.memory = Some(plan);
                dense_runs.push(output.run);
                dense_vectors.push(output.vectors);
            }
            // Vector names now: in exclusive mode the dense models are unloaded for SPLADE.
            let names: Vec<String> = models
                .dense
                .iter()
                .map(|m| m.primary().identity().name.clone())
                .collect();
            check_interrupt()?;

            // Sparse: SPLADE over the window (failures fall back per chunk, never fail it).
            let sparse = match &sparse_progress {
                Some(progress) => {
                    let (result, peak) = memory::measure(|| {
                        let (_lease, budget, plan) = self.ctx.leasing.lease_and_activate(
                            models,
                            Stage::Sparse,
                            0,
                            budget,
                        )?;
                        let encoder = models.sparse.as_ref().ok_or_else(|| {
                            Stop::Failed(FailureClass::Model, "sparse model not loaded".to_string())
                        })?;
                        let mut output = run_sparse(
                            name,
                            encoder,
                            &window,
                            offset,
                            budget,
                            &config.sparse,
                            self.ctx.faults.sparse.as_deref(),
                            &|n| progress.inc(n),
                        );
                        output.run.memory = Some(plan);
                        Ok::<_, Stop>(output)
                    });
                    let mut output = result?;
                    output.run.peak_rss_bytes = peak;
                    Some(output)
                }
                None => None,
            };
            check_interrupt()?;

            // The window's points, in input order, straight to the work files.
            let work_file = self.ctx.work_dir.join(name);
            let io_stop = |err: std::io::Error| Stop::output(&work_file, err);
            if names.len() != dense_vectors.len() {
                return Err(Stop::Failed(
                    FailureClass::Model,
                    "dense vectors missing for a configured model".to_string(),
                ));
            }
            let mut writer = store.window().map_err(io_stop)?;
            let mut line = Vec::new();
            let mut failed_ids = Vec::new();
            for (i, chunk) in window.iter().enumerate() {
                let dense: Option<Vec<(&str, &[f32])>> = names
                    .iter()
                    .zip(&dense_vectors)
                    .map(|(name, set)| set[i].as_ref().ok().map(|v| (name.as_str(), v.as_slice())))
                    .collect();
                // A chunk is a point when every dense model embedded it.
                let Some(dense) = dense.filter(|d| !d.is_empty()) else {
                    failed_ids.push(chunk.id.as_str().to_string());
                    continue;
                };
                let sparse_point = sparse.as_ref().and_then(|s| s.points[i].as_ref());
                let vectors = PointVectors {
                    dense,
                    sparse: sparse_point.map(|p| (config.sparse.name.as_str(), p)),
                };
                line.clear();
                render_point(&mut line, name, chunk, &vectors, config.output.include_text)
                    .map_err(|err| Stop::Failed(FailureClass::Output, err.to_string()))?;
                let primary = vectors.dense.first().map_or(&[][..], |(_, v)| *v);
                writer
                    .point(
                        &line,
                        primary,
                        sparse.as_ref().map(|_| sparse_point.map(|p| &p.vector)),
                        offset + i,
                        chunk.id.as_str(),
                    )
                    .map_err(io_stop)?;
            }
            if !failed_ids.is_empty() {
                warn!(
                    failed = failed_ids.len(),
                    "chunks failed dense embedding even alone; no point written for them"
                );
            }
            let sparse_run = sparse.as_ref().map(|s| s.run.clone());
            writer
                .commit(stream.position(), |checkpoint| {
                    let dense = checkpoint
                        .stages
                        .entry(Stage::Dense)
                        .or_insert_with(|| StageReport::with_status(StageStatus::Ok, None));
                    absorb_runs(&mut dense.runs, dense_runs);
                    if let Some(run) = sparse_run {
                        let stage = checkpoint
                            .stages
                            .entry(Stage::Sparse)
                            .or_insert_with(|| StageReport::with_status(StageStatus::Ok, None));
                        absorb_runs(&mut stage.runs, vec![run]);
                    }
                    checkpoint.failed_count += failed_ids.len();
                    let room = FAILED_IDS_SHOWN.saturating_sub(checkpoint.failed_chunks.len());
                    checkpoint
                        .failed_chunks
                        .extend(failed_ids.into_iter().take(room));
                })
                .map_err(io_stop)?;
            info!(
                done = stream.position(),
                total = total_chunks,
                "window committed"
            );
        }
        dense_progress.finish();
        if let Some(progress) = sparse_progress {
            progress.finish();
        }
        Ok(())
    }

    /// Queries, retrieval, fusion, rerank and evaluation over the complete windows.
    fn rank(
        &self,
        models: &mut ResidentModels<'_>,
        store: &CollectionStore,
        inputs: RankingInputs,
    ) -> Result<Ranked, Stop> {
        let config = self.config;
        let name = &self.collection.name;
        let state = store.retrieval().map_err(|err| {
            Stop::Failed(
                FailureClass::Output,
                format!("cannot read the retrieval state: {err}"),
            )
        })?;
        let RankingInputs { set, qrels } = inputs;
        let mut warnings = Vec::new();
        let (result, peak) = memory::measure(|| {
            // Query vectors: the primary dense model with its query prompt, and SPLADE.
            let leasing = &self.ctx.leasing;
            let dense = {
                let _lease =
                    leasing.lease_and_activate(models, Stage::Dense, 0, query_budget(config))?;
                match models.dense.first() {
                    Some(embedder) => encode_dense_queries(embedder, &set, query_budget(config)),
                    None => Err("no dense model".to_string()),
                }
            };
            let sparse = if config.sparse.enabled {
                let _lease =
                    leasing.lease_and_activate(models, Stage::Sparse, 0, query_budget(config))?;
                models
                    .sparse
                    .as_ref()
                    .map(|encoder| encode_sparse_queries(encoder, &set, query_budget(config)))
            } else {
                None
            };
            check_interrupt()?;
            let query_vectors = QueryVectors { dense, sparse };
            let sparse_index = query_vectors
                .sparse
                .as_ref()
                .and_then(|_| state.sparse_index());
            let (mut queries, fusion_run) = fuse_queries(
                name,
                &set,
                &state.dense_index(),
                sparse_index.as_ref(),
                &query_vectors,
                config,
            );
            drop(sparse_index);

            let rerank_run = if config.rerank.enabled {
                let configured = BatchBudget {
                    max_tokens: config.rerank.batch_tokens,
                    max_items: config.dense.max_batch_size,
                };
                match leasing.lease_and_activate(models, Stage::Rerank, 0, configured) {
                    Ok((_lease, budget, plan)) => match models.cross_encoder.as_ref() {
                        Some(ce) => {
                            let needed = rerank_candidates(&queries, config.rerank.candidates);
                            let passages = self.passages(&needed, &state.positions)?;
                            let mut run = rerank(
                                ce,
                                &set,
                                &mut queries,
                                &passages,
                                config,
                                budget,
                                self.ctx.faults.rerank.as_deref(),
                            );
                            run.memory = Some(plan);
                            Some(run)
                        }
                        None => None,
                    },
                    // A rerank that cannot get its device is reported; the fused lists stand.
                    Err(Stop::Failed(_, message)) => {
                        warnings.push(format!("collection {name}: rerank not run: {message}"));
                        None
                    }
                    Err(stop) => return Err(stop),
                }
            } else {
                None
            };
            check_interrupt()?;
            Ok((queries, fusion_run, rerank_run))
        });
        let (queries, mut fusion_run, mut rerank_run) = result?;
        // Ranking is one measurement: the CrossEncoder dominates it when it runs.
        match rerank_run.as_mut() {
            Some(run) => run.peak_rss_bytes = peak,
            None => fusion_run.peak_rss_bytes = peak,
        }
        let failed = queries
            .iter()
            .filter(|q| q.status == QueryStatus::Failed)
            .count();
        if failed > 0 {
            warnings.push(format!(
                "collection {name}: {failed} of {} queries failed (see rerank.jsonl for the reasons)",
                queries.len()
            ));
        }
        let sparse_used = config.sparse.enabled;
        let fusion = match (config.fusion.method, sparse_used) {
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
        let report = RankingReport {
            queries_source: match &set.source {
                QuerySource::File(path) => format!("file:{}", config.display_path(path).display()),
                QuerySource::Probe => "probe".to_string(),
            },
            queries: queries.len(),
            failed_queries: failed,
            fusion,
        };
        let evaluation = qrels.map(|(label, qrels)| {
            let lists = evaluate_lists(&qrels, &queries, &state.ids, rerank_run.is_some());
            for (list, metrics) in &lists {
                info!(list = %list, ndcg_at_10 = format!("{:.4}", metrics.ndcg_at_10), recall_at_100 = format!("{:.4}", metrics.recall_at_100),
                    mrr_at_10 = format!("{:.4}", metrics.mrr_at_10), queries = metrics.queries, qrels = %label, "evaluation");
            }
            EvaluationReport {
                qrels: label,
                lists,
            }
        });
        Ok(Ranked {
            set,
            queries,
            ids: state.ids.clone(),
            fusion_run,
            rerank_run,
            report,
            evaluation,
            warnings,
        })
    }

    /// The embedding texts of the points `needed` (point indices), from a second pass over the
    /// input; `positions[point]` is its position in the input stream.
    fn passages(
        &self,
        needed: &[usize],
        positions: &[usize],
    ) -> Result<HashMap<usize, String>, Stop> {
        let mut wanted: HashMap<usize, usize> = HashMap::new();
        for &point in needed {
            if let Some(&position) = positions.get(point) {
                wanted.insert(position, point);
            }
        }
        let mut passages = HashMap::with_capacity(wanted.len());
        let last = wanted.keys().copied().max();
        let stream = ChunkStream::open(self.collection, self.config.input.on_invalid);
        for (position, chunk) in stream.enumerate() {
            let chunk = chunk.map_err(Stop::input)?;
            if let Some(&point) = wanted.get(&position) {
                passages.insert(point, chunk.embedding_text().into_owned());
            }
            if Some(position) >= last {
                break;
            }
        }
        let missing: HashSet<&usize> = needed
            .iter()
            .filter(|p| !passages.contains_key(p))
            .collect();
        if !missing.is_empty() {
            return Err(Stop::input(format!(
                "{} rerank candidates are no longer in the input (was it changed during the run?)",
                missing.len()
            )));
        }
        Ok(passages)
    }
}

/// What ranking produced for a collection.
struct Ranked {
    set: QuerySet,
    queries: Vec<RankedQuery>,
    /// Chunk id of each point.
    ids: Vec<String>,
    fusion_run: StageRun,
    rerank_run: Option<StageRun>,
    report: RankingReport,
    evaluation: Option<EvaluationReport>,
    warnings: Vec<String>,
}

/// Fusion and rerank stage reports: `ok` with their runs when they ran, else `skipped` (asked
/// for, nothing to rank) or `disabled`.
fn insert_ranking_stages(
    report: &mut CollectionReport,
    ranked: Option<&Ranked>,
    config: &RunConfig,
) {
    let fusion_on = config.sparse.enabled || config.rerank.enabled;
    let not_run = |enabled: bool| {
        StageReport::with_status(
            if enabled {
                StageStatus::Skipped
            } else {
                StageStatus::Disabled
            },
            None,
        )
    };
    let fusion = match ranked {
        Some(ranked) if fusion_on => StageReport {
            status: StageStatus::Ok,
            detail: None,
            runs: vec![ranked.fusion_run.clone()],
        },
        _ => not_run(fusion_on),
    };
    let rerank = match ranked.and_then(|r| r.rerank_run.as_ref()) {
        Some(run) => StageReport {
            status: StageStatus::Ok,
            detail: None,
            runs: vec![run.clone()],
        },
        None => not_run(config.rerank.enabled),
    };
    report.stages.insert(Stage::Fusion, fusion);
    report.stages.insert(Stage::Rerank, rerank);
}

/// Adds a window's runs (one per model, in model order) to the accumulated ones.
fn absorb_runs(runs: &mut Vec<StageRun>, window: Vec<StageRun>) {
    for (i, run) in window.into_iter().enumerate() {
        match runs.get_mut(i) {
            Some(total) => total.absorb(&run),
            None => runs.push(run),
        }
    }
}

/// The dense and sparse stages and failed chunks as the checkpoint accumulated them.
fn absorb_checkpoint(report: &mut CollectionReport, checkpoint: &Checkpoint) {
    report.windows = checkpoint.windows;
    report.failed_chunks = checkpoint.failed_count;
    report.failed_chunk_ids = checkpoint.failed_chunks.clone();
    for (stage, stage_report) in &checkpoint.stages {
        report.stages.insert(*stage, stage_report.clone());
    }
    report.stages.entry(Stage::Dense).or_insert_with(|| {
        // An empty collection: the stage ran over nothing.
        StageReport::with_status(StageStatus::Ok, None)
    });
}

/// One log line per model of the dense and sparse stages, summed over the windows.
fn log_stage_totals(report: &CollectionReport) {
    for stage in [Stage::Dense, Stage::Sparse] {
        let Some(stage_report) = report.stages.get(&stage) else {
            continue;
        };
        for run in &stage_report.runs {
            let span = tracing::info_span!("stage", stage = %stage, model = %run.model);
            let _entered = span.enter();
            let (items, tokens, batches, truncated, retries) = (
                run.items,
                run.tokens,
                run.batches,
                run.truncated,
                run.retries,
            );
            let (fallbacks, failed) = (run.fallbacks, run.missing);
            let latency_s = format!("{:.2}", run.latency_s);
            let tokens_per_s = format!("{:.0}", run.tokens_per_s);
            match stage {
                Stage::Dense => info!(
                    items,
                    tokens,
                    batches,
                    truncated,
                    retries,
                    failed,
                    windows = report.windows,
                    latency_s,
                    tokens_per_s,
                    "dense stage done"
                ),
                _ => info!(
                    items,
                    tokens,
                    batches,
                    truncated,
                    retries,
                    fallbacks,
                    missing = failed,
                    windows = report.windows,
                    latency_s,
                    tokens_per_s,
                    "sparse stage done"
                ),
            }
        }
    }
}

/// The run warning for chunks whose SPLADE inference failed.
fn sparse_warning(report: &CollectionReport, collection: &str) -> Option<String> {
    let run = report.stages.get(&Stage::Sparse)?.runs.first()?;
    (run.fallbacks + run.missing > 0).then(|| {
        format!(
            "collection {collection}: SPLADE failed for {} of {} chunks ({} fell back to metadata term weights, {} have no sparse vector; reasons: {:?})",
            run.fallbacks + run.missing,
            run.items,
            run.fallbacks,
            run.missing,
            run.failure_reasons
        )
    })
}

fn empty_report(collection: &Collection) -> CollectionReport {
    CollectionReport {
        name: collection.name.clone(),
        status: CollectionStatus::Failed,
        failure: None,
        error: None,
        files: collection.files.len(),
        chunks: 0,
        skipped: SkippedSummary::default(),
        points: 0,
        failed_chunks: 0,
        failed_chunk_ids: Vec::new(),
        windows: 0,
        resumed_windows: 0,
        outputs: Vec::new(),
        stages: BTreeMap::new(),
        ranking: None,
        evaluation: None,
    }
}

/// `error: caused by: …` on one line, for the manifest.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

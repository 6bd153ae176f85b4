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
//!
//! The job's steps are split by phase: the windows ([`windows`]) and the ranking
//! ([`retrieve`]).

mod retrieve;
mod windows;

pub(super) use windows::absorb_runs;

use super::devices::lease_stage;
use super::rank::{probe_qrels, ProbeSampler, SpentBeforeRerank};
use super::reuse::{PreviousCollection, ReuseSource};
use super::store::{
    Checkpoint, CollectionStore, PartsPlan, Phase, PointFormats, CHANGES_FILE, CHUNK_HASHES_FILE,
};
use crate::batching::BatchBudget;
use crate::config::{OutputFormat, RunConfig};
use crate::dispatch::FaultInjector;
use crate::eval::{self, Qrels};
use crate::export::manifest::{stage_seconds, SkippedSummary};
use crate::export::parquet::QUERY_VECTORS_PARQUET;
use crate::export::{
    collection_dir, render_query_vectors, write_query_vectors, write_ranked, CollectionReport,
    CollectionStatus, FailureClass, OverheadReport, StageReport, StageStatus, POINTS_FILE,
    QUERY_VECTORS_FILE, RANKED_FILE,
};
use crate::gpu::{DeviceLease, LeaseLog, LeaseOptions, MemoryProbe, StageMemory};
use crate::input::{self, ChunkStream, Collection, InputError, Query};
use crate::models::ResidentModels;
use crate::ranking::{QuerySet, QuerySource};
use crate::shard::ShardWork;
use crate::stage::Stage;
use retrieve::insert_ranking_stages;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// How many ids of failed chunks the manifest lists.
pub(super) const FAILED_IDS_SHOWN: usize = 20;

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
pub(super) type StageLease<'p> = (DeviceLease<'p>, BatchBudget, StageMemory);

impl Leasing<'_> {
    /// Leases the devices of `stage`'s `index`-th model, *then* makes the stage's models
    /// resident: weights are uploaded only to devices the stage holds, and the plan reads free
    /// memory before the upload (so the weights are counted once).
    pub(super) fn lease_and_activate(
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
pub(super) enum Stop {
    Interrupted,
    Failed(FailureClass, String),
}

impl Stop {
    pub(super) fn input(err: impl std::fmt::Display) -> Self {
        Stop::Failed(FailureClass::Input, err.to_string())
    }

    pub(super) fn output(path: &Path, err: impl std::fmt::Display) -> Self {
        Stop::Failed(
            FailureClass::Output,
            format!("cannot write {}: {err}", path.display()),
        )
    }
}

/// Stops if a SIGINT/SIGTERM arrived.
pub(super) fn check_interrupt() -> Result<(), Stop> {
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
pub(super) struct RankingInputs {
    pub(super) set: QuerySet,
    /// Label (`file:…` or `probe`) and judgements, when there are any to evaluate with.
    pub(super) qrels: Option<(String, Qrels)>,
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
    /// A merge: each collection's store was assembled from the shards ([`super::merge`]).
    pub merging: bool,
    /// `--reuse`: the earlier output whose unchanged vectors are taken ([`super::reuse`]).
    pub reuse: Option<&'a ReuseSource>,
    /// With `parquet` among `output.formats`: the files' layout (its collection name is each
    /// collection's).
    pub parquet: Option<&'a crate::export::parquet::Layout>,
}

/// Runs one collection (see the module docs); `part`: a shard's part of it (the shard embeds
/// only, and keeps its work state for `merge`).
pub fn run_collection(
    ctx: &JobContext<'_>,
    models: &mut ResidentModels<'_>,
    collection: &Collection,
    part: Option<ShardWork>,
) -> CollectionOutcome {
    let span = tracing::info_span!("collection", name = %collection.name);
    let _entered = span.enter();
    let job = Job {
        ctx,
        collection,
        config: ctx.config,
        part,
    };
    job.run(models)
}

/// One collection's job; its steps live in [`super::windows`] (embedding) and
/// [`super::retrieve`] (ranking).
pub(super) struct Job<'a> {
    pub(super) ctx: &'a JobContext<'a>,
    pub(super) collection: &'a Collection,
    pub(super) config: &'a RunConfig,
    /// A shard's part of the collection (`None`: all of it, and ranking too).
    pub(super) part: Option<ShardWork>,
}

impl Job<'_> {
    fn run(&self, models: &mut ResidentModels<'_>) -> CollectionOutcome {
        let config = self.config;
        let name = &self.collection.name;
        let mut warnings = Vec::new();
        let mut report = empty_report(self.collection);
        // The collection's output and work directories, both checked to stay inside theirs.
        let (out_dir, store_dir) = match collection_dir(&config.output.dir, name)
            .and_then(|out| Ok((out, collection_dir(self.ctx.work_dir, name)?)))
            .and_then(|(out, store)| {
                // Checked again where each file is written; a link here (made after the run's
                // preflight, or before a resume) fails the collection, never redirects it.
                if crate::files::is_symlink(&out) {
                    return Err(crate::files::UnsafePath::Symlink { path: out }.into());
                }
                Ok((out, store))
            }) {
            Ok(dirs) => dirs,
            Err(err) => {
                report.failure = Some(FailureClass::Output);
                report.error = Some(err.to_string());
                report.status = CollectionStatus::Failed;
                self.skip_stages(&mut report);
                return CollectionOutcome {
                    report,
                    warnings,
                    interrupted: false,
                };
            }
        };

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

        // The probe's size needs the chunk count, so the scan keeps the most it may need
        // (a bottom-k sample by hash: its first n are the bottom-n sample) and cuts after.
        // A run with --reuse: the earlier output's points of this collection (needed only
        // while windows remain).
        let mut previous = match self.ctx.reuse {
            Some(source)
                if checkpoint
                    .as_ref()
                    .is_none_or(|c| c.phase == Phase::Windows) =>
            {
                match source.collection(name) {
                    Ok(previous) => previous,
                    Err(err) => {
                        report.failure = Some(FailureClass::Input);
                        report.error = Some(error_chain(&err));
                        return self.finish_failed(report, warnings, &store_dir);
                    }
                }
            }
            _ => None,
        };
        let scan = match self.scan(
            config
                .rerank
                .probe_queries
                .unwrap_or(crate::config::PROBE_QUERIES_MAX),
            previous.as_mut(),
        ) {
            Ok(scan) => scan,
            Err(err) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(err.to_string());
                return self.finish_failed(report, warnings, &store_dir);
            }
        };
        report.chunks = scan.chunks;
        let mut scan = scan;
        if config.rerank.probe_queries.is_none() {
            if let Some(probe) = scan.probe.as_mut() {
                let budget = crate::config::probe_budget(scan.chunks, config.rerank.candidates);
                probe.queries.truncate(budget);
                if let Some(targets) = probe.targets.as_mut() {
                    targets.truncate(budget);
                }
            }
        }
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
            // A shard ranks nothing: `merge` does, over every shard's vectors.
            Ok(_) if self.part.is_some() => None,
            Ok(inputs) => inputs,
            Err(message) => {
                report.failure = Some(FailureClass::Input);
                report.error = Some(message);
                return self.finish_failed(report, warnings, &store_dir);
            }
        };

        if let (true, Some(checkpoint)) = (self.ctx.merging, &checkpoint) {
            if checkpoint.chunks_consumed != scan.chunks {
                report.failure = Some(FailureClass::Input);
                report.error = Some(format!(
                    "the shards embedded {} chunks of this collection but the input has {}",
                    checkpoint.chunks_consumed, scan.chunks
                ));
                return self.finish_failed(report, warnings, &store_dir);
            }
        }
        let resumed_windows = match &checkpoint {
            Some(c) if !self.ctx.merging => c.windows,
            _ => 0,
        };
        let mut store = match CollectionStore::open(&store_dir, self.ctx.fingerprint, checkpoint) {
            Ok(store) => store,
            Err(err) => {
                report.failure = Some(FailureClass::Output);
                report.error = Some(format!("cannot use {}: {err}", store_dir.display()));
                return self.finish_failed(report, warnings, &store_dir);
            }
        };
        let formats = point_formats(self.ctx.parquet, config, name, &out_dir);
        if let Err(err) = formats.and_then(|formats| store.set_formats(formats)) {
            report.failure = Some(FailureClass::Output);
            report.error = Some(format!("cannot write {}: {err}", out_dir.display()));
            return self.finish_failed(report, warnings, &store_dir);
        }
        if resumed_windows > 0 {
            info!(
                windows = resumed_windows,
                chunks = store.checkpoint().chunks_consumed,
                "resuming after the last complete window"
            );
        }
        report.resumed_windows = resumed_windows;

        let points_path = out_dir.join(POINTS_FILE);
        let embedded = match store.checkpoint().phase {
            Phase::Windows => self
                .embed_windows(models, &mut store, scan.chunks, previous.as_mut())
                .and_then(|()| self.record_deletions(&mut store, previous.as_ref()))
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
        if store.checkpoint().points == 0 && report.failed_chunks > 0 {
            // Nothing was embedded: a model that fails every chunk (NaN everywhere, say) is a
            // failed collection, not a partial one with 0 points. Its empty points file is
            // not left looking like an output.
            let _ = std::fs::remove_file(&points_path);
            let _ = std::fs::remove_file(
                out_dir
                    .join(crate::export::parquet::POINTS_DIR)
                    .join(crate::export::parquet::part_name(0)),
            );
            let message = format!(
                "every chunk ({}) failed dense embedding even alone; no point was written",
                report.failed_chunks
            );
            return self.stopped(report, warnings, Stop::Failed(FailureClass::Model, message));
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
        report.outputs.extend(store.point_outputs(name));
        report.outputs.push(format!("{name}/{CHUNK_HASHES_FILE}"));
        if report.reuse.is_some() {
            report.outputs.push(format!("{name}/{CHANGES_FILE}"));
        }
        info!(points = report.points, path = %points_path.display(), "points written");
        warnings.extend(sparse_warning(&report, name));
        log_stage_totals(&report);

        let ranked = match inputs {
            Some(inputs) => match self.rank(
                models,
                &store,
                inputs,
                SpentBeforeRerank {
                    dense_s: stage_seconds(&report, Stage::Dense),
                    sparse_s: stage_seconds(&report, Stage::Sparse),
                    fusion_s: 0.0,
                },
            ) {
                Ok(ranked) => Some(ranked),
                Err(stop) => return self.stopped(report, warnings, stop),
            },
            None => None,
        };
        let mut export = StageStatus::Ok;
        insert_ranking_stages(&mut report, ranked.as_ref(), self.config);
        if self.part.is_some() {
            for stage in [Stage::Fusion, Stage::Rerank] {
                if let Some(stage_report) = report.stages.get_mut(&stage) {
                    if stage_report.status == StageStatus::Skipped {
                        stage_report.detail =
                            Some("runs in `merge`, over every shard's vectors".to_string());
                    }
                }
            }
        }
        let rerank_plan = ranked.as_ref().and_then(|r| r.rerank_plan.clone());
        if let Some(ranked) = ranked {
            if let (Some(reuse), Some(pairs)) = (report.reuse.as_mut(), &ranked.rerank_reuse) {
                reuse.rerank_pairs = Some(pairs.clone());
            }
            warnings.extend(ranked.warnings.iter().cloned());
            report.ranking = Some(ranked.report.clone());
            report.evaluation = ranked.evaluation.clone();
            if self.fusion_enabled() {
                let path = out_dir.join(RANKED_FILE);
                let dense_names: Vec<&str> = config
                    .dense
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect();
                match write_ranked(
                    &path,
                    &ranked.set,
                    &ranked.queries,
                    &ranked.ids,
                    &dense_names,
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
            let vectors = &ranked.query_vectors;
            let dense: Vec<(&str, Option<&[Vec<f32>]>)> = vectors
                .dense
                .iter()
                .map(|(name, v)| (name.as_str(), v.as_ref().ok().map(Vec::as_slice)))
                .collect();
            let sparse = vectors
                .sparse
                .as_deref()
                .map(|v| (config.sparse.name.as_str(), v));
            let lines = render_query_vectors(&ranked.set, &dense, sparse);
            let mut files = Vec::new();
            if config.output.formats.contains(&OutputFormat::Jsonl) {
                files.push((QUERY_VECTORS_FILE, None));
            }
            if let Some(layout) = self.ctx.parquet {
                files.push((QUERY_VECTORS_PARQUET, Some(layout)));
            }
            for (file, parquet) in files {
                let path = out_dir.join(file);
                let written = lines
                    .as_ref()
                    .map_err(|err| err.to_string())
                    .and_then(|lines| {
                        write_query_vectors(&path, lines, parquet, name)
                            .map_err(|err| err.to_string())
                    });
                match written {
                    Ok(()) => report.outputs.push(format!("{name}/{file}")),
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
        let mut overhead = OverheadReport::of(&report);
        if let Some(plan) = rerank_plan {
            overhead.limit_by_budget(plan);
        }
        report.overhead = Some(overhead);
        // A query that failed (its rerank scores were not finite, say) is a part not done, like
        // a chunk without a point: the run says partial, never ok (the warning is the ranking's).
        let failed_queries = report.ranking.as_ref().map_or(0, |r| r.failed_queries);
        report.status = match (export, report.failed_chunks, failed_queries) {
            (StageStatus::Failed, _, _) => CollectionStatus::Failed,
            (_, 0, 0) => CollectionStatus::Ok,
            _ => CollectionStatus::Partial,
        };
        if report.failed_chunks > 0 && report.status == CollectionStatus::Partial {
            warnings.push(format!(
                "collection {name}: {} chunks failed dense embedding even alone and have no point (ids in the manifest)",
                report.failed_chunks
            ));
        }
        if report.status != CollectionStatus::Failed {
            let finished = if self.part.is_some() {
                store.finish_shard(&report)
            } else {
                store.finish(&report)
            };
            if let Err(err) = finished {
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
    pub(super) fn fusion_enabled(&self) -> bool {
        retrieve::fusion_runs(self.config)
    }

    /// The validating pass (see the module docs).
    fn scan(
        &self,
        probe_count: usize,
        mut previous: Option<&mut PreviousCollection>,
    ) -> Result<Scan, InputError> {
        let needs_probe = self.ctx.shared.queries.is_none()
            && self.collection.own_file("queries.jsonl").is_none()
            && self.part.is_none();
        let mut sampler = ProbeSampler::new(if needs_probe { probe_count } else { 0 });
        let mut stream = ChunkStream::open(self.collection, self.config.input.on_invalid);
        let mut chunks = 0;
        // A shard validates every record but counts only its own chunks.
        for (position, chunk) in stream.by_ref().enumerate() {
            let chunk = chunk?;
            if self.owns(&chunk) {
                sampler.offer(position, &chunk);
                chunks += 1;
                if let Some(previous) = previous.as_deref_mut() {
                    previous.mark_seen(chunk.id.as_str());
                }
            }
        }
        let probe = needs_probe.then(|| sampler.finish());
        Ok(Scan {
            chunks,
            skipped: stream.into_skipped(),
            probe: probe.filter(|set| !set.queries.is_empty()),
        })
    }

    /// A run with `--reuse`: once every window is in, the deletions of the earlier points
    /// whose chunk is gone (recorded once, however often the run is resumed).
    fn record_deletions(
        &self,
        store: &mut CollectionStore,
        previous: Option<&PreviousCollection>,
    ) -> Result<(), Stop> {
        if self.ctx.reuse.is_none()
            || store
                .checkpoint()
                .reuse
                .as_ref()
                .is_some_and(|r| r.deletions_recorded)
        {
            return Ok(());
        }
        let work = self.ctx.work_dir.join(&self.collection.name);
        // A shard records the deletions of the earlier points it owns, so that the merge has
        // each exactly once.
        let owned = |chunk_id: &str| {
            self.part
                .as_ref()
                .is_none_or(|part| part.owns_chunk(chunk_id))
        };
        let (lines, deleted) = super::reuse::deletions(previous, &owned)
            .map_err(|err| Stop::Failed(FailureClass::Output, err.to_string()))?;
        store
            .append_changes(&lines, |checkpoint| {
                let reuse = checkpoint.reuse.get_or_insert_with(Default::default);
                reuse.changes.deleted += deleted;
                reuse.deletions_recorded = true;
            })
            .map_err(|err| Stop::output(&work, err))
    }

    /// Whether this run embeds `chunk` (a shard only its part).
    pub(super) fn owns(&self, chunk: &input::Chunk) -> bool {
        self.part
            .as_ref()
            .is_none_or(|part| part.owns_chunk(chunk.id.as_str()))
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
}

/// The dense and sparse stages and failed chunks as the checkpoint accumulated them.
fn absorb_checkpoint(report: &mut CollectionReport, checkpoint: &Checkpoint) {
    report.windows = checkpoint.windows;
    report.failed_chunks = checkpoint.failed_count;
    report.failed_chunk_ids = checkpoint.failed_chunks.clone();
    report.reuse = checkpoint.reuse.clone();
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
        input_sha256: None,
        outputs: Vec::new(),
        stages: BTreeMap::new(),
        ranking: None,
        evaluation: None,
        overhead: None,
        reuse: None,
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

/// The formats `config` asks the points of collection `name` in (`layout`: the Parquet
/// layout when Parquet is among them).
pub(crate) fn point_formats(
    layout: Option<&crate::export::parquet::Layout>,
    config: &RunConfig,
    name: &str,
    out_dir: &Path,
) -> std::io::Result<PointFormats> {
    let parquet = match layout {
        Some(layout) => Some(PartsPlan {
            writer: crate::export::parquet::Writer::new(
                crate::export::parquet::RecordKind::Point,
                crate::export::parquet::Layout {
                    collection: name.to_string(),
                    ..layout.clone()
                },
            )
            .map_err(std::io::Error::other)?,
            dir: out_dir.join(crate::export::parquet::POINTS_DIR),
            rows_per_part: config.input.window_chunks,
        }),
        None => None,
    };
    Ok(PointFormats {
        jsonl: config.output.formats.contains(&OutputFormat::Jsonl),
        parquet,
    })
}

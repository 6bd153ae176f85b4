//! `BatchRunner`: the run's sequencer. It claims the output directory, says `running` in the
//! manifest before any work, loads the models once, runs each collection
//! ([`super::collection`]), and writes the final manifest and metrics.
//!
//! Run state (see docs/runs.md):
//! - the output directory is locked for the run ([`super::state::OutputLock`]); a second run
//!   into it fails at once, naming the holder's pid;
//! - a fresh run first removes what an earlier run left there (so nothing stale looks
//!   current); `--resume` keeps it and continues after the last complete window, if the run
//!   fingerprint ([`super::resume`]) is unchanged;
//! - `manifest.json` says `running` (with the pid) from the start, then `ok`, `partial`,
//!   `failed` or `interrupted`; a killed run leaves `running` with a dead pid, never an
//!   earlier run's `ok`;
//! - SIGINT/SIGTERM stop at the next batch boundary with status `interrupted`.
//!
//! Failure policy: configuration, discovery and model-load problems stop the run before any
//! collection is processed. Per collection: bad input (under `on_invalid = "error"`) or a
//! dense stage that cannot run marks the collection failed and the run goes on; a chunk that
//! fails dense embedding even alone fails only itself (the collection is `partial`); a sparse
//! failure never fails a collection (the chunks fall back, flagged and counted).

use super::collection::{
    error_chain, run_collection, CollectionOutcome, Faults, JobContext, Leasing, SharedInputs,
};
use super::inputs::{config_inputs, discover, run_outputs};
use super::merge::{self, MergeError, ShardSet};
use super::overlap::{overlaps, InputPath, OutputPath, Overlap};
use super::resume::{self, Attempt, ResumeError, RunState};
use super::reuse::{ReuseError, ReuseSource};
use super::state::{self, OutputLock, StateError, WORK_DIR};
use crate::config::RunConfig;
use crate::dispatch::FaultInjector;
use crate::eval;
use crate::export::manifest::{
    FileRecord, MergedShard, ShardRecord, SharedCollection, Tool, VectorSchema,
};
use crate::export::{
    write_atomic, CollectionReport, CollectionStatus, FailureClass, Manifest, RunStatus,
    MANIFEST_FILE, SCHEMA_VERSION,
};
use crate::gpu::{LeaseLog, LeaseOptions, LeaseWait, MemoryProbe};
use crate::input::{self, Collection, HashError, InputError, InputHashes};
use crate::models::{
    select_devices, LoadError, ModelError, ModelIdentity, ModelManager, ResidentModels,
};
use crate::shard::{Partition, Shard, ShardWork};
use crate::telemetry::metrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

pub use crate::export::METRICS_FILE;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot use the output directory")]
    Output(#[source] StateError),
    #[error(transparent)]
    Resume(ResumeError),
    #[error("cannot discover collections")]
    Discover(#[source] InputError),
    #[error(transparent)]
    Model(LoadError),
    #[error("cannot use the configured devices (gpu.devices)")]
    Device(#[source] ModelError),
    #[error("cannot read the query file")]
    Queries(#[source] InputError),
    #[error("cannot read the qrels file")]
    Qrels(#[source] eval::EvalError),
    #[error(transparent)]
    Merge(MergeError),
    /// Problems found before any model was loaded (models, memory ceiling, output paths).
    #[error("cannot start the run:{}", .0.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Preflight(Vec<String>),
    #[error(transparent)]
    Hash(HashError),
    #[error(transparent)]
    Reuse(ReuseError),
    /// An output would overwrite, or be written inside, an input.
    #[error("an output would overwrite an input:{}", .0.iter().map(|o| format!("\n  - {o}")).collect::<String>())]
    Overlap(Vec<Overlap>),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the queries: {0}")]
    Encode(String),
    #[error("interrupted")]
    Interrupted,
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished (or interrupted) run produced.
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
    pub(super) config: RunConfig,
    pub(super) manager: ModelManager,
    faults: Faults,
    /// Reads device memory for leases (the host's, or injected readings in tests).
    pub(super) probe: Box<dyn MemoryProbe>,
    pub(super) lease_options: LeaseOptions,
    pub(super) lease_log: LeaseLog,
    /// Exclusive stages on the CPU too (GPUs always are).
    pub(super) exclusive_models: bool,
    resume: bool,
    /// `--shard`: embed only this shard's part of the input (into `<output>/shard-I-of-N/`).
    shard: Option<Shard>,
    /// `merge`: the shards to merge.
    merge: Option<ShardSet>,
    /// What the manifest records of the sharding, once known.
    sharding: Mutex<Sharding>,
}

/// A shard's or a merge's manifest sections.
#[derive(Default)]
struct Sharding {
    shard: Option<ShardRecord>,
    merged_from: Vec<MergedShard>,
}

/// How the collections are shared among the shards, and their inputs' hashes.
struct ShardPlan {
    partition: Vec<SharedCollection>,
    input_sha256: BTreeMap<String, String>,
}

/// Where `--reuse` reads the earlier output.
struct ReuseDir {
    dir: PathBuf,
    /// As configured, for messages and the manifest.
    shown: String,
    /// The output directory itself (read from its snapshot).
    in_place: bool,
}

/// The run's identity, fixed at its start.
struct RunIdentity {
    run_id: String,
    started_at: SystemTime,
    resumed_from: Vec<Attempt>,
}

impl BatchRunner {
    pub fn new(mut config: RunConfig, manager: ModelManager) -> Self {
        let ceiling_bytes = config.gpu.memory_ceiling.0;
        let shard = config.shard.spec;
        if let Some(shard) = shard {
            // Shards may share one output directory (a shared volume): each writes its own
            // subdirectory, and its own metrics file.
            config.output.dir = config.output.dir.join(shard.dir_name());
            if let Some(file) = &mut config.telemetry.metrics_file {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let extension = file
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default();
                file.set_file_name(format!("{stem}.{}{extension}", shard.dir_name()));
            }
        }
        Self {
            config,
            manager,
            faults: Faults::default(),
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
            resume: false,
            shard,
            merge: None,
            sharding: Mutex::new(Sharding::default()),
        }
    }

    /// Merges `shards` (checked by [`ShardSet::open`]) instead of embedding: see
    /// [`super::merge`].
    pub fn with_merge(mut self, shards: ShardSet) -> Self {
        self.sharding_mut().merged_from = shards.records();
        self.merge = Some(shards);
        self
    }

    fn sharding_mut(&self) -> std::sync::MutexGuard<'_, Sharding> {
        self.sharding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Continues the interrupted run in the output directory (`--resume`).
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
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

    /// Makes the dense stage fail (or run out of memory on) the batches `fault` picks, by chunk
    /// position within the collection.
    pub fn with_dense_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.faults.dense = Some(fault);
        self
    }

    /// Makes the sparse stage fail the batches `fault` picks (by chunk position within the
    /// collection), so tests can exercise the fallback without relying on chance.
    pub fn with_sparse_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.faults.sparse = Some(fault);
        self
    }

    /// Makes the rerank stage fail the pair batches `fault` picks (by query index), so tests can
    /// check that failed queries are reported, never scored.
    pub fn with_rerank_fault(mut self, fault: Box<FaultInjector>) -> Self {
        self.faults.rerank = Some(fault);
        self
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// `telemetry.metrics_file`, else `<output.dir>/metrics.prom`.
    pub fn metrics_path(&self) -> PathBuf {
        self.config
            .telemetry
            .metrics_file
            .clone()
            .unwrap_or_else(|| self.config.output.dir.join(METRICS_FILE))
    }

    /// Refuses `outputs` that would overwrite, or be written inside, one of the run's inputs
    /// ([`config_inputs`], with `extra`); `collections: false` leaves out discovery (a
    /// command that reads no collection).
    pub(super) fn refuse_overlaps(
        &self,
        outputs: &[OutputPath],
        extra: Vec<InputPath>,
        collections: bool,
    ) -> Result<(), RunError> {
        let mut inputs = extra;
        inputs.extend(config_inputs(&self.config, collections));
        let found = overlaps(outputs, &inputs);
        if found.is_empty() {
            Ok(())
        } else {
            Err(RunError::Overlap(found))
        }
    }

    fn work_dir(&self) -> PathBuf {
        self.config.output.dir.join(WORK_DIR)
    }

    /// Runs every collection, then writes the manifest and the metrics file. Both are written
    /// on failure too (status `failed`, `run_success 0`), so a cron watcher never reads an
    /// earlier run's success; nothing is written when the output directory is another run's.
    pub fn run(&self) -> Result<RunOutcome, RunError> {
        let output_dir = &self.config.output.dir;
        // Before the lock and the cleanup: both write in the output directory.
        self.refuse_overlaps(
            &run_outputs(output_dir, self.metrics_path()),
            Vec::new(),
            true,
        )?;
        let _lock = OutputLock::acquire(output_dir).map_err(RunError::Output)?;
        // Before the cleanup: a run reusing its own output moves that output aside first.
        let reuse = self.prepare_reuse()?;
        let in_place = reuse.as_ref().is_some_and(|r| r.in_place);
        let mut identity = RunIdentity {
            run_id: uuid::Uuid::new_v4().to_string(),
            started_at: SystemTime::now(),
            resumed_from: Vec::new(),
        };
        if self.resume {
            match state::clean_temp_files(output_dir) {
                Ok(0) => {}
                Ok(n) => info!(files = n, "removed temp files of the interrupted run"),
                Err(err) => warn!("cannot remove temp files: {err}"),
            }
        } else {
            match state::clean_previous_outputs(output_dir, in_place) {
                Ok(removed) if !removed.is_empty() => {
                    info!(files = removed.len(), dir = %output_dir.display(), "removed an earlier run's outputs")
                }
                Ok(_) => {}
                Err(err) => {
                    return Err(RunError::Write {
                        path: output_dir.clone(),
                        source: err,
                    })
                }
            }
        }
        self.write_manifest(
            &identity,
            RunStatus::Running,
            &[],
            &[],
            Vec::new(),
            None,
            None,
        )?;
        self.write_metrics(&identity, RunStatus::Running, &[]);

        let result = self.run_collections(&mut identity, reuse.as_ref());
        if in_place
            && result
                .as_ref()
                .is_ok_and(|done| matches!(done.status, RunStatus::Ok | RunStatus::Partial))
        {
            // The earlier output is superseded; a failed or interrupted run keeps it for the
            // next attempt.
            let snapshot = output_dir.join(state::REUSE_SNAPSHOT_DIR);
            if let Err(err) = std::fs::remove_dir_all(&snapshot) {
                warn!("cannot remove {}: {err}", snapshot.display());
            }
        }
        let (status, collections, models, warnings, error) = match &result {
            Ok(done) => (
                done.status,
                done.collections.as_slice(),
                done.models.as_slice(),
                done.warnings.clone(),
                None,
            ),
            Err(err) => (
                RunStatus::Failed,
                &[][..],
                &[][..],
                Vec::new(),
                Some(error_chain(err)),
            ),
        };
        // Metrics first, so that the manifest can list (and hash) every file the run wrote.
        self.write_metrics(&identity, status, collections);
        let files = self.written_files(collections);
        let written = self.write_manifest(
            &identity,
            status,
            models,
            collections,
            warnings,
            error,
            Some(files),
        );
        let done = result?;
        let manifest = written?;
        Ok(RunOutcome {
            status: done.status,
            manifest,
            input_failures: done
                .collections
                .iter()
                .filter(|r| r.failure == Some(FailureClass::Input))
                .count(),
            collections: done.collections,
        })
    }

    fn run_collections(
        &self,
        identity: &mut RunIdentity,
        reuse: Option<&ReuseDir>,
    ) -> Result<Collections, RunError> {
        let config = &self.config;
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

        // Everything that can be checked without running a model is, before one loads: a
        // truncated weights file, a ceiling below the weights or a file where a collection's
        // directory should be would otherwise fail the run late, or after all its embedding.
        let mut problems = super::check::model_problems(config, &self.manager).problems;
        problems.extend(super::check::collection_output_problems(
            &config.output.dir,
            &collections,
        ));
        if !problems.is_empty() {
            return Err(RunError::Preflight(problems));
        }

        // Every listed GPU gets one replica of a stage's model (data parallelism).
        let devices =
            select_devices(&config.gpu.devices, config.gpu.precision).map_err(RunError::Device)?;
        let (mut models, identities) =
            ResidentModels::load_all(config, &self.manager, &devices, self.exclusive_models)
                .map_err(RunError::Model)?;

        let mut warnings = Vec::new();
        let reuse = match reuse {
            Some(dir) => {
                let source = ReuseSource::open(&dir.dir, &dir.shown, config, &identities)
                    .map_err(RunError::Reuse)?;
                for model in source.dense.iter().chain(&source.sparse) {
                    match &model.previous {
                        Ok(_) => {
                            info!(vector = %model.name, from = %source.shown, "--reuse: unchanged vectors are reused")
                        }
                        Err(why) => {
                            let warning = format!(
                                "--reuse: every {} vector is recomputed: {why}",
                                model.name
                            );
                            warn!("{warning}");
                            warnings.push(warning);
                        }
                    }
                }
                Some(source)
            }
            None => None,
        };

        // Each input file is hashed once: the fingerprint, the shards and the merge use it.
        let hashes = InputHashes::of(&collections).map_err(RunError::Hash)?;
        let (fingerprint_hash, fingerprint) =
            self.claim_run_state(identity, &identities, &collections, &hashes, reuse.as_ref())?;
        let plan = self.plan_shards(&fingerprint, &collections, &hashes)?;
        self.write_manifest(
            identity,
            RunStatus::Running,
            &identities,
            &[],
            Vec::new(),
            None,
            None,
        )?;

        let parquet = parquet_layout(config, &identities)
            .map_err(|err| RunError::Preflight(vec![err.to_string()]))?;
        let work_dir = self.work_dir();
        let ctx = JobContext {
            parquet: parquet.as_ref(),
            config,
            leasing: Leasing {
                options: &self.lease_options,
                probe: self.probe.as_ref(),
                log: &self.lease_log,
            },
            faults: &self.faults,
            shared: SharedInputs {
                queries: global_queries.as_ref(),
                qrels: global_qrels.as_ref(),
            },
            work_dir: &work_dir,
            fingerprint: &fingerprint_hash,
            // A merge continues from the stores it assembles.
            resume: self.resume || self.merge.is_some(),
            merging: self.merge.is_some(),
            reuse: reuse.as_ref(),
        };
        let mut reports = Vec::new();
        let mut interrupted = false;
        for (i, collection) in collections.iter().enumerate() {
            let share = plan.as_ref().map(|p| p.partition[i].share);
            let part = match (self.shard, share) {
                (Some(shard), Some(share)) => match ShardWork::of(share, shard) {
                    ShardWork::None => continue,
                    work => Some(work),
                },
                _ => None,
            };
            if let (Some(set), Some(share)) = (&self.merge, share) {
                let name = &collection.name;
                let out_dir = config.output.dir.join(name);
                let formats =
                    super::collection::point_formats(parquet.as_ref(), config, name, &out_dir)
                        .map_err(|source| RunError::Write {
                            path: out_dir.clone(),
                            source,
                        })?;
                merge::assemble(
                    set,
                    name,
                    share,
                    config.sparse.enabled,
                    reuse.as_ref(),
                    &work_dir.join(name),
                    &fingerprint_hash,
                    &config
                        .output
                        .dir
                        .join(name)
                        .join(crate::export::POINTS_FILE),
                    formats,
                )
                .map_err(RunError::Merge)?;
                info!(collection = %name, shards = set.owners(share).len(), "shards' points merged");
            }
            let CollectionOutcome {
                mut report,
                warnings: more,
                interrupted: stopped,
            } = run_collection(&ctx, &mut models, collection, part);
            report.input_sha256 = match (&plan, part) {
                (Some(plan), _) if self.merge.is_some() => {
                    plan.input_sha256.get(&collection.name).cloned()
                }
                (_, Some(_)) => Some(crate::shard::input_sha256(collection, &hashes).map_err(
                    |source| RunError::Read {
                        path: collection.dir.clone().unwrap_or_else(|| {
                            collection.files.first().cloned().unwrap_or_default()
                        }),
                        source,
                    },
                )?),
                _ => None,
            };
            if let (CollectionStatus::Failed, Some(message)) = (report.status, &report.error) {
                error!(collection = %collection.name, "collection failed: {message}");
            }
            warnings.extend(more);
            reports.push(report);
            if stopped || crate::interrupt::requested() {
                interrupted = true;
                break;
            }
        }
        let status = if interrupted {
            warn!(
                signal = crate::interrupt::signal_name().unwrap_or("signal"),
                "run interrupted; `--resume` continues after the last complete window"
            );
            RunStatus::Interrupted
        } else {
            run_status(&reports)
        };
        Ok(Collections {
            status,
            collections: reports,
            models: identities,
            warnings,
        })
    }

    /// A shard's or a merge's partition of the collections; the shard's manifest section is
    /// recorded, and a merge's shards are checked against this run (`None`: unsharded).
    fn plan_shards(
        &self,
        fingerprint: &serde_json::Value,
        collections: &[Collection],
        hashes: &InputHashes,
    ) -> Result<Option<ShardPlan>, RunError> {
        let count = match (self.shard, &self.merge) {
            (Some(shard), _) => shard.count,
            (None, Some(set)) => set.count,
            (None, None) => return Ok(None),
        };
        let partition_rule = Partition {
            count,
            split_bytes: self.config.shard.split_bytes.0,
        };
        let read_error = |path: &Path, source| RunError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut partition = Vec::new();
        for collection in collections {
            let bytes = crate::shard::input_bytes(collection)
                .map_err(|err| read_error(&self.config.input.root, err))?;
            partition.push(SharedCollection {
                name: collection.name.clone(),
                bytes,
                share: partition_rule.share(&collection.name, bytes),
            });
        }
        let portable = resume::portable(fingerprint);
        let mut input_sha256 = BTreeMap::new();
        if let Some(set) = &self.merge {
            for collection in collections {
                let sha = crate::shard::input_sha256(collection, hashes)
                    .map_err(|err| read_error(&self.config.input.root, err))?;
                input_sha256.insert(collection.name.clone(), sha);
            }
            set.verify(
                &self.config.output.dir,
                &portable,
                &partition,
                &input_sha256,
            )
            .map_err(RunError::Merge)?;
            info!(
                shards = set.count,
                "shards checked: complete, same configuration, models and input"
            );
        }
        if let Some(shard) = self.shard {
            let owned = partition
                .iter()
                .filter(|c| ShardWork::of(c.share, shard) != ShardWork::None)
                .count();
            info!(shard = %shard, collections = owned, of = partition.len(), "this shard's part of the input");
            self.sharding_mut().shard = Some(ShardRecord {
                index: shard.index,
                count: shard.count,
                rule: crate::shard::RULE.to_string(),
                split_bytes: partition_rule.split_bytes,
                fingerprint_sha256: resume::fingerprint_sha256(&portable),
                fingerprint: portable,
                partition: partition.clone(),
            });
        }
        Ok(Some(ShardPlan {
            partition,
            input_sha256,
        }))
    }

    /// Where `--reuse` reads from (see [`ReuseDir`]); `None` without it. A run reusing its own
    /// output directory moves that output into [`state::REUSE_SNAPSHOT_DIR`] first (a resumed
    /// one finds it there).
    fn prepare_reuse(&self) -> Result<Option<ReuseDir>, RunError> {
        let Some(given) = &self.config.output.reuse else {
            return Ok(None);
        };
        let shown = self.config.display_path(given).display().to_string();
        let refuse = |reason: &str| {
            Err(RunError::Reuse(ReuseError::Unusable {
                dir: shown.clone(),
                reason: reason.to_string(),
            }))
        };
        let output_dir = &self.config.output.dir;
        let in_place = crate::files::same_dir(given, output_dir);
        if in_place && (self.shard.is_some() || self.merge.is_some()) {
            // Shards and merges reuse the earlier merged output, kept where it is until the
            // new merge has finished.
            return refuse(
                "a shard or a merge reuses an earlier merged output in another directory, not \
                 its own output directory",
            );
        }
        if !in_place {
            return Ok(Some(ReuseDir {
                dir: given.clone(),
                shown,
                in_place,
            }));
        }
        let snapshot = output_dir.join(state::REUSE_SNAPSHOT_DIR);
        if !snapshot.is_dir() && !output_dir.join(MANIFEST_FILE).is_file() {
            // The first of a series of in-place runs (a cron job's first night).
            info!(
                "--reuse: no earlier output in the output directory yet; every chunk is embedded"
            );
            return Ok(None);
        }
        if self.resume {
            if !snapshot.is_dir() {
                return refuse(
                    "--resume with --reuse of the output directory itself continues a run that                      started that way, and none did; run without --resume",
                );
            }
        } else {
            match state::snapshot_for_reuse(output_dir) {
                Ok(true) => {
                    info!(dir = %snapshot.display(), "--reuse: the earlier output moved aside until this run finishes")
                }
                Ok(false) => warn!(
                    dir = %snapshot.display(),
                    "--reuse: an earlier run reusing this directory did not finish; reusing the output it started from (its own partial work is discarded; --resume would have continued it)"
                ),
                Err(source) => {
                    return Err(RunError::Write {
                        path: snapshot,
                        source,
                    })
                }
            }
        }
        Ok(Some(ReuseDir {
            dir: snapshot,
            shown,
            in_place,
        }))
    }

    /// Checks (`--resume`) or records the run fingerprint in `.work/run.json`; returns its hash
    /// and the fingerprint.
    fn claim_run_state(
        &self,
        identity: &mut RunIdentity,
        models: &[ModelIdentity],
        collections: &[Collection],
        hashes: &InputHashes,
        reuse: Option<&ReuseSource>,
    ) -> Result<(String, serde_json::Value), RunError> {
        let work_dir = self.work_dir();
        let mut fingerprint = resume::fingerprint(&self.config, models, collections, hashes);
        if let (Some(reuse), serde_json::Value::Object(map)) = (reuse, &mut fingerprint) {
            // The changes depend on the earlier output: a resume continues against the same one.
            map.insert(
                "reuse_manifest_sha256".to_string(),
                serde_json::Value::String(reuse.manifest_sha256.clone()),
            );
        }
        let mut attempts = Vec::new();
        if self.resume {
            match resume::load(&work_dir).map_err(RunError::Resume)? {
                Some(earlier) => {
                    resume::check(&earlier, &fingerprint).map_err(RunError::Resume)?;
                    attempts = earlier.attempts;
                    info!(
                        earlier_runs = attempts.len(),
                        "resuming the interrupted run"
                    );
                }
                None => {
                    info!("--resume: no earlier run state in the output directory; starting afresh")
                }
            }
        }
        identity.resumed_from = attempts.clone();
        attempts.push(Attempt {
            run_id: identity.run_id.clone(),
            started_at: rfc3339(identity.started_at),
            pid: std::process::id(),
        });
        let state = RunState {
            fingerprint_sha256: resume::fingerprint_sha256(&fingerprint),
            fingerprint,
            attempts,
        };
        resume::save(&work_dir, &state).map_err(|source| RunError::Write {
            path: work_dir.join(resume::RUN_STATE_FILE),
            source,
        })?;
        Ok((state.fingerprint_sha256, state.fingerprint))
    }

    /// The outputs of `collections` and the metrics file, each with its size, lines and hash
    /// (a file that cannot be read is left out, with a warning).
    fn written_files(&self, collections: &[CollectionReport]) -> Vec<FileRecord> {
        let output_dir = &self.config.output.dir;
        let mut files: Vec<(PathBuf, String)> = collections
            .iter()
            .flat_map(|c| c.outputs.iter())
            .map(|relative| (output_dir.join(relative), relative.clone()))
            .collect();
        let metrics = self.metrics_path();
        let shown = match metrics.strip_prefix(output_dir) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => crate::files::absolute(&metrics).display().to_string(),
        };
        files.push((metrics, shown));
        files
            .into_iter()
            .filter_map(|(path, shown)| match FileRecord::of(&path, shown, true) {
                Ok(record) => Some(record),
                Err(err) => {
                    warn!(path = %path.display(), "cannot hash an output for the manifest: {err}");
                    None
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn write_manifest(
        &self,
        identity: &RunIdentity,
        status: RunStatus,
        models: &[ModelIdentity],
        collections: &[CollectionReport],
        warnings: Vec<String>,
        error: Option<String>,
        files: Option<Vec<FileRecord>>,
    ) -> Result<PathBuf, RunError> {
        let config = &self.config;
        let finished = status != RunStatus::Running;
        let sharding = self.sharding_mut();
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            run_id: identity.run_id.clone(),
            pid: std::process::id(),
            started_at: rfc3339(identity.started_at),
            finished_at: finished.then(|| rfc3339(SystemTime::now())),
            status,
            error,
            resumed_from: identity.resumed_from.clone(),
            config: &config.for_manifest(),
            models: models.to_vec(),
            vectors: VectorSchema::from_models(models),
            config_file: config.config_file.as_deref().and_then(|path| {
                FileRecord::of(
                    path,
                    crate::files::absolute(path).display().to_string(),
                    false,
                )
                .ok()
            }),
            files: files.unwrap_or_default(),
            wall_seconds: finished.then(|| {
                SystemTime::now()
                    .duration_since(identity.started_at)
                    .map_or(0.0, |d| d.as_secs_f64())
            }),
            shard: sharding.shard.clone(),
            merged_from: sharding.merged_from.clone(),
            collections: collections.to_vec(),
            leases: self.lease_log.events(),
            cuda: crate::gpu::cuda_report(),
            warnings,
        };
        let path = config.output.dir.join(MANIFEST_FILE);
        let write_error = |source| RunError::Write {
            path: path.clone(),
            source,
        };
        let mut bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|err| write_error(err.into()))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(write_error)?;
        Ok(path)
    }

    fn write_metrics(
        &self,
        identity: &RunIdentity,
        status: RunStatus,
        collections: &[CollectionReport],
    ) {
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let text = metrics::render(
            &identity.run_id,
            status,
            unix(identity.started_at),
            unix(SystemTime::now()),
            collections,
        );
        let path = self.metrics_path();
        match metrics::write(&path, &text) {
            Ok(()) => info!(path = %path.display(), status = ?status, "metrics written"),
            Err(err) => warn!(path = %path.display(), "cannot write the metrics file: {err}"),
        }
    }
}

/// What the collections loop produced.
struct Collections {
    status: RunStatus,
    collections: Vec<CollectionReport>,
    models: Vec<ModelIdentity>,
    warnings: Vec<String>,
}

/// `ok` when every collection is, `failed` when all failed, else `partial`.
fn run_status(reports: &[CollectionReport]) -> RunStatus {
    let failed = reports
        .iter()
        .filter(|r| r.status == CollectionStatus::Failed)
        .count();
    let partial = reports
        .iter()
        .filter(|r| r.status == CollectionStatus::Partial)
        .count();
    match (failed, partial) {
        (0, 0) => RunStatus::Ok,
        (n, 0) if n == reports.len() => RunStatus::Failed,
        _ => RunStatus::Partial,
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The Parquet layout of the run's files when `output.formats` has `parquet` (its collection
/// name is set per collection): made from the same JSON the manifest records, so `convert`
/// makes the same files from a manifest.
pub fn parquet_layout(
    config: &RunConfig,
    identities: &[ModelIdentity],
) -> Result<Option<crate::export::parquet::Layout>, crate::export::parquet::ParquetError> {
    if !config
        .output
        .formats
        .contains(&crate::config::OutputFormat::Parquet)
    {
        return Ok(None);
    }
    let json = |value: serde_json::Result<serde_json::Value>| {
        value.map_err(|err| crate::export::parquet::ParquetError::Layout(err.to_string()))
    };
    crate::export::parquet::Layout::from_manifest(
        "",
        &json(serde_json::to_value(VectorSchema::from_models(identities)))?,
        &json(serde_json::to_value(identities))?,
        config.output.include_text,
        config.output.parquet_dense,
    )
    .map(Some)
}

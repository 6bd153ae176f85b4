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
use super::merge::{self, ShardSet};
use super::overlap::{overlaps, InputPath, OutputPath};
use super::resume::{self, Attempt, RunState};
use super::reuse::ReuseSource;
use super::state::{self, OutputLock, WORK_DIR};
use crate::config::RunConfig;
use crate::dispatch::FaultInjector;
use crate::eval;
use crate::export::{CollectionReport, CollectionStatus, FailureClass, RunStatus};
use crate::gpu::{LeaseLog, LeaseOptions, LeaseWait, MemoryProbe};
use crate::input::{self, Collection, InputHashes};
use crate::models::{select_devices, ModelIdentity, ModelManager, ResidentModels};
use crate::shard::{Shard, ShardWork};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

mod records;
mod reuse_dir;
mod shards;

pub use super::run_error::RunError;
pub use crate::export::METRICS_FILE;
pub use records::parquet_layout;
use records::rfc3339;
use reuse_dir::ReuseDir;
use shards::Sharding;

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

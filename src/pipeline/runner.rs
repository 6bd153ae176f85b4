//! `BatchRunner`: discovers collections, loads the dense models once, runs each collection
//! through the stages, writes points atomically and, last, the manifest.
//!
//! Failure policy: configuration and discovery problems stop the run before any model loads; a
//! collection whose input is bad (under `on_invalid = "error"`) or whose dense stage fails is
//! marked failed in the manifest and the run goes on with the next one.

use crate::batching::BatchBudget;
use crate::config::RunConfig;
use crate::export::manifest::{SkippedSummary, Tool};
use crate::export::{
    write_atomic, write_points, CollectionReport, CollectionStatus, FailureClass, Manifest,
    RunStatus, StageReport, StageStatus, MANIFEST_FILE, POINTS_FILE, SCHEMA_VERSION,
};
use crate::input::{self, Collection, InputError};
use crate::models::{select_device, DenseEmbedder, ModelError, ModelManager};
use crate::stage::Stage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tracing::{error, info, warn};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot discover collections")]
    Discover(#[source] InputError),
    #[error("cannot load dense model {name:?}")]
    Model {
        name: String,
        #[source]
        source: Box<ModelError>,
    },
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
    /// At least one collection failed because of its input.
    pub input_failures: usize,
}

/// Runs the configured stages over every collection.
pub struct BatchRunner {
    config: RunConfig,
    manager: ModelManager,
}

impl BatchRunner {
    pub fn new(config: RunConfig, manager: ModelManager) -> Self {
        Self { config, manager }
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    pub fn run(&self) -> Result<RunOutcome, RunError> {
        let started_at = SystemTime::now();
        let run_id = uuid::Uuid::new_v4().to_string();
        let config = &self.config;
        let mut warnings = Vec::new();

        let pending = |stage: &str| {
            format!("{stage} stage is not available in this version; the run is dense-only (disable it to silence this warning)")
        };
        if config.sparse.enabled {
            warnings.push(pending("sparse"));
        }
        if config.rerank.enabled {
            warnings.push(pending("rerank"));
        }
        for warning in &warnings {
            warn!("{warning}");
        }

        let collections = input::discover_collections(
            &config.input.root,
            config.input.collections.as_deref(),
            &config.input.formats,
        )
        .map_err(RunError::Discover)?;
        let collections = without_output_dir(collections, &config.output.dir);
        info!(count = collections.len(), "collections discovered");

        let device =
            select_device(&config.gpu.devices, config.gpu.precision).map_err(|source| {
                RunError::Model {
                    name: "(device)".to_string(),
                    source: Box::new(source),
                }
            })?;
        let base_dir = config.config_file.as_deref().and_then(|p| p.parent());
        let mut embedders = Vec::new();
        for model in &config.dense.models {
            let load = || -> Result<DenseEmbedder, ModelError> {
                let resolved =
                    self.manager
                        .resolve(&model.model, model.revision.as_deref(), base_dir)?;
                DenseEmbedder::load(model, &resolved, &device)
            };
            let embedder = load().map_err(|source| RunError::Model {
                name: model.name.clone(),
                source: Box::new(source),
            })?;
            let id = embedder.identity();
            info!(name = %id.name, model = %id.model, dim = id.dim, max_length = id.max_length,
                pooling = %id.pooling, normalize = id.normalize, device = %id.device, dtype = %id.dtype,
                "dense model loaded");
            embedders.push(embedder);
        }

        let budget = BatchBudget {
            max_tokens: config.dense.batch_tokens,
            max_items: config.dense.max_batch_size,
        };
        let mut reports = Vec::new();
        let mut input_failures = 0;
        for collection in &collections {
            let report = self.run_collection(collection, &embedders, budget);
            if report.status == CollectionStatus::Failed {
                if report.failure == Some(FailureClass::Input) {
                    input_failures += 1;
                }
                if let Some(message) = &report.error {
                    error!(collection = %collection.name, "collection failed: {message}");
                }
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
            run_id,
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            status,
            config,
            models: embedders.iter().map(|e| e.identity().clone()).collect(),
            collections: reports.clone(),
            warnings,
        };
        let manifest_path = config.output.dir.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|err| RunError::Write {
            path: manifest_path.clone(),
            source: err.into(),
        })?;
        bytes.push(b'\n');
        write_atomic(&manifest_path, &bytes).map_err(|source| RunError::Write {
            path: manifest_path.clone(),
            source,
        })?;
        Ok(RunOutcome {
            status,
            manifest: manifest_path,
            collections: reports,
            input_failures,
        })
    }

    fn run_collection(
        &self,
        collection: &Collection,
        embedders: &[DenseEmbedder],
        budget: BatchBudget,
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

        let mut dense_report = StageReport::with_status(StageStatus::Ok, None);
        let mut vector_sets = Vec::new();
        for embedder in embedders {
            match super::dense::run_dense(&collection.name, embedder, &read.chunks, budget) {
                Ok((vectors, run)) => {
                    dense_report.runs.push(run);
                    vector_sets.push((embedder.identity().name.as_str(), vectors));
                }
                Err(err) => {
                    dense_report.status = StageStatus::Failed;
                    dense_report.detail = Some(format!("{}: {err}", embedder.identity().name));
                    report.failure = Some(FailureClass::Model);
                    report.error = Some(format!("dense stage failed: {}", error_chain(&err)));
                    break;
                }
            }
        }
        let dense_ok = dense_report.status == StageStatus::Ok;
        report.stages.insert(Stage::Dense, dense_report);
        for (stage, enabled) in [
            (Stage::Sparse, config.sparse.enabled),
            (
                Stage::Fusion,
                config.sparse.enabled || config.rerank.enabled,
            ),
            (Stage::Rerank, config.rerank.enabled),
        ] {
            let status = if enabled {
                StageStatus::NotAvailable
            } else {
                StageStatus::Disabled
            };
            report
                .stages
                .insert(stage, StageReport::with_status(status, None));
        }
        if !dense_ok {
            report.stages.insert(
                Stage::Export,
                StageReport::with_status(StageStatus::Skipped, None),
            );
            return report;
        }

        let relative = format!("{}/{}", collection.name, POINTS_FILE);
        let path = config.output.dir.join(&collection.name).join(POINTS_FILE);
        let sets: Vec<(&str, &[Vec<f32>])> = vector_sets
            .iter()
            .map(|(name, vectors)| (*name, vectors.as_slice()))
            .collect();
        match write_points(
            &path,
            &collection.name,
            &read.chunks,
            &sets,
            config.output.include_text,
        ) {
            Ok(points) => {
                report.points = points;
                report.outputs.push(relative);
                report.status = CollectionStatus::Ok;
                report.stages.insert(
                    Stage::Export,
                    StageReport::with_status(StageStatus::Ok, None),
                );
                info!(points, path = %path.display(), "points written");
            }
            Err(err) => {
                report.failure = Some(FailureClass::Output);
                report.error = Some(format!("cannot write {}: {err}", path.display()));
                report.stages.insert(
                    Stage::Export,
                    StageReport::with_status(StageStatus::Failed, None),
                );
            }
        }
        report
    }
}

/// Drops collections that live inside the output directory: with the output under the input
/// root, a second run would otherwise read the first run's points and manifest as chunks.
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

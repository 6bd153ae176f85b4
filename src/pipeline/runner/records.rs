//! What a run leaves besides its collections' files: the manifest, the metrics file, and the
//! list of written files with their hashes.

use super::{BatchRunner, RunError, RunIdentity};
use crate::config::RunConfig;
use crate::export::manifest::{FileRecord, Tool, VectorSchema};
use crate::export::{
    write_atomic, CollectionReport, Manifest, RunStatus, MANIFEST_FILE, SCHEMA_VERSION,
};
use crate::models::ModelIdentity;
use crate::telemetry::metrics;
use std::path::PathBuf;
use std::time::SystemTime;
use tracing::{info, warn};

impl BatchRunner {
    /// The outputs of `collections` and the metrics file, each with its size, lines and hash
    /// (a file that cannot be read is left out, with a warning).
    pub(super) fn written_files(&self, collections: &[CollectionReport]) -> Vec<FileRecord> {
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
    pub(super) fn write_manifest(
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

    pub(super) fn write_metrics(
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

pub(super) fn rfc3339(time: SystemTime) -> String {
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

//! What a loaded model is, as recorded in the manifest: enough to reproduce or audit a run.

use super::manager::{ModelSource, ResolvedModel};
use super::{ModelError, Pooling, SelectedDevice};
use serde::Serialize;
use std::path::Path;

/// The file `scripts/fetch-models.sh` writes beside a fetched model's weights.
pub const ORIGIN_FILE: &str = "origin.json";

/// The stage a model serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    Dense,
    Sparse,
    Rerank,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelIdentity {
    pub role: ModelRole,
    /// Vector name in the points.
    pub name: String,
    /// HF id or path, as configured.
    pub model: String,
    pub source: ModelSource,
    pub revision: Option<String>,
    pub weights_file: String,
    pub weights_sha256: String,
    /// sha256 of `tokenizer.json`: sparse indices and token counts depend on the vocabulary.
    pub tokenizer_sha256: Option<String>,
    pub architecture: String,
    /// Dense: vector dimension; sparse: vocabulary size; rerank: number of labels.
    pub dim: usize,
    pub max_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// Dense: the prompts prepended to queries and documents (a model's own, or the config's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_prompt: Option<String>,
    pub dtype: String,
    pub device: String,
    /// Where a fetched model came from (`origin.json`, written by `scripts/fetch-models.sh`):
    /// the package, the upstream file and its sha256, and any conversion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<serde_json::Value>,
}

impl ModelIdentity {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        role: ModelRole,
        name: &str,
        reference: &str,
        resolved: &ResolvedModel,
        weights: &Path,
        architecture: &str,
        dim: usize,
        max_length: usize,
        device: &SelectedDevice,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            role,
            name: name.to_string(),
            model: reference.to_string(),
            source: resolved.source,
            revision: resolved.revision.clone(),
            weights_file: weights
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            weights_sha256: sha256_file(weights)?,
            tokenizer_sha256: {
                let path = resolved.dir.join("tokenizer.json");
                if path.is_file() {
                    Some(sha256_file(&path)?)
                } else {
                    None
                }
            },
            architecture: architecture.to_string(),
            dim,
            max_length,
            pooling: None,
            normalize: None,
            query_prompt: None,
            document_prompt: None,
            dtype: format!("{:?}", device.dtype).to_lowercase(),
            device: device.label.clone(),
            origin: read_origin(&resolved.dir),
        })
    }
}

/// The model directory's `origin.json`, if it has a readable one (a broken file is reported
/// and left out: it describes the model, it does not change it).
fn read_origin(dir: &Path) -> Option<serde_json::Value> {
    let path = dir.join(ORIGIN_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(origin) => Some(origin),
        Err(err) => {
            tracing::warn!(path = %path.display(), "model origin file unreadable, left out: {err}");
            None
        }
    }
}

/// sha256 of a file, streamed ([`crate::files::sha256_file`], with the model error).
fn sha256_file(path: &Path) -> Result<String, ModelError> {
    crate::files::sha256_file(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

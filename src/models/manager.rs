//! `ModelManager` finds a model by reference, in this order:
//!
//! 1. a local directory (absolute, relative to the working directory, or to the config file);
//! 2. `models.dir/<reference>` — where `scripts/fetch-models.sh` puts models;
//! 3. the Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`);
//! 4. the Hugging Face Hub, unless `HF_HUB_OFFLINE` is set — hf-hub itself does not honour that
//!    variable, so we never construct a Hub client when it is set.

use super::ModelError;
use hf_hub::{api::sync::ApiBuilder, Cache, Repo, RepoType};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Files a sentence-transformers model may need besides the weights; missing ones are optional.
const OPTIONAL_FILES: [&str; 4] = [
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];
/// Weight files we can load, in order of preference.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Where a model was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    LocalDir,
    ModelsDir,
    HfCache,
    Hub,
}

/// A model located on disk.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// What the config said (HF id or path).
    pub reference: String,
    /// The directory holding `config.json`, tokenizer and weights.
    pub dir: PathBuf,
    pub source: ModelSource,
    /// Hub revision or cache snapshot, when known.
    pub revision: Option<String>,
}

impl ResolvedModel {
    /// The weights file to load (safetensors preferred).
    pub fn weights_file(&self) -> Result<PathBuf, ModelError> {
        WEIGHT_FILES
            .iter()
            .map(|name| self.dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ModelError::MissingFile {
                path: self.dir.join(WEIGHT_FILES[0]),
            })
    }
}

/// Resolves model references to directories (see the module docs for the order).
#[derive(Clone, Debug)]
pub struct ModelManager {
    models_dir: PathBuf,
    hf_cache_dir: PathBuf,
    offline: bool,
}

impl ModelManager {
    pub fn new(models_dir: PathBuf, hf_cache_dir: PathBuf, offline: bool) -> Self {
        Self {
            models_dir,
            hf_cache_dir,
            offline,
        }
    }

    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    pub fn offline(&self) -> bool {
        self.offline
    }

    /// Finds `reference`; `base_dir` is where relative paths in the config are anchored.
    pub fn resolve(
        &self,
        reference: &str,
        revision: Option<&str>,
        base_dir: Option<&Path>,
    ) -> Result<ResolvedModel, ModelError> {
        let mut searched = Vec::new();
        let as_path = Path::new(reference);
        let mut local_candidates = vec![as_path.to_path_buf()];
        if let Some(base) = base_dir.filter(|_| as_path.is_relative()) {
            local_candidates.push(base.join(as_path));
        }
        for candidate in local_candidates {
            if candidate.join("config.json").is_file() {
                return Ok(self.found(reference, candidate, ModelSource::LocalDir, None));
            }
            searched.push(candidate);
        }

        if as_path.is_relative() {
            let in_models_dir = self.models_dir.join(as_path);
            if in_models_dir.join("config.json").is_file() {
                return Ok(self.found(reference, in_models_dir, ModelSource::ModelsDir, None));
            }
            searched.push(in_models_dir);
        }

        let revision = revision.unwrap_or("main");
        if let Some((dir, snapshot)) = self.find_in_hf_cache(reference, revision) {
            return Ok(self.found(reference, dir, ModelSource::HfCache, Some(snapshot)));
        }
        searched.push(
            self.hf_cache_dir
                .join(Repo::model(reference.to_string()).folder_name()),
        );

        if self.offline || !looks_like_hub_id(reference) {
            return Err(ModelError::NotFound {
                reference: reference.to_string(),
                searched,
                offline: self.offline,
            });
        }
        self.download(reference, revision)
    }

    fn found(
        &self,
        reference: &str,
        dir: PathBuf,
        source: ModelSource,
        revision: Option<String>,
    ) -> ResolvedModel {
        ResolvedModel {
            reference: reference.to_string(),
            dir,
            source,
            revision,
        }
    }

    /// A cached snapshot with at least `config.json`; returns its directory and commit.
    fn find_in_hf_cache(&self, reference: &str, revision: &str) -> Option<(PathBuf, String)> {
        let repo =
            Repo::with_revision(reference.to_string(), RepoType::Model, revision.to_string());
        let repo_dir = self.hf_cache_dir.join(repo.folder_name());
        // A full commit hash names a snapshot directly; a branch or tag goes through refs/.
        let commit = if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
            revision.to_string()
        } else {
            std::fs::read_to_string(repo_dir.join("refs").join(revision))
                .ok()?
                .trim()
                .to_string()
        };
        let snapshot = repo_dir.join("snapshots").join(&commit);
        snapshot
            .join("config.json")
            .is_file()
            .then_some((snapshot, commit))
    }

    fn download(&self, reference: &str, revision: &str) -> Result<ResolvedModel, ModelError> {
        let hub_error = |file: &str| {
            let reference = reference.to_string();
            let file = file.to_string();
            move |source| ModelError::Hub {
                reference,
                file,
                source,
            }
        };
        let api = ApiBuilder::from_cache(Cache::new(self.hf_cache_dir.clone()))
            .with_progress(false)
            .build()
            .map_err(hub_error("(client)"))?;
        let repo = api.repo(Repo::with_revision(
            reference.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let config = repo.get("config.json").map_err(hub_error("config.json"))?;
        repo.get("tokenizer.json")
            .map_err(hub_error("tokenizer.json"))?;
        for file in OPTIONAL_FILES {
            // Absent on plain transformers checkpoints: that is not an error.
            let _ = repo.get(file);
        }
        let mut weights_error = None;
        for file in WEIGHT_FILES {
            match repo.get(file) {
                Ok(_) => {
                    weights_error = None;
                    break;
                }
                Err(err) => weights_error = Some((file, err)),
            }
        }
        if let Some((file, err)) = weights_error {
            return Err(hub_error(file)(err));
        }
        let dir = config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.hf_cache_dir.clone());
        let snapshot = dir.file_name().map(|s| s.to_string_lossy().into_owned());
        Ok(self.found(reference, dir, ModelSource::Hub, snapshot))
    }
}

/// `org/name` or `name`: something the Hub could know, not a filesystem path.
fn looks_like_hub_id(reference: &str) -> bool {
    let parts: Vec<&str> = reference.split('/').collect();
    !reference.starts_with('.')
        && !reference.starts_with('/')
        && parts.len() <= 2
        && parts.iter().all(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(at: &Path) {
        std::fs::create_dir_all(at).unwrap();
        std::fs::write(at.join("config.json"), "{}").unwrap();
    }

    #[test]
    fn resolves_local_then_models_dir_then_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let models_dir = tmp.path().join("models");
        let cache = tmp.path().join("hf");
        let manager = ModelManager::new(models_dir.clone(), cache.clone(), true);

        // HF cache layout: models--org--name/{refs/main, snapshots/<commit>/...}
        let repo = cache.join("models--org--m");
        model_dir(&repo.join("snapshots").join("abc123"));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        let found = manager.resolve("org/m", None, None).unwrap();
        assert_eq!(found.source, ModelSource::HfCache);
        assert_eq!(found.revision.as_deref(), Some("abc123"));

        model_dir(&models_dir.join("org/m"));
        let found = manager.resolve("org/m", None, None).unwrap();
        assert_eq!(found.source, ModelSource::ModelsDir);
        assert_eq!(found.dir, models_dir.join("org/m"));

        let base = tmp.path().join("configs");
        model_dir(&base.join("org/m"));
        let found = manager.resolve("org/m", None, Some(&base)).unwrap();
        assert_eq!(found.source, ModelSource::LocalDir);
        assert_eq!(found.dir, base.join("org/m"));
    }

    #[test]
    fn offline_miss_names_every_place_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = ModelManager::new(tmp.path().join("models"), tmp.path().join("hf"), true);
        let err = manager.resolve("org/absent", None, None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
        assert!(message.contains("models/org/absent"), "{message}");
        assert!(message.contains("models--org--absent"), "{message}");
    }

    #[test]
    fn paths_are_never_sent_to_the_hub() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/x"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}

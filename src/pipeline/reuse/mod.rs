//! `--reuse PREVIOUS_OUTPUT`: take the vectors of every chunk whose text and model are unchanged
//! from an earlier run's output, embed only the rest, and record the changes a vector store
//! loaded from that output must apply (`<collection>/changes.jsonl`).
//!
//! A chunk's vectors depend only on the text its models embed and on the models themselves, and
//! the encoders give the same bits for a text whatever batch it is in, so a reused vector is the
//! vector a fresh run computes: the outputs equal a fresh run's byte for byte.
//!
//! What is read from the earlier output:
//! - `manifest.json`: its models (weights and tokenizer hashes, dimensions, maximum length,
//!   pooling, normalisation, document prompt, dtype, device kind) and the settings that change a
//!   vector (precision; SPLADE's `max_terms`). Each of this run's models is matched to an earlier
//!   one with the same [`vector_identity`]; a model without a match has its vectors computed for
//!   every chunk, and the manifest says why (the settings that differ).
//! - Per collection, its points and `chunk_hashes.jsonl` (the sha256 of each point's embedded
//!   text): a finished collection's from its output directory, checked against the sha256 the
//!   manifest records for each (a mismatch refuses the reuse, naming the file); an interrupted
//!   one's from its work directory (`.work/<collection>/`), up to the lengths of its last
//!   checkpoint, so the windows it completed count. Nothing is written there: a read-only
//!   directory (a Kaggle input) is fine.
//!
//! - Per collection, its `rerank.jsonl` (checked likewise): the CrossEncoder scores of the
//!   pairs it ranked, keyed by the query's and the passage's text hashes, reused when this
//!   run's CrossEncoder has the same identity ([`ReuseSource::pair_scores`]).
//!
//! Sharded runs: each shard reuses the vectors of its own chunks and records the deletions of
//! the earlier points it owns; `merge` (with the same `--reuse`) puts the shards' changes in
//! the order an unsharded run writes them ([`super::merge`]).
//!
//! The previous points are indexed by chunk id (their line offsets, not their vectors); a
//! point's vectors are read back, by offset, only when its chunk's text is unchanged. Floats
//! are parsed from their shortest round-trip text and checked to render back to the same text.

use crate::export::{MANIFEST_FILE, POINTS_FILE, RANKED_FILE};
use crate::models::{ModelIdentity, PairScore};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::store::{Checkpoint, CollectionStore, Phase, CHUNK_HASHES_FILE};

mod changes;
mod pair_scores;
mod previous;
mod window_plan;

use changes::change_line;
pub use changes::{deletions, ChangeLine};
use pair_scores::scored_pairs;
pub use pair_scores::PairScores;
use previous::{check, exact_f32s, parse_point, scan_lines, Expected, HashLine};
pub use previous::{PreviousCollection, PreviousVectors};
pub use window_plan::WindowPlan;

/// Why an earlier output cannot be reused.
#[derive(Debug, thiserror::Error)]
pub enum ReuseError {
    #[error("cannot reuse {dir}: {reason}")]
    Unusable { dir: String, reason: String },
    #[error(
        "cannot reuse {path}: its sha256 is {found} but {manifest} records {expected}; the \
         earlier output was changed after its run, or the manifest is another run's"
    )]
    Corrupt {
        path: String,
        manifest: String,
        expected: String,
        found: String,
    },
    #[error("cannot reuse {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReuseError + '_ {
    move |source| ReuseError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// What a model's vectors depend on: from a manifest's `models` entry (or this run's
/// identity) and the run's effective configuration. Equal identities give equal vectors.
pub fn vector_identity(model: &Value, config: &Value, dense_index: Option<usize>) -> Value {
    let mut identity = serde_json::Map::new();
    for key in [
        "role",
        "weights_sha256",
        "tokenizer_sha256",
        "architecture",
        "dim",
        "max_length",
        "pooling",
        "normalize",
        "document_prompt",
        "dtype",
    ] {
        identity.insert(
            key.to_string(),
            model.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    // `cuda:1` and `cuda:0` compute alike; the CPU and a GPU do not.
    let device = model.get("device").and_then(Value::as_str).unwrap_or("");
    let kind = device.split(':').next().unwrap_or("");
    identity.insert("device".to_string(), Value::String(kind.to_string()));
    let at = |path: &[&str]| {
        let mut node = config;
        for key in path {
            node = match node.get(*key) {
                Some(next) => next,
                None => return Value::Null,
            };
        }
        node.clone()
    };
    identity.insert("gpu.precision".to_string(), at(&["gpu", "precision"]));
    match dense_index {
        Some(i) => {
            let model_config = config
                .get("dense")
                .and_then(|d| d.get("models"))
                .and_then(|m| m.get(i))
                .and_then(|m| m.get("precision"))
                .cloned()
                .unwrap_or(Value::Null);
            identity.insert("precision".to_string(), model_config);
        }
        None if model.get("role").and_then(Value::as_str) == Some("rerank") => {
            identity.insert("precision".to_string(), at(&["rerank", "precision"]));
        }
        None => {
            identity.insert("precision".to_string(), at(&["sparse", "precision"]));
            identity.insert("max_terms".to_string(), at(&["sparse", "max_terms"]));
        }
    }
    Value::Object(identity)
}

/// One of this run's vector models matched to the earlier output's.
#[derive(Clone, Debug)]
pub struct ModelMatch {
    /// This run's vector name.
    pub name: String,
    /// The earlier output's vector name for the same model, or why there is none.
    pub previous: Result<String, String>,
}

/// An earlier output, opened and checked (see the module docs).
pub struct ReuseSource {
    /// The directory as given, for messages and the manifest.
    pub shown: String,
    dir: PathBuf,
    /// sha256 of its `manifest.json` (part of the run fingerprint: `--resume` continues only
    /// against the same earlier output).
    pub manifest_sha256: String,
    /// Files the manifest records, by path relative to the output, with their sha256.
    files: BTreeMap<String, String>,
    /// This run's dense models, in config order, matched.
    pub dense: Vec<ModelMatch>,
    /// This run's sparse model, matched (absent when the sparse stage is off).
    pub sparse: Option<ModelMatch>,
    /// This run's CrossEncoder, matched (absent when rerank is off): its scores of unchanged
    /// (query, passage) pairs are reused.
    pub rerank: Option<ModelMatch>,
}

#[derive(Deserialize)]
struct ManifestFile {
    path: String,
    sha256: String,
}

impl ReuseSource {
    /// Opens the earlier output in `dir` (shown as `shown`) for a run with `config` whose models
    /// are `identities`.
    ///
    /// # Errors
    ///
    /// No readable manifest, a manifest of another schema, or no model in common.
    pub fn open(
        dir: &Path,
        shown: &str,
        config: &crate::config::RunConfig,
        identities: &[ModelIdentity],
    ) -> Result<Self, ReuseError> {
        let unusable = |reason: String| ReuseError::Unusable {
            dir: shown.to_string(),
            reason,
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&manifest_path).map_err(|err| {
            unusable(format!(
                "no readable {MANIFEST_FILE} ({err}); --reuse takes the output directory of an \
                 earlier run"
            ))
        })?;
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|err| unusable(format!("{MANIFEST_FILE} is not JSON: {err}")))?;
        let schema = manifest.get("schema_version").and_then(Value::as_u64);
        if schema != Some(u64::from(crate::export::SCHEMA_VERSION)) {
            return Err(unusable(format!(
                "its manifest has schema version {}, this version writes {}",
                schema.map_or("none".to_string(), |s| s.to_string()),
                crate::export::SCHEMA_VERSION
            )));
        }
        let files = match manifest.get("files") {
            Some(files) => serde_json::from_value::<Vec<ManifestFile>>(files.clone())
                .map_err(|err| unusable(format!("its manifest's files are malformed: {err}")))?,
            None => Vec::new(),
        };
        let previous_config = manifest.get("config").cloned().unwrap_or(Value::Null);
        let previous_models: Vec<Value> = manifest
            .get("models")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let current_config = serde_json::to_value(config).unwrap_or(Value::Null);
        let current: Vec<Value> = identities
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        let by_role = |models: &[Value], role: &str| -> Vec<Value> {
            models
                .iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some(role))
                .cloned()
                .collect()
        };
        let previous_dense = by_role(&previous_models, "dense");
        let previous_sparse = by_role(&previous_models, "sparse");
        let previous_rerank = by_role(&previous_models, "rerank");
        let name_of = |m: &Value| {
            m.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let match_model = |model: &Value, index: Option<usize>, candidates: &[Value]| {
            let identity = vector_identity(model, &current_config, index);
            let name = name_of(model);
            let found = candidates.iter().enumerate().find(|(j, earlier)| {
                vector_identity(earlier, &previous_config, index.map(|_| *j)) == identity
            });
            let previous = match found {
                Some((_, earlier)) => Ok(name_of(earlier)),
                None => {
                    // The earlier model in the same place (or of the same name) says what changed.
                    let counterpart = candidates
                        .iter()
                        .enumerate()
                        .find(|(_, m)| name_of(m) == name)
                        .or_else(|| index.and_then(|i| candidates.get(i).map(|m| (i, m))))
                        .or_else(|| candidates.first().map(|m| (0, m)));
                    Err(match counterpart {
                        Some((j, earlier)) => {
                            let before =
                                vector_identity(earlier, &previous_config, index.map(|_| j));
                            format!(
                                "model changed ({})",
                                super::resume::describe_differences(&before, &identity).join("; ")
                            )
                        }
                        None => "no such model in the earlier output".to_string(),
                    })
                }
            };
            ModelMatch { name, previous }
        };
        let dense: Vec<ModelMatch> = by_role(&current, "dense")
            .iter()
            .enumerate()
            .map(|(i, m)| match_model(m, Some(i), &previous_dense))
            .collect();
        let sparse = by_role(&current, "sparse")
            .first()
            .map(|m| match_model(m, None, &previous_sparse));
        let rerank = by_role(&current, "rerank")
            .first()
            .map(|m| match_model(m, None, &previous_rerank));
        Ok(Self {
            shown: shown.to_string(),
            dir: dir.to_path_buf(),
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
            files: files.into_iter().map(|f| (f.path, f.sha256)).collect(),
            dense,
            sparse,
            rerank,
        })
    }

    /// Whether any vector at all can be reused.
    pub fn any_model_reusable(&self) -> bool {
        self.dense.iter().any(|m| m.previous.is_ok())
            || self.sparse.as_ref().is_some_and(|m| m.previous.is_ok())
    }

    /// The earlier output's points of `collection`: a finished collection's (checked against
    /// the manifest), an interrupted one's complete windows, or `None` when the earlier run
    /// wrote no point of it.
    ///
    /// # Errors
    ///
    /// A hash mismatch, a malformed file, or a read failure, naming the file.
    pub fn collection(&self, collection: &str) -> Result<Option<PreviousCollection>, ReuseError> {
        let points_key = format!("{collection}/{POINTS_FILE}");
        let hashes_key = format!("{collection}/{CHUNK_HASHES_FILE}");
        let shown = |relative: &str| format!("{}/{relative}", self.shown.trim_end_matches('/'));
        match (self.files.get(&points_key), self.files.get(&hashes_key)) {
            (Some(points_sha), Some(hashes_sha)) => {
                let points = self.dir.join(&points_key);
                let hashes = self.dir.join(&hashes_key);
                let expected = |path: &str, sha: &str| Expected {
                    shown: shown(path),
                    manifest: shown(MANIFEST_FILE),
                    sha256: Some(sha.to_string()),
                    length: None,
                };
                return PreviousCollection::open(
                    collection,
                    &points,
                    expected(&points_key, points_sha),
                    &hashes,
                    expected(&hashes_key, hashes_sha),
                )
                .map(Some);
            }
            (Some(_), None) => {
                return Err(ReuseError::Unusable {
                    dir: self.shown.clone(),
                    reason: format!(
                        "{points_key} has no {CHUNK_HASHES_FILE} beside it (an earlier version \
                         wrote it); run once without --reuse"
                    ),
                })
            }
            (None, Some(_)) => {
                let parts = format!("{collection}/{}/", crate::export::parquet::POINTS_DIR);
                if self.files.keys().any(|key| key.starts_with(&parts)) {
                    return Err(ReuseError::Unusable {
                        dir: self.shown.clone(),
                        reason: format!(
                            "{collection}'s points are in Parquet only, and --reuse reads \
                             {points_key}: run `embed-collections convert {} --to jsonl` first, \
                             or keep \"jsonl\" in output.formats",
                            self.shown
                        ),
                    });
                }
            }
            _ => {}
        }
        // An interrupted (or killed) run: its work directory's complete windows.
        let work = self.dir.join(super::state::WORK_DIR).join(collection);
        let checkpoint: Checkpoint = match CollectionStore::read_checkpoint(&work) {
            Ok(checkpoint) => checkpoint,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(ReuseError::Malformed {
                    path: shown(&format!(".work/{collection}/checkpoint.json")),
                    reason: err.to_string(),
                })
            }
        };
        let (points, hashes, points_shown, hashes_shown) = match checkpoint.phase {
            Phase::Windows => (
                work.join(super::store::POINTS_PARTIAL),
                work.join(super::store::HASHES_PARTIAL),
                format!(".work/{collection}/{}", super::store::POINTS_PARTIAL),
                format!(".work/{collection}/{}", super::store::HASHES_PARTIAL),
            ),
            Phase::Embedded | Phase::Done => (
                self.dir.join(&points_key),
                self.dir.join(&hashes_key),
                points_key.clone(),
                hashes_key.clone(),
            ),
        };
        let partial = |path: &str, length: u64| Expected {
            shown: shown(path),
            manifest: shown(&format!(".work/{collection}/checkpoint.json")),
            sha256: None,
            length: Some(length),
        };
        PreviousCollection::open(
            collection,
            &points,
            partial(&points_shown, checkpoint.lengths.points),
            &hashes,
            partial(&hashes_shown, checkpoint.lengths.hashes),
        )
        .map(Some)
    }
}

impl ReuseSource {
    /// The CrossEncoder scores of `collection`'s earlier `rerank.jsonl`, by (query text,
    /// passage text): empty when the earlier run reranked nothing of it (not finished, rerank
    /// off) or with another CrossEncoder or other rerank settings ([`Self::rerank`] says why).
    /// Both files are checked against the sha256 the earlier manifest records.
    ///
    /// # Errors
    ///
    /// A hash mismatch, a malformed line, or a read failure, naming the file.
    pub fn pair_scores(&self, collection: &str) -> Result<PairScores, ReuseError> {
        let mut scores = PairScores::default();
        if !matches!(self.rerank.as_ref().map(|m| &m.previous), Some(Ok(_))) {
            return Ok(scores);
        }
        let ranked_key = format!("{collection}/{RANKED_FILE}");
        let hashes_key = format!("{collection}/{CHUNK_HASHES_FILE}");
        let (Some(ranked_sha), Some(hashes_sha)) =
            (self.files.get(&ranked_key), self.files.get(&hashes_key))
        else {
            return Ok(scores);
        };
        let shown = |relative: &str| format!("{}/{relative}", self.shown.trim_end_matches('/'));
        let expected = |key: &str, sha: &str| Expected {
            shown: shown(key),
            manifest: shown(MANIFEST_FILE),
            sha256: Some(sha.to_string()),
            length: None,
        };

        // The scored pairs, by chunk id (the passage's text hash is in chunk_hashes.jsonl).
        let ranked_expected = expected(&ranked_key, ranked_sha);
        let path = self.dir.join(&ranked_key);
        let file = match File::open(&path) {
            Ok(file) => file,
            // Scores are only an optimisation: without the file every pair is scored.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(scores),
            Err(err) => return Err(read_error(&path)(err)),
        };
        let mut by_chunk: HashMap<String, Vec<([u8; 32], PairScore)>> = HashMap::new();
        let mut bad = None;
        let mut line_number = 0;
        let digest = scan_lines(&file, None, |_, line| {
            line_number += 1;
            if bad.is_none() {
                if let Err(reason) = scored_pairs(line, &mut by_chunk) {
                    bad = Some(format!("line {line_number}: {reason}"));
                }
            }
        })
        .map_err(read_error(&path))?;
        check(&ranked_expected, &digest)?;
        if let Some(reason) = bad {
            return Err(ReuseError::Malformed {
                path: ranked_expected.shown,
                reason,
            });
        }
        if by_chunk.is_empty() {
            return Ok(scores);
        }

        let hashes_expected = expected(&hashes_key, hashes_sha);
        let path = self.dir.join(&hashes_key);
        let file = File::open(&path).map_err(read_error(&path))?;
        let mut line_number = 0;
        let digest = scan_lines(&file, None, |_, line| {
            line_number += 1;
            if bad.is_some() {
                return;
            }
            match serde_json::from_slice::<HashLine>(line) {
                Ok(parsed) => {
                    let Some(pairs) = by_chunk.get(&parsed.chunk_id) else {
                        return;
                    };
                    match unhex(&parsed.text_sha256) {
                        Some(passage) => {
                            for (query, score) in pairs {
                                scores.scores.insert((*query, passage), *score);
                            }
                        }
                        None => {
                            bad = Some(format!("line {line_number}: text_sha256 is not a sha256"))
                        }
                    }
                }
                Err(err) => bad = Some(format!("line {line_number}: {err}")),
            }
        })
        .map_err(read_error(&path))?;
        check(&hashes_expected, &digest)?;
        if let Some(reason) = bad {
            return Err(ReuseError::Malformed {
                path: hashes_expected.shown,
                reason,
            });
        }
        Ok(scores)
    }
}

/// The sha256 of the text a chunk's models embed.
pub fn text_sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A sha256 written as 64 hex digits, as the outputs record them.
fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;

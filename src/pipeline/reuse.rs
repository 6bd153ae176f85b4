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

use crate::export::manifest::{ChangeCounts, ReuseReport, VectorReuse};
use crate::export::{MANIFEST_FILE, POINTS_FILE, RANKED_FILE};
use crate::models::{ModelIdentity, PairScore};
use crate::vectors::{SparsePoint, SparseSource, SparseVector};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::store::{Checkpoint, CollectionStore, Phase, CHUNK_HASHES_FILE};

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

/// An earlier run's CrossEncoder scores, by (sha256 of the query text, sha256 of the passage
/// text): a pair's score depends on nothing else once the model and its settings match.
#[derive(Debug, Default)]
pub struct PairScores {
    scores: HashMap<([u8; 32], [u8; 32]), PairScore>,
}

impl PairScores {
    /// Scores keyed by (query text sha256, passage text sha256).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (([u8; 32], [u8; 32]), PairScore)>) -> Self {
        Self {
            scores: pairs.into_iter().collect(),
        }
    }

    /// The earlier score of this pair, if it was scored.
    pub fn get(&self, query_sha256: &[u8; 32], passage_sha256: &[u8; 32]) -> Option<PairScore> {
        self.scores.get(&(*query_sha256, *passage_sha256)).copied()
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

#[derive(Deserialize)]
struct RankedLineIn<'a> {
    query_sha256: &'a str,
    status: &'a str,
    #[serde(borrow)]
    candidates: Vec<RankedCandidateIn<'a>>,
}

#[derive(Deserialize)]
struct RankedCandidateIn<'a> {
    chunk_id: String,
    #[serde(borrow)]
    rerank_logit: Option<&'a RawValue>,
    #[serde(borrow)]
    rerank_score: Option<&'a RawValue>,
}

/// The reranked pairs of one `rerank.jsonl` line into `by_chunk`; a query that was not
/// reranked (`fused`, `failed`) has none.
fn scored_pairs(
    line: &[u8],
    by_chunk: &mut HashMap<String, Vec<([u8; 32], PairScore)>>,
) -> Result<(), String> {
    let parsed: RankedLineIn = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    if parsed.status != "ok" {
        return Ok(());
    }
    let query = unhex(parsed.query_sha256).ok_or("query_sha256 is not a sha256")?;
    for candidate in parsed.candidates {
        let (Some(logit), Some(score)) = (candidate.rerank_logit, candidate.rerank_score) else {
            return Err(format!(
                "candidate {} of a reranked query has no rerank_logit or rerank_score",
                candidate.chunk_id
            ));
        };
        let score = PairScore {
            logit: exact_f32(logit.get())?,
            score: exact_f32(score.get())?,
        };
        by_chunk
            .entry(candidate.chunk_id)
            .or_default()
            .push((query, score));
    }
    Ok(())
}

/// One float written by this tool (shortest round-trip text) back to the same f32 bits.
fn exact_f32(raw: &str) -> Result<f32, String> {
    match exact_f32s(&format!("[{}]", raw.trim()))?.as_slice() {
        [value] => Ok(*value),
        _ => Err("a score is not one number".to_string()),
    }
}

/// What a file of the earlier output must be: its sha256 (a finished output) or the length
/// its checkpoint recorded (an interrupted one; the file may be longer).
struct Expected {
    shown: String,
    /// Where the expectation comes from.
    manifest: String,
    sha256: Option<String>,
    length: Option<u64>,
}

/// An earlier point: where its line is, and the sha256 of its chunk's embedded text.
struct Entry {
    text_sha256: [u8; 32],
    offset: u64,
    len: u32,
}

/// One collection of the earlier output, indexed by chunk id.
pub struct PreviousCollection {
    collection: String,
    points_path: PathBuf,
    points_shown: String,
    points: File,
    entries: Vec<Entry>,
    index: HashMap<Box<str>, u32>,
    seen: Vec<bool>,
}

#[derive(Deserialize)]
struct HashLine {
    chunk_id: String,
    text_sha256: String,
}

impl PreviousCollection {
    fn open(
        collection: &str,
        points_path: &Path,
        points_expected: Expected,
        hashes_path: &Path,
        hashes_expected: Expected,
    ) -> Result<Self, ReuseError> {
        let malformed = |shown: &str, reason: String| ReuseError::Malformed {
            path: shown.to_string(),
            reason,
        };
        // The points: each line's offset and length, and the file's sha256, in one pass.
        let file = File::open(points_path).map_err(read_error(points_path))?;
        let mut lines = Vec::new();
        let points_sha = scan_lines(&file, points_expected.length, |offset, line| {
            lines.push((offset, line.len()));
        })
        .map_err(read_error(points_path))?;
        check(&points_expected, &points_sha)?;

        let file = File::open(hashes_path).map_err(read_error(hashes_path))?;
        let mut hashes = Vec::new();
        let mut bad = None;
        let hashes_sha = scan_lines(&file, hashes_expected.length, |_, line| {
            if bad.is_some() {
                return;
            }
            match serde_json::from_slice::<HashLine>(line) {
                Ok(parsed) => match unhex(&parsed.text_sha256) {
                    Some(sha) => hashes.push((parsed.chunk_id, sha)),
                    None => {
                        bad = Some(format!(
                            "line {}: text_sha256 is not a sha256",
                            hashes.len() + 1
                        ))
                    }
                },
                Err(err) => bad = Some(format!("line {}: {err}", hashes.len() + 1)),
            }
        })
        .map_err(read_error(hashes_path))?;
        check(&hashes_expected, &hashes_sha)?;
        if let Some(reason) = bad {
            return Err(malformed(&hashes_expected.shown, reason));
        }
        if hashes.len() != lines.len() {
            return Err(malformed(
                &hashes_expected.shown,
                format!(
                    "{} lines for the {} points of {}",
                    hashes.len(),
                    lines.len(),
                    points_expected.shown
                ),
            ));
        }
        let mut entries = Vec::with_capacity(lines.len());
        let mut index = HashMap::with_capacity(lines.len());
        for (i, ((offset, len), (chunk_id, sha))) in lines.into_iter().zip(hashes).enumerate() {
            let len = u32::try_from(len).map_err(|_| {
                malformed(
                    &points_expected.shown,
                    format!("point {} is over 4 GiB", i + 1),
                )
            })?;
            if index.insert(chunk_id.into_boxed_str(), i as u32).is_some() {
                return Err(malformed(
                    &hashes_expected.shown,
                    format!("line {}: a chunk id appears twice", i + 1),
                ));
            }
            entries.push(Entry {
                text_sha256: sha,
                offset,
                len,
            });
        }
        let seen = vec![false; entries.len()];
        Ok(Self {
            collection: collection.to_string(),
            points_path: points_path.to_path_buf(),
            points_shown: points_expected.shown,
            points: File::open(points_path).map_err(read_error(points_path))?,
            entries,
            index,
            seen,
        })
    }

    /// The earlier point of `chunk_id`, if any.
    pub fn find(&self, chunk_id: &str) -> Option<usize> {
        self.index.get(chunk_id).map(|&i| i as usize)
    }

    /// Marks `chunk_id` as present in this run's input (what is never marked was deleted).
    pub fn mark_seen(&mut self, chunk_id: &str) {
        if let Some(i) = self.find(chunk_id) {
            self.seen[i] = true;
        }
    }

    /// Whether the earlier point `entry` was made from a text with this sha256.
    pub fn same_text(&self, entry: usize, text_sha256: &[u8; 32]) -> bool {
        self.entries[entry].text_sha256 == *text_sha256
    }

    /// The earlier point's line (newline included).
    pub fn line(&mut self, entry: usize) -> Result<Vec<u8>, ReuseError> {
        let Entry { offset, len, .. } = self.entries[entry];
        let mut line = vec![0u8; len as usize];
        self.points
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.points.read_exact(&mut line))
            .map_err(read_error(&self.points_path))?;
        Ok(line)
    }

    /// The earlier points whose chunk was never marked seen, in their order: `(chunk id, point
    /// id)`.
    pub fn unseen(&self) -> Vec<(String, uuid::Uuid)> {
        let mut unseen: Vec<(u32, &str)> = self
            .index
            .iter()
            .filter(|(_, &i)| !self.seen[i as usize])
            .map(|(id, &i)| (i, id.as_ref()))
            .collect();
        unseen.sort_unstable();
        unseen
            .into_iter()
            .map(|(_, id)| {
                (
                    id.to_string(),
                    crate::input::point_id(
                        &self.collection,
                        &crate::input::ChunkId(id.to_string()),
                    ),
                )
            })
            .collect()
    }
}

/// Fails when a file's digest is not what its manifest or checkpoint records.
fn check(expected: &Expected, found: &crate::files::FileDigest) -> Result<(), ReuseError> {
    if let Some(sha) = &expected.sha256 {
        if *sha != found.sha256 {
            return Err(ReuseError::Corrupt {
                path: expected.shown.clone(),
                manifest: expected.manifest.clone(),
                expected: sha.clone(),
                found: found.sha256.clone(),
            });
        }
    }
    if let Some(length) = expected.length {
        if found.bytes != length {
            return Err(ReuseError::Malformed {
                path: expected.shown.clone(),
                reason: format!(
                    "it holds {} bytes where {} records {length}",
                    found.bytes, expected.manifest
                ),
            });
        }
    }
    Ok(())
}

/// Reads `file` line by line (up to `limit` bytes, when given), calling `each(offset, line)`;
/// returns the digest of what was read. A last line without a newline is malformed, and so
/// reported as a digest mismatch by the caller's expectation (it is not passed to `each`).
fn scan_lines(
    file: &File,
    limit: Option<u64>,
    mut each: impl FnMut(u64, &[u8]),
) -> std::io::Result<crate::files::FileDigest> {
    let reader: Box<dyn Read> = match limit {
        Some(limit) => Box::new(file.take(limit)),
        None => Box::new(file),
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut hasher = Sha256::new();
    let (mut offset, mut lines) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        hasher.update(&line);
        if line.ends_with(b"\n") {
            each(offset, &line);
            lines += 1;
        }
        offset += read as u64;
    }
    Ok(crate::files::FileDigest {
        sha256: hex::encode(hasher.finalize()),
        bytes: offset,
        lines,
    })
}

/// An earlier point's vectors.
#[derive(Debug, Default)]
pub struct PreviousVectors {
    pub dense: BTreeMap<String, Vec<f32>>,
    pub sparse: BTreeMap<String, SparseVector>,
    pub sparse_source: Option<SparseSource>,
}

impl PreviousVectors {
    /// The sparse point under `name`, if it came from SPLADE (a metadata fallback is
    /// recomputed: it depends on the metadata too).
    pub fn splade(&self, name: &str) -> Option<SparsePoint> {
        match self.sparse_source {
            Some(SparseSource::Splade) => self.sparse.get(name).map(|vector| SparsePoint {
                vector: vector.clone(),
                source: SparseSource::Splade,
            }),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct PointLine {
    vector: BTreeMap<String, Box<RawValue>>,
    payload: PointPayload,
}

#[derive(Deserialize)]
struct PointPayload {
    #[serde(default)]
    sparse_source: Option<SparseSource>,
}

#[derive(Deserialize)]
struct SparseLine {
    indices: Vec<u32>,
    values: Box<RawValue>,
}

/// Parses a point line's vectors exactly (see the module docs).
fn parse_point(line: &[u8]) -> Result<PreviousVectors, String> {
    let point: PointLine = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    let mut vectors = PreviousVectors {
        sparse_source: point.payload.sparse_source,
        ..PreviousVectors::default()
    };
    for (name, raw) in point.vector {
        let text = raw.get().trim_start();
        if text.starts_with('[') {
            vectors.dense.insert(name, exact_f32s(raw.get())?);
        } else {
            let sparse: SparseLine = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
            let values = exact_f32s(sparse.values.get())?;
            if values.len() != sparse.indices.len() {
                return Err(format!(
                    "sparse vector {name} has ragged indices and values"
                ));
            }
            vectors.sparse.insert(
                name,
                SparseVector {
                    indices: sparse.indices,
                    values,
                },
            );
        }
    }
    Ok(vectors)
}

/// `[1.5,-0.25,…]` as f32s, parsed from the text (correctly rounded) and checked to render back
/// to the same text, so a reused vector is bit for bit the one written.
fn exact_f32s(raw: &str) -> Result<Vec<f32>, String> {
    let inner = raw
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("a vector is not an array")?;
    let values: Vec<f32> = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|err| format!("a vector value is not a number: {err}"))?
    };
    let rendered = serde_json::to_string(&values).map_err(|err| err.to_string())?;
    if rendered != raw.trim() {
        return Err("a vector is not in the shortest round-trip form this tool writes".to_string());
    }
    Ok(values)
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

/// What one window takes from the earlier output, and what it must embed.
pub struct WindowPlan {
    /// Per chunk: its earlier point, if it has one.
    entries: Vec<Option<usize>>,
    /// Per chunk: its text differs from its earlier point's.
    text_changed: Vec<bool>,
    /// Per chunk: sha256 of its earlier point's line.
    previous_lines: Vec<Option<[u8; 32]>>,
    /// `[dense model][chunk]`: the reused vector.
    dense: Vec<Vec<Option<Vec<f32>>>>,
    /// Per chunk: the reused sparse point (empty without a sparse stage).
    sparse: Vec<Option<SparsePoint>>,
    dense_names: Vec<String>,
    sparse_name: Option<String>,
    /// Per chunk: some model computes a vector for it (fixed before [`Self::fill`] moves the
    /// reused vectors out).
    computed: Vec<bool>,
}

impl WindowPlan {
    /// Looks each chunk of `window` (its text hashes `texts`) up in `previous` (none: every
    /// chunk is new).
    ///
    /// # Errors
    ///
    /// An earlier point that cannot be read back.
    pub fn new(
        source: &ReuseSource,
        previous: Option<&mut PreviousCollection>,
        window: &[crate::input::Chunk],
        texts: &[[u8; 32]],
    ) -> Result<Self, ReuseError> {
        let n = window.len();
        let mut plan = Self {
            entries: vec![None; n],
            text_changed: vec![false; n],
            previous_lines: vec![None; n],
            dense: vec![vec![None; n]; source.dense.len()],
            sparse: if source.sparse.is_some() {
                vec![None; n]
            } else {
                Vec::new()
            },
            dense_names: source.dense.iter().map(|m| m.name.clone()).collect(),
            sparse_name: source.sparse.as_ref().map(|m| m.name.clone()),
            computed: Vec::new(),
        };
        let Some(previous) = previous else {
            plan.computed = vec![true; n];
            return Ok(plan);
        };
        for (i, chunk) in window.iter().enumerate() {
            let Some(entry) = previous.find(chunk.id.as_str()) else {
                continue;
            };
            plan.entries[i] = Some(entry);
            let line = previous.line(entry)?;
            plan.previous_lines[i] = Some(Sha256::digest(&line).into());
            if !previous.same_text(entry, &texts[i]) {
                plan.text_changed[i] = true;
                continue;
            }
            let mut vectors = parse_point(&line).map_err(|reason| ReuseError::Malformed {
                path: previous.points_shown.clone(),
                reason: format!("point {}: {reason}", entry + 1),
            })?;
            for (model, matched) in source.dense.iter().enumerate() {
                if let Ok(earlier) = &matched.previous {
                    plan.dense[model][i] = vectors.dense.remove(earlier);
                }
            }
            if let Some(Ok(earlier)) = source.sparse.as_ref().map(|m| &m.previous) {
                plan.sparse[i] = vectors.splade(earlier);
            }
        }
        plan.computed = (0..n)
            .map(|i| {
                plan.dense.iter().any(|v| v[i].is_none())
                    || (!plan.sparse.is_empty() && plan.sparse[i].is_none())
            })
            .collect();
        Ok(plan)
    }

    /// The chunks dense model `model` must embed.
    pub fn dense_todo(&self, model: usize) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.dense.get(model).is_none_or(|v| v[i].is_none()))
            .collect()
    }

    /// The chunks SPLADE must encode.
    pub fn sparse_todo(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.sparse.get(i).is_none_or(Option::is_none))
            .collect()
    }

    /// Whether any model computes a vector for chunk `i`.
    fn computed(&self, i: usize) -> bool {
        self.computed[i]
    }

    /// The window's reuse counts (changes are counted as they are recorded).
    pub fn tally(&self) -> ReuseReport {
        let mut tally = ReuseReport::default();
        for i in 0..self.entries.len() {
            if !self.computed(i) {
                tally.reused += 1;
                continue;
            }
            tally.embedded += 1;
            let why = match (self.entries[i], self.text_changed[i]) {
                (None, _) => "new",
                (Some(_), true) => "text_changed",
                (Some(_), false) => "model_changed",
            };
            *tally.embedded_because.entry(why.to_string()).or_default() += 1;
        }
        let count = |name: &str, reused: usize, total: usize| {
            (
                name.to_string(),
                VectorReuse {
                    reused,
                    computed: total - reused,
                },
            )
        };
        let n = self.entries.len();
        for (name, vectors) in self.dense_names.iter().zip(&self.dense) {
            let (key, value) = count(name, vectors.iter().flatten().count(), n);
            tally.vectors.insert(key, value);
        }
        if let Some(name) = &self.sparse_name {
            let (key, value) = count(name, self.sparse.iter().flatten().count(), n);
            tally.vectors.insert(key, value);
        }
        tally
    }

    /// Moves the reused vectors into the window's results (the places the models left).
    pub fn fill(
        &mut self,
        dense: &mut [Vec<Result<Vec<f32>, crate::models::ModelError>>],
        sparse: Option<&mut Vec<Option<SparsePoint>>>,
    ) {
        for (results, reused) in dense.iter_mut().zip(&mut self.dense) {
            for (result, vector) in results.iter_mut().zip(reused.iter_mut()) {
                if let Some(vector) = vector.take() {
                    *result = Ok(vector);
                }
            }
        }
        if let Some(points) = sparse {
            for (point, reused) in points.iter_mut().zip(self.sparse.iter_mut()) {
                if let Some(reused) = reused.take() {
                    *point = Some(reused);
                }
            }
        }
    }

    /// Records chunk `i`'s point (its rendered `line`) in the changes: added, updated, or
    /// nothing when it equals the earlier point.
    pub fn record_point(
        &self,
        i: usize,
        chunk: &crate::input::Chunk,
        line: &[u8],
        out: &mut Vec<u8>,
        counts: &mut ChangeCounts,
    ) -> serde_json::Result<()> {
        let (change, reason) = match self.previous_lines[i] {
            None => ("added", None),
            Some(earlier) if earlier == <[u8; 32]>::from(Sha256::digest(line)) => {
                counts.unchanged += 1;
                return Ok(());
            }
            Some(_) if self.text_changed[i] => ("updated", Some("text_changed")),
            Some(_) if self.computed(i) => ("updated", Some("model_changed")),
            Some(_) => ("updated", Some("payload_changed")),
        };
        change_line(
            out,
            counts,
            &ChangeLine {
                change,
                point_id: chunk.point_id,
                chunk_id: chunk.id.as_str(),
                reason,
            },
        )
    }

    /// Records chunk `i`, which has no point this time: its earlier point is deleted.
    pub fn record_failed(
        &self,
        i: usize,
        chunk: &crate::input::Chunk,
        out: &mut Vec<u8>,
        counts: &mut ChangeCounts,
    ) -> serde_json::Result<()> {
        if self.entries[i].is_none() {
            return Ok(());
        }
        change_line(
            out,
            counts,
            &ChangeLine {
                change: "deleted",
                point_id: chunk.point_id,
                chunk_id: chunk.id.as_str(),
                reason: Some("failed"),
            },
        )
    }
}

/// The deletions of the earlier points whose chunk is gone, rendered; their count.
pub fn deletions(
    previous: Option<&PreviousCollection>,
    owned: &dyn Fn(&str) -> bool,
) -> serde_json::Result<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut counts = ChangeCounts::default();
    for (chunk_id, point_id) in previous
        .map(PreviousCollection::unseen)
        .unwrap_or_default()
        .into_iter()
        .filter(|(chunk_id, _)| owned(chunk_id))
    {
        change_line(
            &mut out,
            &mut counts,
            &ChangeLine {
                change: "deleted",
                point_id,
                chunk_id: &chunk_id,
                reason: Some("removed"),
            },
        )?;
    }
    Ok((out, counts.deleted))
}

/// A line of `changes.jsonl`.
#[derive(serde::Serialize)]
pub struct ChangeLine<'a> {
    /// `added`, `updated` or `deleted`.
    pub change: &'a str,
    pub point_id: uuid::Uuid,
    pub chunk_id: &'a str,
    /// `updated`: `text_changed`, `model_changed` or `payload_changed`; `deleted`: `removed`
    /// (the chunk is gone) or `failed` (no point this time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Renders a change line (newline included) and counts it.
fn change_line(
    out: &mut Vec<u8>,
    counts: &mut ChangeCounts,
    line: &ChangeLine<'_>,
) -> serde_json::Result<()> {
    match line.change {
        "added" => counts.added += 1,
        "updated" => counts.updated += 1,
        _ => counts.deleted += 1,
    }
    serde_json::to_writer(&mut *out, line)?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_floats_round_trip_and_refuse_other_forms() {
        let values = [0.1f32, -1.5e-7, 3.4028235e38, 1.0, 0.0];
        let text = serde_json::to_string(&values).unwrap();
        assert_eq!(exact_f32s(&text).unwrap(), values);
        // Not the shortest form: parsing would give the same float, but the reused bytes
        // could not be promised.
        assert!(exact_f32s("[0.10000000]").is_err());
        assert!(exact_f32s("{\"a\":1}").is_err());
        assert!(exact_f32s("[1,nope]").is_err());
        assert_eq!(exact_f32s("[]").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn a_reranked_line_gives_its_pair_scores_and_a_fused_one_none() {
        let query = "ab".repeat(32);
        let line = format!(
            r#"{{"query_id":"q1","query_sha256":"{query}","source":"file","status":"ok","candidates":[{{"chunk_id":"a","rank":1,"rerank_logit":2.5,"rerank_score":0.75,"fused_rank":2,"fused_score":0.03}},{{"chunk_id":"b","rank":2,"rerank_logit":-1.0,"rerank_score":0.25,"fused_rank":1,"fused_score":0.04}}]}}"#
        );
        let mut by_chunk = HashMap::new();
        scored_pairs(line.as_bytes(), &mut by_chunk).unwrap();
        let query = unhex(&query).unwrap();
        assert_eq!(
            by_chunk["a"],
            vec![(
                query,
                PairScore {
                    logit: 2.5,
                    score: 0.75
                }
            )]
        );
        assert_eq!(by_chunk["b"][0].1.logit, -1.0);

        let mut none = HashMap::new();
        let fused = line.replace(r#""status":"ok""#, r#""status":"fused""#);
        scored_pairs(fused.as_bytes(), &mut none).unwrap();
        assert!(
            none.is_empty(),
            "a query that was not reranked has no scores"
        );
        let unscored = line.replace(r#""rerank_logit":2.5,"#, "");
        assert!(scored_pairs(unscored.as_bytes(), &mut none).is_err());
        let long = line.replace("2.5,", "2.50,");
        assert!(scored_pairs(long.as_bytes(), &mut none).is_err());
    }

    #[test]
    fn a_point_line_gives_its_dense_and_sparse_vectors() {
        let line = br#"{"id":"6b1c0c63-2d1f-5d4e-9a5e-000000000000","vector":{"minilm":[0.25,-0.5],"splade":{"indices":[3,9],"values":[1.25,0.5]}},"payload":{"collection":"c","chunk_id":"a","sparse_source":"splade"}}"#;
        let vectors = parse_point(line).unwrap();
        assert_eq!(vectors.dense["minilm"], vec![0.25, -0.5]);
        let sparse = vectors.splade("splade").unwrap();
        assert_eq!(sparse.vector.indices, vec![3, 9]);
        assert_eq!(sparse.vector.values, vec![1.25, 0.5]);
        let metadata = String::from_utf8(line.to_vec()).unwrap().replace(
            "\"sparse_source\":\"splade\"",
            "\"sparse_source\":\"metadata\"",
        );
        assert!(parse_point(metadata.as_bytes())
            .unwrap()
            .splade("splade")
            .is_none());
    }

    #[test]
    fn hex_round_trips() {
        let sha = text_sha256("hello");
        assert_eq!(unhex(&hex::encode(sha)), Some(sha));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"+f".repeat(32)), None, "digits only");
        assert_eq!(unhex(&hex::encode([7u8; 33])), None, "32 bytes only");
    }
}

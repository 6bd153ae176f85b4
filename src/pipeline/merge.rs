//! `embed-collections merge`: the shards of a sharded run (`--shard I/N`) become one output
//! directory, as an unsharded run would have written it.
//!
//! Shards embed only (dense and sparse vectors, `points.jsonl`) and keep their retrieval state
//! (`.work/<collection>/`). The merge
//! 1. checks the shard set before any model loads ([`ShardSet::open`]): every index `0..N`
//!    present exactly once, every shard finished (`ok` or `partial`), one count, one
//!    fingerprint, one partition; a missing, duplicated, unfinished or foreign shard is an error
//!    naming it;
//! 2. checks the shards against its own configuration, models and input
//!    ([`ShardSet::verify`]): the portable fingerprint ([`super::resume::portable`]), the
//!    partition it computes itself, and each collection's input sha256;
//! 3. for each collection, interleaves the owning shards' points by input position into a
//!    fresh work directory ([`assemble`]), so `points.jsonl` is byte for byte the unsharded
//!    run's, and then runs the usual ranking (queries embedded once, retrieval, fusion,
//!    rerank, evaluation) over it. No chunk is embedded again.

use super::collection::absorb_runs;
use super::overlap::{overlaps, InputPath, OutputKind, OutputPath};
use super::resume::{describe_differences, fingerprint_sha256};
use super::reuse::ReuseSource;
use super::state::{OutputLock, StateError};
use super::store::{
    split_row, Checkpoint, CollectionStore, Phase, StoredPoint, StoredPoints, CHANGES_FILE,
};
use crate::export::manifest::{MergedShard, ShardRecord, SharedCollection};
use crate::export::{CollectionReport, CollectionStatus, RunStatus, MANIFEST_FILE, POINTS_FILE};
use crate::shard::{Shard, Share};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the shards cannot be merged. Every variant names the shard (index and directory).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The merge's output is, holds or lies inside one of its shards.
    #[error(transparent)]
    Overlap(super::overlap::Overlap),
    #[error("{dir} is not a shard: {reason}")]
    NotAShard { dir: PathBuf, reason: String },
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("shard {shard} ({dir}) is not finished: its status is {status}; finish it with `--shard {shard} --resume` before merging")]
    Unfinished {
        shard: Shard,
        dir: PathBuf,
        status: String,
    },
    #[error("shard {shard} ({dir}) is one of {count}, but shard {first} ({first_dir}) is one of {first_count}: shards of different runs")]
    CountMismatch {
        shard: Shard,
        dir: PathBuf,
        count: u32,
        first: Shard,
        first_dir: PathBuf,
        first_count: u32,
    },
    #[error("shard {shard} is given twice: {first} and {second}")]
    Duplicate {
        shard: Shard,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{} of {count} shards missing: {}", .missing.len(), .missing.iter().map(|i| format!("{i}/{count} (shard-{i}-of-{count})")).collect::<Vec<_>>().join(", "))]
    Missing { missing: Vec<u32>, count: u32 },
    #[error("shard {shard} ({dir}) comes from another configuration, models or input than {against}: {}", .changes.join("; "))]
    Foreign {
        shard: Shard,
        dir: PathBuf,
        against: String,
        changes: Vec<String>,
    },
    #[error("shard {shard} ({dir}): collection {collection}: {problem}")]
    Collection {
        shard: Shard,
        dir: PathBuf,
        collection: String,
        problem: String,
    },
    #[error("cannot merge collection {collection}: {message}")]
    Assemble { collection: String, message: String },
    #[error("the merge's output directory {0} is one of the shards")]
    OutputIsShard(PathBuf),
    #[error("cannot lock shard {shard} ({dir}) against a concurrent run")]
    Busy {
        shard: Shard,
        dir: PathBuf,
        #[source]
        source: StateError,
    },
}

/// The parts of a shard's `manifest.json` the merge reads.
#[derive(Deserialize)]
struct ShardManifest {
    run_id: String,
    status: RunStatus,
    shard: Option<ShardRecord>,
    collections: Vec<CollectionReport>,
}

/// One shard's output directory.
pub struct ShardOutput {
    pub shard: Shard,
    pub dir: PathBuf,
    record: ShardRecord,
    run_id: String,
    manifest_sha256: String,
    collections: BTreeMap<String, CollectionReport>,
}

impl ShardOutput {
    fn read(dir: &Path) -> Result<Self, MergeError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|err| MergeError::Unreadable {
            path: path.clone(),
            message: err.to_string(),
        })?;
        let manifest: ShardManifest =
            serde_json::from_slice(&bytes).map_err(|err| MergeError::Unreadable {
                path: path.clone(),
                message: err.to_string(),
            })?;
        let record = manifest.shard.ok_or_else(|| MergeError::NotAShard {
            dir: dir.to_path_buf(),
            reason: "its manifest.json has no `shard` section (an unsharded run)".to_string(),
        })?;
        let shard =
            Shard::new(record.index, record.count).map_err(|err| MergeError::NotAShard {
                dir: dir.to_path_buf(),
                reason: err.to_string(),
            })?;
        if !matches!(manifest.status, RunStatus::Ok | RunStatus::Partial) {
            let status = serde_json::to_value(manifest.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(MergeError::Unfinished {
                shard,
                dir: dir.to_path_buf(),
                status,
            });
        }
        Ok(Self {
            shard,
            dir: dir.to_path_buf(),
            record,
            run_id: manifest.run_id,
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
            collections: manifest
                .collections
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
        })
    }

    fn problem(&self, collection: &str, problem: impl Into<String>) -> MergeError {
        MergeError::Collection {
            shard: self.shard,
            dir: self.dir.clone(),
            collection: collection.to_string(),
            problem: problem.into(),
        }
    }
}

/// A complete set of shards, in index order, each locked against a concurrent run.
pub struct ShardSet {
    pub count: u32,
    pub shards: Vec<ShardOutput>,
    _locks: Vec<OutputLock>,
}

impl ShardSet {
    /// Finds and checks the shards in `paths` (each a shard directory, or a directory holding
    /// `shard-I-of-N` directories); see the module docs.
    ///
    /// `output_dir` (the merge's) is checked against every shard directory first, before any
    /// shard is read or locked: a merge into a shard would rewrite the shard's files.
    pub fn open(paths: &[PathBuf], output_dir: &Path) -> Result<Self, MergeError> {
        let mut dirs = Vec::new();
        for path in paths {
            if path.join(MANIFEST_FILE).is_file() {
                dirs.push(path.clone());
                continue;
            }
            let entries = std::fs::read_dir(path).map_err(|err| MergeError::Unreadable {
                path: path.clone(),
                message: err.to_string(),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(Shard::from_dir_name)
                        .is_some()
                })
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            if found.is_empty() {
                return Err(MergeError::NotAShard {
                    dir: path.clone(),
                    reason: "it has no manifest.json and no shard-I-of-N directories".to_string(),
                });
            }
            found.sort();
            dirs.extend(found);
        }
        let shard_inputs: Vec<InputPath> = dirs
            .iter()
            .map(|dir| InputPath {
                refuse_containing: true,
                ..InputPath::dir("shard directory", dir)
            })
            .collect();
        let output = OutputPath {
            role: "directory (--output)".to_string(),
            path: output_dir.to_path_buf(),
            kind: OutputKind::Dir(super::state::run_writes),
        };
        if let Some(overlap) = overlaps(&[output], &shard_inputs).into_iter().next() {
            return Err(MergeError::Overlap(overlap));
        }
        let mut shards: Vec<ShardOutput> = Vec::new();
        let mut seen: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for dir in dirs {
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if let Some(first) = seen.get(&canonical) {
                let shard = ShardOutput::read(&dir)?.shard;
                return Err(MergeError::Duplicate {
                    shard,
                    first: first.clone(),
                    second: dir,
                });
            }
            seen.insert(canonical, dir.clone());
            shards.push(ShardOutput::read(&dir)?);
        }
        let Some(first) = shards.first() else {
            return Err(MergeError::Missing {
                missing: Vec::new(),
                count: 0,
            });
        };
        let (count, first_shard, first_dir) = (first.shard.count, first.shard, first.dir.clone());
        for shard in &shards {
            if shard.shard.count != count {
                return Err(MergeError::CountMismatch {
                    shard: shard.shard,
                    dir: shard.dir.clone(),
                    count: shard.shard.count,
                    first: first_shard,
                    first_dir,
                    first_count: count,
                });
            }
        }
        shards.sort_by_key(|s| s.shard.index);
        for pair in shards.windows(2) {
            if pair[0].shard == pair[1].shard {
                return Err(MergeError::Duplicate {
                    shard: pair[0].shard,
                    first: pair[0].dir.clone(),
                    second: pair[1].dir.clone(),
                });
            }
        }
        let missing: Vec<u32> = (0..count)
            .filter(|i| !shards.iter().any(|s| s.shard.index == *i))
            .collect();
        if !missing.is_empty() {
            return Err(MergeError::Missing { missing, count });
        }
        let reference = &shards[0];
        for shard in &shards[1..] {
            if shard.record.fingerprint_sha256 != reference.record.fingerprint_sha256 {
                return Err(MergeError::Foreign {
                    shard: shard.shard,
                    dir: shard.dir.clone(),
                    against: format!("shard {} ({})", reference.shard, reference.dir.display()),
                    changes: describe_differences(
                        &reference.record.fingerprint,
                        &shard.record.fingerprint,
                    ),
                });
            }
        }
        let mut locks = Vec::new();
        for shard in &shards {
            locks.push(
                OutputLock::acquire(&shard.dir).map_err(|source| MergeError::Busy {
                    shard: shard.shard,
                    dir: shard.dir.clone(),
                    source,
                })?,
            );
        }
        Ok(Self {
            count,
            shards,
            _locks: locks,
        })
    }

    /// Checks the shards against the merge's own portable fingerprint, partition and input
    /// hashes (`partition`: every collection the merge discovered, with its share).
    pub fn verify(
        &self,
        output_dir: &Path,
        fingerprint: &serde_json::Value,
        partition: &[SharedCollection],
        input_sha256: &BTreeMap<String, String>,
    ) -> Result<(), MergeError> {
        let output = output_dir
            .canonicalize()
            .unwrap_or_else(|_| output_dir.to_path_buf());
        let ours = fingerprint_sha256(fingerprint);
        for shard in &self.shards {
            if shard.dir.canonicalize().ok().as_deref() == Some(output.as_path()) {
                return Err(MergeError::OutputIsShard(shard.dir.clone()));
            }
            if shard.record.fingerprint_sha256 != ours {
                return Err(MergeError::Foreign {
                    shard: shard.shard,
                    dir: shard.dir.clone(),
                    against: "this merge".to_string(),
                    changes: describe_differences(&shard.record.fingerprint, fingerprint),
                });
            }
        }
        let theirs = &self.shards[0].record.partition;
        if theirs.as_slice() != partition {
            let shard = &self.shards[0];
            return Err(MergeError::Foreign {
                shard: shard.shard,
                dir: shard.dir.clone(),
                against: "this merge".to_string(),
                changes: vec![format!(
                    "the collections and their shares differ: {} in the shards, {} here",
                    describe(theirs),
                    describe(partition)
                )],
            });
        }
        for collection in partition {
            for shard in self.owners(collection.share) {
                let Some(report) = shard.collections.get(&collection.name) else {
                    return Err(shard.problem(
                        &collection.name,
                        "missing from the shard's manifest (the partition gives it chunks of this collection)",
                    ));
                };
                if report.status == CollectionStatus::Failed
                    || report.status == CollectionStatus::Interrupted
                {
                    return Err(shard.problem(
                        &collection.name,
                        format!(
                            "not complete in the shard ({}); rerun the shard with --resume",
                            report.error.as_deref().unwrap_or("no error recorded")
                        ),
                    ));
                }
                let expected = input_sha256.get(&collection.name);
                if report.input_sha256.as_ref() != expected {
                    return Err(shard.problem(
                        &collection.name,
                        "the shard read other input (the chunk files' sha256 differs)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The shards that embedded part of a collection shared as `share`.
    pub fn owners(&self, share: Share) -> Vec<&ShardOutput> {
        self.shards
            .iter()
            .filter(|s| match share {
                Share::Whole { owner } => s.shard.index == owner,
                Share::Split => true,
            })
            .collect()
    }

    /// What the merged manifest records of its shards.
    pub fn records(&self) -> Vec<MergedShard> {
        self.shards
            .iter()
            .map(|s| MergedShard {
                index: s.shard.index,
                count: s.shard.count,
                dir: std::path::absolute(&s.dir)
                    .unwrap_or_else(|_| s.dir.clone())
                    .display()
                    .to_string(),
                run_id: s.run_id.clone(),
                manifest_sha256: s.manifest_sha256.clone(),
            })
            .collect()
    }
}

fn describe(partition: &[SharedCollection]) -> String {
    partition
        .iter()
        .map(|c| match c.share {
            Share::Whole { owner } => format!("{} (whole, shard {owner})", c.name),
            Share::Split => format!("{} (split)", c.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One shard's points of a collection, read in order.
struct Source<'a> {
    shard: &'a ShardOutput,
    checkpoint: Checkpoint,
    points: StoredPoints,
    next: Option<StoredPoint>,
}

impl Source<'_> {
    fn advance(&mut self) -> Result<(), String> {
        self.next = self.points.next().transpose().map_err(|err| {
            format!(
                "shard {} ({}): {err}",
                self.shard.shard,
                self.shard.dir.display()
            )
        })?;
        Ok(())
    }
}

/// Interleaves the owning shards' points of `collection` by input position into a fresh
/// work directory `store_dir` (fingerprint `fingerprint`), moves `points.jsonl` to
/// `points_target` and leaves the store `Embedded`, ready for ranking. Returns the number of
/// chunks the shards embedded (to be checked against the input).
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    set: &ShardSet,
    collection: &str,
    share: Share,
    sparse: bool,
    reuse: Option<&ReuseSource>,
    store_dir: &Path,
    fingerprint: &str,
    points_target: &Path,
    formats: super::store::PointFormats,
) -> Result<usize, MergeError> {
    let fail = |message: String| MergeError::Assemble {
        collection: collection.to_string(),
        message,
    };
    let mut sources = Vec::new();
    for shard in set.owners(share) {
        let dir = shard.dir.join(super::state::WORK_DIR).join(collection);
        let checkpoint = CollectionStore::read_checkpoint(&dir)
            .map_err(|err| shard.problem(collection, format!("no readable work state: {err}")))?;
        if checkpoint.phase != Phase::Done {
            return Err(shard.problem(collection, "its work state is not complete"));
        }
        // A shard that wrote no JSONL keeps its points' lines in its work directory.
        let outputs = shard.dir.join(collection);
        let points = match outputs.join(POINTS_FILE) {
            jsonl if jsonl.is_file() => jsonl,
            _ => dir.join(super::store::POINTS_PARTIAL),
        };
        let hashes = outputs.join(super::store::CHUNK_HASHES_FILE);
        let points = StoredPoints::open(&dir, &checkpoint, &points, &hashes, sparse)
            .map_err(|err| shard.problem(collection, err.to_string()))?;
        let mut source = Source {
            shard,
            checkpoint,
            points,
            next: None,
        };
        source.advance().map_err(fail)?;
        sources.push(source);
    }
    let dims: Vec<Vec<usize>> = sources
        .iter()
        .filter(|s| s.checkpoint.points > 0)
        .map(|s| match &s.checkpoint.dense_dims {
            dims if dims.is_empty() => vec![s.points.dense_dim()],
            dims => dims.clone(),
        })
        .collect();
    let model_dims = dims.first().cloned().unwrap_or_default();
    if dims.windows(2).any(|d| d[0] != d[1]) {
        return Err(fail(format!(
            "the shards' dense dimensions differ: {dims:?}"
        )));
    }

    let mut changes = match reuse {
        Some(source) => Some(ShardChanges::read(source, collection, &sources)?),
        None => None,
    };

    let io = |err: std::io::Error| fail(format!("cannot write {}: {err}", store_dir.display()));
    let mut store = CollectionStore::open(store_dir, fingerprint, None).map_err(io)?;
    store.set_formats(formats).map_err(io)?;
    let mut writer = store.window().map_err(io)?;
    let mut last: Option<usize> = None;
    while let Some(pick) = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.next.as_ref().map(|p| (p.position, i)))
        .min()
        .map(|(_, i)| i)
    {
        let source = &mut sources[pick];
        let Some(point) = source.next.take() else {
            break;
        };
        if last.is_some_and(|l| point.position <= l) {
            return Err(fail(format!(
                "input position {} appears twice or out of order (shard {})",
                point.position, source.shard.shard
            )));
        }
        last = Some(point.position);
        writer
            .point(
                &point.line,
                &split_row(&point.dense, &model_dims),
                point.sparse.as_ref().map(Option::as_ref),
                point.position,
                &point.id,
                &point.text_sha256,
            )
            .map_err(io)?;
        // An upsert goes beside its point, so the changes come in input order.
        if let Some(line) = changes.as_mut().and_then(|c| c.upserts.remove(&point.id)) {
            writer.changes(&line).map_err(io)?;
        }
        source.advance().map_err(fail)?;
    }
    if let Some(changes) = &changes {
        for (_, line) in &changes.deletions {
            writer.changes(line).map_err(io)?;
        }
    }
    let chunks: usize = sources
        .iter()
        .map(|s| s.checkpoint.report.as_ref().map_or(0, |r| r.chunks))
        .sum();
    let windows: usize = sources.iter().map(|s| s.checkpoint.windows).sum();
    writer
        .commit(chunks, |checkpoint| {
            checkpoint.windows = windows;
            checkpoint.reuse = changes.take().map(|c| c.report);
            for source in &sources {
                for (stage, report) in &source.checkpoint.stages {
                    let entry = checkpoint.stages.entry(*stage).or_insert_with(|| {
                        crate::export::StageReport {
                            runs: Vec::new(),
                            ..report.clone()
                        }
                    });
                    absorb_runs(&mut entry.runs, report.runs.clone());
                }
                checkpoint.failed_count += source.checkpoint.failed_count;
                let room = super::collection::FAILED_IDS_SHOWN
                    .saturating_sub(checkpoint.failed_chunks.len());
                checkpoint
                    .failed_chunks
                    .extend(source.checkpoint.failed_chunks.iter().take(room).cloned());
            }
        })
        .map_err(io)?;
    store.finish_points(points_target).map_err(io)?;
    Ok(chunks)
}

/// The shards' `changes.jsonl` of one collection, for the merged one: the upserts by chunk id
/// (each written beside its point) and the deletions in the earlier output's order, as an
/// unsharded run writes them; and the shards' reuse reports summed.
struct ShardChanges {
    upserts: std::collections::HashMap<String, Vec<u8>>,
    deletions: Vec<(usize, Vec<u8>)>,
    report: crate::export::manifest::ReuseReport,
}

#[derive(Deserialize)]
struct ChangeKey {
    change: String,
    chunk_id: String,
}

impl ShardChanges {
    fn read(
        source: &ReuseSource,
        collection: &str,
        sources: &[Source<'_>],
    ) -> Result<Self, MergeError> {
        let previous = source
            .collection(collection)
            .map_err(|err| MergeError::Assemble {
                collection: collection.to_string(),
                message: err.to_string(),
            })?;
        let mut changes = Self {
            upserts: std::collections::HashMap::new(),
            deletions: Vec::new(),
            report: Default::default(),
        };
        // Every shard reused the same output (their fingerprints and the merge's agree on
        // `reuse_manifest_sha256`); one that embedded nothing of this collection has no
        // report and no changes file.
        for s in sources {
            let Some(report) = &s.checkpoint.reuse else {
                continue;
            };
            changes.report.absorb(report);
            let path = s.shard.dir.join(collection).join(CHANGES_FILE);
            let text = std::fs::read(&path).map_err(|err| {
                s.shard
                    .problem(collection, format!("cannot read {}: {err}", path.display()))
            })?;
            for (number, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
                let key: ChangeKey = serde_json::from_slice(line).map_err(|err| {
                    s.shard.problem(
                        collection,
                        format!("{} line {}: {err}", path.display(), number + 1),
                    )
                })?;
                if key.change == "deleted" {
                    let order = previous
                        .as_ref()
                        .and_then(|p| p.find(&key.chunk_id))
                        .unwrap_or(usize::MAX);
                    changes.deletions.push((order, line.to_vec()));
                } else {
                    changes.upserts.insert(key.chunk_id, line.to_vec());
                }
            }
        }
        changes.deletions.sort_by_key(|(order, _)| *order);
        changes.report.deletions_recorded = true;
        Ok(changes)
    }
}

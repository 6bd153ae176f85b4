//! An earlier run's collection read back: its points indexed by chunk id, their hashes, and
//! the vectors of a point read by offset when its chunk is unchanged.

use super::{read_error, unhex, ReuseError};
use crate::vectors::{SparsePoint, SparseSource, SparseVector};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What a file of the earlier output must be: its sha256 (a finished output) or the length
/// its checkpoint recorded (an interrupted one; the file may be longer).
pub(super) struct Expected {
    pub(super) shown: String,
    /// Where the expectation comes from.
    pub(super) manifest: String,
    pub(super) sha256: Option<String>,
    pub(super) length: Option<u64>,
}

/// An earlier point: where its line is, and the sha256 of its chunk's embedded text.
pub(super) struct Entry {
    text_sha256: [u8; 32],
    offset: u64,
    len: u32,
}

/// One collection of the earlier output, indexed by chunk id.
pub struct PreviousCollection {
    collection: String,
    points_path: PathBuf,
    pub(super) points_shown: String,
    points: File,
    entries: Vec<Entry>,
    index: HashMap<Box<str>, u32>,
    seen: Vec<bool>,
}

#[derive(Deserialize)]
pub(super) struct HashLine {
    pub(super) chunk_id: String,
    pub(super) text_sha256: String,
}

impl PreviousCollection {
    pub(super) fn open(
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
pub(super) fn check(
    expected: &Expected,
    found: &crate::files::FileDigest,
) -> Result<(), ReuseError> {
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
pub(super) fn scan_lines(
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
pub(super) struct PointLine {
    vector: BTreeMap<String, Box<RawValue>>,
    payload: PointPayload,
}

#[derive(Deserialize)]
pub(super) struct PointPayload {
    #[serde(default)]
    sparse_source: Option<SparseSource>,
}

#[derive(Deserialize)]
pub(super) struct SparseLine {
    indices: Vec<u32>,
    values: Box<RawValue>,
}

/// Parses a point line's vectors exactly (see the module docs).
pub(super) fn parse_point(line: &[u8]) -> Result<PreviousVectors, String> {
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
pub(super) fn exact_f32s(raw: &str) -> Result<Vec<f32>, String> {
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

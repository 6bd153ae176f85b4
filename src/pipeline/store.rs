//! A collection's work directory (`<output>/.work/<collection>/`): what the windows produced so
//! far, in compact append-only files, and the checkpoint that says how much of it is complete.
//!
//! Files (all appended window by window, in point order):
//! - `points.partial`: the point lines; renamed to `<collection>/points.jsonl` when every
//!   window is done, so the final file is exactly the concatenation of the windows' lines;
//! - `dense.f32`: the dense models' vectors, row-major little-endian f32, one row per point
//!   holding each model's vector in config order (`dense_dims` gives their widths): the
//!   retrieval matrix, one column block per model;
//! - `sparse.nnz` (u32 per point; `u32::MAX`: no sparse vector), `sparse.indices` (u32),
//!   `sparse.values` (f32): the sparse vectors in CSR form;
//! - `docs.jsonl`: per point, `[stream position, chunk id]` (to fetch passages for rerank and
//!   to name chunks in `rerank.jsonl` and the evaluation).
//! - `hashes.partial`: per point, `{"chunk_id":…,"text_sha256":…}` (the sha256 of the text the
//!   models embedded); moved to `<collection>/chunk_hashes.jsonl` beside the points, so a later
//!   run can reuse the vectors of unchanged chunks (`--reuse`, [`super::reuse`]);
//! - `changes.partial` (a run with `--reuse` only): the upserts and deletions a vector store
//!   loaded from the reused output must apply; moved to `<collection>/changes.jsonl`.
//! - `checkpoint.json`: written atomically after the data files are synced. On resume every
//!   data file is truncated to the length the checkpoint records, so a window that was being
//!   written when the process died is simply redone.
//!
//! Ranking reads the vectors and `docs.jsonl` back through [`RetrievalState`]
//! (`super::stored_vectors`): streamed in blocks, or mapped for the in-memory index.

use crate::export::manifest::ReuseReport;
use crate::export::{write_atomic, CollectionReport, StageReport};
use crate::stage::Stage;
use crate::vectors::SparseVector;

pub use super::stored_vectors::RetrievalState;
use super::stored_vectors::{
    VectorLengths, DENSE_FILE, DOCS_FILE, NO_SPARSE, SPARSE_INDICES, SPARSE_NNZ, SPARSE_VALUES,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.json";
pub(crate) const POINTS_PARTIAL: &str = "points.partial";
pub(super) const HASHES_PARTIAL: &str = "hashes.partial";
const CHANGES_PARTIAL: &str = "changes.partial";
/// Each collection's chunk hashes, beside its points.
pub const CHUNK_HASHES_FILE: &str = "chunk_hashes.jsonl";
/// Each collection's changes since the reused output (a run with `--reuse`).
pub const CHANGES_FILE: &str = "changes.jsonl";
/// A line of `chunk_hashes.jsonl`.
#[derive(Serialize)]
struct HashRecord<'a> {
    chunk_id: &'a str,
    text_sha256: &'a str,
}

/// How far a collection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Windows are being embedded; `windows` of them are complete.
    Windows,
    /// Every window is done and `points.jsonl` is in place; ranking and export remain.
    Embedded,
    /// Everything is written; `report` is the collection's final report.
    Done,
}

/// Byte lengths of the data files at the last complete window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLengths {
    pub points: u64,
    pub dense: u64,
    pub sparse_nnz: u64,
    pub sparse_indices: u64,
    pub sparse_values: u64,
    pub docs: u64,
    #[serde(default)]
    pub hashes: u64,
    #[serde(default)]
    pub changes: u64,
}

/// The collection's progress, as last committed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run fingerprint's hash; a checkpoint of another configuration is never continued.
    pub fingerprint: String,
    pub phase: Phase,
    /// Complete windows.
    pub windows: usize,
    /// Chunks of the input stream consumed by those windows.
    pub chunks_consumed: usize,
    /// Points written (chunks consumed minus chunks that failed dense embedding).
    pub points: usize,
    /// Width of the rows of `dense.f32` (the sum of `dense_dims`).
    pub dense_dim: usize,
    /// Each dense model's dimension, in config order (a row is their vectors side by side).
    #[serde(default)]
    pub dense_dims: Vec<usize>,
    pub lengths: FileLengths,
    /// Dense and sparse stage reports accumulated over the complete windows.
    pub stages: BTreeMap<Stage, StageReport>,
    /// Ids of chunks that failed dense embedding even alone (first few), and their count.
    pub failed_chunks: Vec<String>,
    pub failed_count: usize,
    /// The final report, once the phase is `Done`.
    pub report: Option<CollectionReport>,
    /// A run with `--reuse`: its counts over the complete windows.
    #[serde(default)]
    pub reuse: Option<ReuseReport>,
    /// Parquet parts written (`<collection>/points/part-NNNNN.parquet`), the points they hold
    /// and the bytes of `points.partial` those points' lines take: the next part starts there.
    #[serde(default)]
    pub parts: usize,
    #[serde(default)]
    pub parts_rows: usize,
    #[serde(default)]
    pub parts_offset: u64,
}

impl Checkpoint {
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_string(),
            phase: Phase::Windows,
            windows: 0,
            chunks_consumed: 0,
            points: 0,
            dense_dim: 0,
            dense_dims: Vec::new(),
            lengths: FileLengths::default(),
            stages: BTreeMap::new(),
            failed_chunks: Vec::new(),
            failed_count: 0,
            report: None,
            reuse: None,
            parts: 0,
            parts_rows: 0,
            parts_offset: 0,
        }
    }
}

/// The formats a collection's points are written in (`output.formats`).
pub struct PointFormats {
    /// `points.jsonl` (otherwise the lines stay in the work directory, where a merge or the
    /// Parquet parts read them, and go with it).
    pub jsonl: bool,
    pub parquet: Option<PartsPlan>,
}

impl Default for PointFormats {
    fn default() -> Self {
        Self {
            jsonl: true,
            parquet: None,
        }
    }
}

/// Parquet parts of a collection: each holds `rows_per_part` points (the window's chunk
/// count; the last holds the rest), made from the points' lines as the windows commit them.
pub struct PartsPlan {
    pub writer: crate::export::parquet::Writer,
    /// `<collection>/points/`.
    pub dir: PathBuf,
    pub rows_per_part: usize,
}

/// The append-only files of one collection's work directory.
pub struct CollectionStore {
    dir: PathBuf,
    checkpoint: Checkpoint,
    writers: Option<Writers>,
    formats: PointFormats,
}

struct Writers {
    points: BufWriter<File>,
    dense: BufWriter<File>,
    sparse_nnz: BufWriter<File>,
    sparse_indices: BufWriter<File>,
    sparse_values: BufWriter<File>,
    docs: BufWriter<File>,
    hashes: BufWriter<File>,
    changes: BufWriter<File>,
}

impl Writers {
    fn all(&mut self) -> [&mut BufWriter<File>; 8] {
        [
            &mut self.points,
            &mut self.dense,
            &mut self.sparse_nnz,
            &mut self.sparse_indices,
            &mut self.sparse_values,
            &mut self.docs,
            &mut self.hashes,
            &mut self.changes,
        ]
    }
}

/// Opens `dir/name` for appending after truncating it to `len` bytes (creating it if missing).
fn open_at(dir: &Path, name: &str, len: u64) -> std::io::Result<BufWriter<File>> {
    let path = dir.join(name);
    // Never through a link: `set_len` would truncate whatever file a link points to.
    let file = crate::files::open_no_follow(
        OpenOptions::new().create(true).truncate(false).write(true),
        &path,
    )?;
    file.set_len(len)?;
    drop(file);
    let file = crate::files::open_no_follow(OpenOptions::new().append(true), &path)?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

/// Renames a finished work file (`expected` bytes) to `target`; a run killed between an earlier
/// rename and its checkpoint finds it moved already.
fn move_into_place(partial: &Path, target: &Path, expected: u64) -> std::io::Result<()> {
    let moved_already = std::fs::symlink_metadata(partial).is_err()
        && std::fs::symlink_metadata(target).is_ok_and(|m| m.is_file() && m.len() == expected);
    if moved_already {
        return Ok(());
    }
    if std::fs::symlink_metadata(partial).is_err() {
        if expected > 0 {
            return Err(std::io::Error::other(format!(
                "{} is missing: the work directory was changed outside this run",
                partial.display()
            )));
        }
        // An empty collection wrote no window.
        crate::files::create_new_no_follow(partial)?;
    }
    // A link in its place would be renamed into the output.
    crate::files::open_no_follow(OpenOptions::new().read(true), partial)?.sync_all()?;
    std::fs::rename(partial, target)
}

impl CollectionStore {
    /// The checkpoint in `dir`, whatever run wrote it.
    pub fn read_checkpoint(dir: &Path) -> std::io::Result<Checkpoint> {
        let bytes = std::fs::read(dir.join(CHECKPOINT_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// The checkpoint in `dir`, if there is a readable one for `fingerprint`.
    pub fn load_checkpoint(dir: &Path, fingerprint: &str) -> Option<Checkpoint> {
        let bytes = std::fs::read(dir.join(CHECKPOINT_FILE)).ok()?;
        let checkpoint: Checkpoint = serde_json::from_slice(&bytes).ok()?;
        (checkpoint.fingerprint == fingerprint).then_some(checkpoint)
    }

    /// Continues from `checkpoint`, or starts afresh (an empty directory) when there is none.
    pub fn open(
        dir: &Path,
        fingerprint: &str,
        checkpoint: Option<Checkpoint>,
    ) -> std::io::Result<Self> {
        if let Some(parent) = dir.parent() {
            crate::files::real_dir(parent)?;
        }
        let checkpoint = match checkpoint {
            Some(checkpoint) => checkpoint,
            None => {
                if std::fs::symlink_metadata(dir).is_ok() {
                    // Removes a link itself, never what it points to.
                    std::fs::remove_dir_all(dir)?;
                }
                Checkpoint::new(fingerprint)
            }
        };
        crate::files::real_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            checkpoint,
            writers: None,
            formats: PointFormats::default(),
        })
    }

    /// Sets the formats the points are written in. With Parquet, the parts the checkpoint
    /// does not count (a killed run's last part, an earlier run's) are removed: they are
    /// written again, with the same bytes.
    pub fn set_formats(&mut self, formats: PointFormats) -> std::io::Result<()> {
        if let Some(plan) = &formats.parquet {
            crate::files::real_dir(&plan.dir)?;
            for (index, path) in crate::export::parquet::parts_in(&plan.dir)? {
                if index >= self.checkpoint.parts {
                    std::fs::remove_file(path)?;
                }
            }
        }
        self.formats = formats;
        Ok(())
    }

    /// The relative names of the point files written so far, for the report's outputs.
    pub fn point_outputs(&self, collection: &str) -> Vec<String> {
        use crate::export::parquet::{part_name, POINTS_DIR};
        let mut outputs = Vec::new();
        if self.formats.jsonl {
            outputs.push(format!("{collection}/{}", crate::export::POINTS_FILE));
        }
        if self.formats.parquet.is_some() {
            outputs.extend(
                (0..self.checkpoint.parts)
                    .map(|i| format!("{collection}/{POINTS_DIR}/{}", part_name(i))),
            );
        }
        outputs
    }

    /// Writes the Parquet parts the committed points fill (`last`: and the rest, in a last
    /// part; an empty collection gets one empty part, so readers see its columns), each
    /// atomically and then counted in the checkpoint.
    fn write_parts(&mut self, last: bool) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let Some(plan) = &self.formats.parquet else {
            return Ok(());
        };
        let rows_per_part = plan.rows_per_part.max(1);
        loop {
            let checkpoint = &self.checkpoint;
            let available = checkpoint.points - checkpoint.parts_rows;
            let rows = if available >= rows_per_part {
                rows_per_part
            } else if last && (available > 0 || checkpoint.parts == 0) {
                available
            } else {
                return Ok(());
            };
            let mut lines =
                BufReader::with_capacity(1 << 20, File::open(self.dir.join(POINTS_PARTIAL))?);
            lines.seek(SeekFrom::Start(checkpoint.parts_offset))?;
            let mut consumed = 0u64;
            let mut read = 0usize;
            let next_line = std::iter::from_fn(|| {
                if read == rows {
                    return None;
                }
                read += 1;
                let mut line = Vec::new();
                Some(match lines.read_until(b'\n', &mut line) {
                    Ok(_) if line.ends_with(b"\n") => {
                        consumed += line.len() as u64;
                        Ok(line)
                    }
                    Ok(_) => Err(std::io::Error::other(format!(
                        "{POINTS_PARTIAL} ends early"
                    ))),
                    Err(err) => Err(err),
                })
            });
            let path = plan
                .dir
                .join(crate::export::parquet::part_name(checkpoint.parts));
            plan.writer
                .write(&path, next_line, checkpoint.parts_rows + 1)
                .map_err(std::io::Error::other)?;
            // The rename is durable before the checkpoint counts the part.
            File::open(&plan.dir)?.sync_all()?;
            self.checkpoint.parts += 1;
            self.checkpoint.parts_rows += rows;
            self.checkpoint.parts_offset += consumed;
            self.save()?;
            tracing::info!(
                part = self.checkpoint.parts - 1,
                rows,
                "parquet part written"
            );
            if rows < rows_per_part {
                return Ok(());
            }
        }
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The files' writers, positioned at the last checkpoint (truncating what a killed window
    /// left behind).
    fn writers(&mut self) -> std::io::Result<&mut Writers> {
        if self.writers.is_none() {
            let lengths = self.checkpoint.lengths;
            let dir = &self.dir;
            self.writers = Some(Writers {
                points: open_at(dir, POINTS_PARTIAL, lengths.points)?,
                dense: open_at(dir, DENSE_FILE, lengths.dense)?,
                sparse_nnz: open_at(dir, SPARSE_NNZ, lengths.sparse_nnz)?,
                sparse_indices: open_at(dir, SPARSE_INDICES, lengths.sparse_indices)?,
                sparse_values: open_at(dir, SPARSE_VALUES, lengths.sparse_values)?,
                docs: open_at(dir, DOCS_FILE, lengths.docs)?,
                hashes: open_at(dir, HASHES_PARTIAL, lengths.hashes)?,
                changes: open_at(dir, CHANGES_PARTIAL, lengths.changes)?,
            });
        }
        self.writers
            .as_mut()
            .ok_or_else(|| std::io::Error::other("work files not open"))
    }

    /// Starts appending a window; nothing counts until [`WindowWriter::commit`].
    pub fn window(&mut self) -> std::io::Result<WindowWriter<'_>> {
        self.writers()?;
        Ok(WindowWriter {
            store: self,
            added: FileLengths::default(),
            points: 0,
            dims: Vec::new(),
        })
    }

    /// Appends `lines` to the changes file and records them (`update` adjusts the checkpoint),
    /// durably: data synced, then the checkpoint replaced.
    pub fn append_changes(
        &mut self,
        lines: &[u8],
        update: impl FnOnce(&mut Checkpoint),
    ) -> std::io::Result<()> {
        let writers = self.writers()?;
        writers.changes.write_all(lines)?;
        writers.changes.flush()?;
        writers.changes.get_ref().sync_data()?;
        self.checkpoint.lengths.changes += lines.len() as u64;
        update(&mut self.checkpoint);
        self.save()
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(&self.checkpoint)?;
        bytes.push(b'\n');
        write_atomic(&self.dir.join(CHECKPOINT_FILE), &bytes)
    }

    /// Moves the finished points into place (`target`, atomically: a rename within the output
    /// directory), their chunk hashes beside them (and the changes, in a run with `--reuse`),
    /// and records the `Embedded` phase.
    pub fn finish_points(&mut self, target: &Path) -> std::io::Result<()> {
        self.writers = None;
        self.write_parts(true)?;
        let parent = target
            .parent()
            .ok_or_else(|| std::io::Error::other("the points file has no directory"))?;
        crate::files::real_dir(parent)?;
        let lengths = self.checkpoint.lengths;
        if self.formats.jsonl {
            move_into_place(&self.dir.join(POINTS_PARTIAL), target, lengths.points)?;
        }
        move_into_place(
            &self.dir.join(HASHES_PARTIAL),
            &parent.join(CHUNK_HASHES_FILE),
            lengths.hashes,
        )?;
        if self.checkpoint.reuse.is_some() {
            move_into_place(
                &self.dir.join(CHANGES_PARTIAL),
                &parent.join(CHANGES_FILE),
                lengths.changes,
            )?;
        }
        // The renames are durable once the directory entries are.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        self.checkpoint.phase = Phase::Embedded;
        self.save()
    }

    /// Records a shard's final report and keeps the retrieval state: `merge` reads it.
    pub fn finish_shard(&mut self, report: &CollectionReport) -> std::io::Result<()> {
        self.writers = None;
        self.checkpoint.phase = Phase::Done;
        self.checkpoint.report = Some(report.clone());
        self.save()
    }

    /// Records the final report and frees the bulky files (the retrieval state is no longer
    /// needed once `rerank.jsonl` and the evaluation are written).
    pub fn finish(&mut self, report: &CollectionReport) -> std::io::Result<()> {
        self.finish_shard(report)?;
        for name in [
            DENSE_FILE,
            SPARSE_NNZ,
            SPARSE_INDICES,
            SPARSE_VALUES,
            DOCS_FILE,
            POINTS_PARTIAL,
            HASHES_PARTIAL,
            CHANGES_PARTIAL,
        ] {
            match std::fs::remove_file(self.dir.join(name)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    /// The retrieval state of the complete windows, for ranking.
    pub fn retrieval(&self) -> std::io::Result<RetrievalState> {
        let l = &self.checkpoint.lengths;
        let lengths = VectorLengths {
            dense: l.dense,
            sparse_nnz: l.sparse_nnz,
            sparse_indices: l.sparse_indices,
            sparse_values: l.sparse_values,
            docs: l.docs,
        };
        RetrievalState::open(
            &self.dir,
            lengths,
            self.checkpoint.dense_dim,
            self.checkpoint.dense_dims.clone(),
        )
    }
}

/// One window being appended, point by point (each point goes straight to the files' buffers,
/// so a window's rendered lines are never all held in memory).
pub struct WindowWriter<'s> {
    store: &'s mut CollectionStore,
    /// Bytes this window added to each file.
    added: FileLengths,
    points: usize,
    /// The dense models' dimensions of the points written.
    dims: Vec<usize>,
}

impl WindowWriter<'_> {
    /// Appends one point: its line (ending in a newline), each dense model's vector (config
    /// order), its sparse vector (`None` when the sparse stage is off; `Some(None)`: no vector
    /// for this point), its position in the input stream and its chunk id.
    pub fn point(
        &mut self,
        line: &[u8],
        dense: &[&[f32]],
        sparse: Option<Option<&SparseVector>>,
        position: usize,
        id: &str,
        text_sha256: &str,
    ) -> std::io::Result<()> {
        let writers = self.store.writers()?;
        writers.points.write_all(line)?;
        self.added.points += line.len() as u64;
        for vector in dense {
            for value in *vector {
                writers.dense.write_all(&value.to_le_bytes())?;
            }
            self.added.dense += 4 * vector.len() as u64;
        }
        self.dims.clear();
        self.dims.extend(dense.iter().map(|v| v.len()));
        match sparse {
            Some(Some(vector)) => {
                let nnz = u32::try_from(vector.indices.len())
                    .ok()
                    .filter(|n| *n != NO_SPARSE && vector.values.len() == vector.indices.len())
                    .ok_or_else(|| std::io::Error::other("sparse vector too long or ragged"))?;
                writers.sparse_nnz.write_all(&nnz.to_le_bytes())?;
                for index in &vector.indices {
                    writers.sparse_indices.write_all(&index.to_le_bytes())?;
                }
                for value in &vector.values {
                    writers.sparse_values.write_all(&value.to_le_bytes())?;
                }
                self.added.sparse_nnz += 4;
                self.added.sparse_indices += 4 * u64::from(nnz);
                self.added.sparse_values += 4 * u64::from(nnz);
            }
            Some(None) => {
                writers.sparse_nnz.write_all(&NO_SPARSE.to_le_bytes())?;
                self.added.sparse_nnz += 4;
            }
            None => {}
        }
        let mut doc = serde_json::to_vec(&(position, id))?;
        doc.push(b'\n');
        writers.docs.write_all(&doc)?;
        self.added.docs += doc.len() as u64;
        let mut hash = serde_json::to_vec(&HashRecord {
            chunk_id: id,
            text_sha256,
        })?;
        hash.push(b'\n');
        writers.hashes.write_all(&hash)?;
        self.added.hashes += hash.len() as u64;
        self.points += 1;
        Ok(())
    }

    /// Appends lines (each ending in a newline) to the changes file.
    pub fn changes(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let writers = self.store.writers()?;
        writers.changes.write_all(lines)?;
        self.added.changes += lines.len() as u64;
        Ok(())
    }

    /// Commits the window: data synced first, then the checkpoint replaced atomically, so a
    /// crash at any point leaves the previous checkpoint valid. `update` records the window's
    /// statistics in the checkpoint.
    pub fn commit(
        self,
        chunks_consumed: usize,
        update: impl FnOnce(&mut Checkpoint),
    ) -> std::io::Result<()> {
        let writers = self.store.writers()?;
        for writer in writers.all() {
            writer.flush()?;
            writer.get_ref().sync_data()?;
        }
        let checkpoint = &mut self.store.checkpoint;
        let lengths = &mut checkpoint.lengths;
        lengths.points += self.added.points;
        lengths.dense += self.added.dense;
        lengths.sparse_nnz += self.added.sparse_nnz;
        lengths.sparse_indices += self.added.sparse_indices;
        lengths.sparse_values += self.added.sparse_values;
        lengths.docs += self.added.docs;
        lengths.hashes += self.added.hashes;
        lengths.changes += self.added.changes;
        if self.points > 0 {
            checkpoint.dense_dim = self.dims.iter().sum();
            checkpoint.dense_dims = self.dims;
        }
        checkpoint.points += self.points;
        checkpoint.windows += 1;
        checkpoint.chunks_consumed = chunks_consumed;
        update(checkpoint);
        self.store.save()?;
        self.store.write_parts(false)
    }
}

/// A stored row cut into the dense models' vectors (`dims` in config order; the whole row
/// when they are not known).
pub fn split_row<'a>(row: &'a [f32], dims: &[usize]) -> Vec<&'a [f32]> {
    if dims.iter().sum::<usize>() != row.len() {
        return vec![row];
    }
    let mut rest = row;
    dims.iter()
        .map(|&dim| {
            let (vector, tail) = rest.split_at(dim);
            rest = tail;
            vector
        })
        .collect()
}

/// One point as a finished store holds it.
#[derive(Debug, PartialEq)]
pub struct StoredPoint {
    /// The `points.jsonl` line, newline included.
    pub line: Vec<u8>,
    pub dense: Vec<f32>,
    /// `None`: the sparse stage was off; `Some(None)`: no sparse vector for this point.
    pub sparse: Option<Option<SparseVector>>,
    pub position: usize,
    pub id: String,
    /// The sha256 (hex) of the text its models embedded.
    pub text_sha256: String,
}

/// Reads back, in order, the points of a store whose windows are complete (`checkpoint`),
/// with their lines from `points` (the moved `points.jsonl`, or the work directory's
/// `points.partial` of a run that wrote no JSONL) and their hashes from `hashes`
/// (`chunk_hashes.jsonl`); `sparse`: whether the run stored sparse vectors.
pub struct StoredPoints {
    remaining: usize,
    dim: usize,
    sparse: bool,
    points: BufReader<File>,
    dense: BufReader<File>,
    nnz: Option<BufReader<File>>,
    indices: Option<BufReader<File>>,
    values: Option<BufReader<File>>,
    docs: BufReader<File>,
    hashes: BufReader<File>,
}

impl StoredPoints {
    pub fn open(
        dir: &Path,
        checkpoint: &Checkpoint,
        points: &Path,
        hashes: &Path,
        sparse: bool,
    ) -> std::io::Result<Self> {
        let open = |path: &Path| File::open(path).map(|f| BufReader::with_capacity(1 << 20, f));
        let optional = |name: &str| -> std::io::Result<Option<BufReader<File>>> {
            if sparse {
                open(&dir.join(name)).map(Some)
            } else {
                Ok(None)
            }
        };
        let lengths = &checkpoint.lengths;
        let expected = |name: &str, len: u64, want: u64| {
            if len == want {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{name} holds {len} bytes where the checkpoint records {want}"
                )))
            }
        };
        let file_len = |path: &Path| std::fs::metadata(path).map(|m| m.len());
        expected("points.jsonl", file_len(points)?, lengths.points)?;
        expected(DENSE_FILE, file_len(&dir.join(DENSE_FILE))?, lengths.dense)?;
        Ok(Self {
            remaining: checkpoint.points,
            dim: checkpoint.dense_dim,
            sparse,
            points: open(points)?,
            dense: open(&dir.join(DENSE_FILE))?,
            nnz: optional(SPARSE_NNZ)?,
            indices: optional(SPARSE_INDICES)?,
            values: optional(SPARSE_VALUES)?,
            docs: open(&dir.join(DOCS_FILE))?,
            hashes: open(hashes)?,
        })
    }

    pub fn dense_dim(&self) -> usize {
        self.dim
    }

    fn read_point(&mut self) -> std::io::Result<StoredPoint> {
        use std::io::Read;
        let truncated = |what: &str| std::io::Error::other(format!("{what} ends early"));
        let mut line = Vec::new();
        self.points.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(truncated("points.jsonl"));
        }
        let read_f32s = |reader: &mut BufReader<File>, n: usize| -> std::io::Result<Vec<f32>> {
            let mut bytes = vec![0u8; 4 * n];
            reader.read_exact(&mut bytes)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let dense = read_f32s(&mut self.dense, self.dim)?;
        let sparse = if self.sparse {
            let (Some(nnz), Some(indices), Some(values)) =
                (&mut self.nnz, &mut self.indices, &mut self.values)
            else {
                return Err(truncated(SPARSE_NNZ));
            };
            let mut word = [0u8; 4];
            nnz.read_exact(&mut word)?;
            match u32::from_le_bytes(word) {
                NO_SPARSE => Some(None),
                n => {
                    let n = n as usize;
                    let mut bytes = vec![0u8; 4 * n];
                    indices.read_exact(&mut bytes)?;
                    let index_list = bytes
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Some(Some(SparseVector {
                        indices: index_list,
                        values: read_f32s(values, n)?,
                    }))
                }
            }
        } else {
            None
        };
        let mut doc = String::new();
        self.docs.read_line(&mut doc)?;
        let (position, id): (usize, String) = serde_json::from_str(doc.trim_end())?;
        let mut hash = String::new();
        self.hashes.read_line(&mut hash)?;
        #[derive(Deserialize)]
        struct Hash {
            chunk_id: String,
            text_sha256: String,
        }
        let hash: Hash = serde_json::from_str(hash.trim_end())?;
        if hash.chunk_id != id {
            return Err(std::io::Error::other(format!(
                "{CHUNK_HASHES_FILE} names chunk {:?} where the points have {id:?}",
                hash.chunk_id
            )));
        }
        Ok(StoredPoint {
            line,
            dense,
            sparse,
            position,
            id,
            text_sha256: hash.text_sha256,
        })
    }
}

impl Iterator for StoredPoints {
    type Item = std::io::Result<StoredPoint>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let point = self.read_point();
        if point.is_err() {
            self.remaining = 0;
        }
        Some(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test point: its line, dense row, sparse vector and chunk id.
    type TestPoint<'a> = (&'a [u8], Vec<f32>, Option<SparseVector>, &'a str);

    /// Appends one window of points and commits it.
    fn append(store: &mut CollectionStore, points: &[TestPoint<'_>], first: usize) {
        let mut writer = store.window().unwrap();
        for (i, (line, row, sparse, id)) in points.iter().enumerate() {
            writer
                .point(
                    line,
                    &[row.as_slice()],
                    Some(sparse.as_ref()),
                    first + i,
                    id,
                    "0",
                )
                .unwrap();
        }
        writer.commit(first + points.len(), |_| {}).unwrap();
    }

    /// Two dense models: a row holds both vectors side by side, and each model's index
    /// searches its own block (a merge cuts a stored row back into the models' vectors).
    #[test]
    fn each_dense_model_searches_its_own_column_block() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = CollectionStore::open(tmp.path(), "fp", None).unwrap();
        let mut writer = store.window().unwrap();
        let rows: [(&[f32], &[f32]); 3] = [
            (&[1.0, 0.0], &[0.0, 0.0, 1.0]),
            (&[0.0, 1.0], &[1.0, 0.0, 0.0]),
            (&[0.5, 0.5], &[0.0, 1.0, 0.0]),
        ];
        for (i, (a, b)) in rows.iter().enumerate() {
            writer
                .point(b"p\n", &[a, b], None, i, &format!("id{i}"), "0")
                .unwrap();
        }
        writer.commit(3, |_| {}).unwrap();
        assert_eq!(store.checkpoint().dense_dims, [2, 3]);
        assert_eq!(store.checkpoint().dense_dim, 5);
        let state = store.retrieval().unwrap();
        let mapped = state.map().unwrap();
        let indexes = mapped.dense_indexes();
        assert_eq!(
            indexes
                .iter()
                .map(|i| (i.len(), i.dim()))
                .collect::<Vec<_>>(),
            [(3, Some(2)), (3, Some(3))]
        );
        let best = |index: &crate::retrieval::DenseIndex<'_>, query: &[f32]| {
            index.search(query, 1)[0].index
        };
        assert_eq!(best(&indexes[0], &[0.0, 1.0]), 1);
        assert_eq!(best(&indexes[1], &[0.0, 1.0, 0.0]), 2);
        assert_eq!(best(&indexes[1], &[0.0, 0.0, 1.0]), 0);
        assert_eq!(best(&indexes[0], &[1.0, 0.0]), 0, "the primary's block");
        let row = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(split_row(&row, &[2, 3]), [&row[..2], &row[2..]]);
        assert_eq!(
            split_row(&row, &[]),
            [&row[..]],
            "unknown widths: the whole row"
        );
    }

    #[test]
    fn a_killed_window_is_truncated_away_on_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let sv = |t: &[(u32, f32)]| {
            Some(SparseVector {
                indices: t.iter().map(|x| x.0).collect(),
                values: t.iter().map(|x| x.1).collect(),
            })
        };
        let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
        append(
            &mut store,
            &[
                (b"a\n", vec![1.0, 0.0], sv(&[(3, 1.0)]), "a"),
                (b"b\n", vec![0.0, 1.0], None, "b"),
            ],
            0,
        );
        // A second window written but never committed (the process "dies" before the
        // checkpoint): its bytes are in the files, not in the checkpoint.
        {
            let writers = store.writers().unwrap();
            writers.points.write_all(b"junk\n").unwrap();
            writers.dense.write_all(&[0u8; 8]).unwrap();
            writers.docs.write_all(b"[9,\"junk\"]\n").unwrap();
            for w in writers.all() {
                w.flush().unwrap();
            }
        }
        drop(store);
        let checkpoint = CollectionStore::load_checkpoint(&dir, "fp").unwrap();
        assert!(CollectionStore::load_checkpoint(&dir, "other").is_none());
        assert_eq!((checkpoint.windows, checkpoint.points), (1, 2));
        let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
        append(
            &mut store,
            &[(b"c\n", vec![0.5, 0.5], sv(&[(3, 2.0), (7, 1.0)]), "c")],
            2,
        );
        let state = store.retrieval().unwrap();
        assert_eq!(state.ids, ["a", "b", "c"]);
        assert_eq!(state.positions, [0, 1, 2]);
        let mapped = state.map().unwrap();
        let dense = mapped.dense_indexes().swap_remove(0);
        assert_eq!(dense.len(), 3);
        let hits = dense.search(&[0.0, 1.0], 3);
        assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [1, 2, 0]);
        // The scan reads the same complete windows, never the killed one's bytes.
        let mut rows = Vec::new();
        state
            .scan_dense(8, |block| {
                assert_eq!(block.len(), 2, "one 2-float row per 8-byte block");
                rows.extend_from_slice(block)
            })
            .unwrap();
        assert_eq!(rows, [1.0, 0.0, 0.0, 1.0, 0.5, 0.5]);
        let mut blocks = Vec::new();
        state
            .scan_sparse(1, |nnz, indices, values| {
                blocks.push((nnz.to_vec(), indices.to_vec(), values.to_vec()))
            })
            .unwrap();
        assert_eq!(
            blocks,
            [
                (vec![Some(1), None], vec![3], vec![1.0]),
                (vec![Some(2)], vec![3, 7], vec![2.0, 1.0])
            ],
            "blocks of about one entry, a document never split"
        );
        let sparse = mapped.sparse_index().unwrap();
        assert_eq!(
            sparse.len(),
            2,
            "the point without a sparse vector is not indexed"
        );
        let query = SparseVector {
            indices: vec![3],
            values: vec![1.0],
        };
        let hits = sparse.search(&query, 10);
        assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [2, 0]);
        let target = tmp.path().join("out/c/points.jsonl");
        store.finish_points(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"a\nb\nc\n");

        // Killed after the rename but before the checkpoint said so: resuming moves nothing
        // and keeps the points (never an empty file over them).
        let mut checkpoint = store.checkpoint().clone();
        checkpoint.phase = Phase::Windows;
        drop(store);
        let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
        store.finish_points(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"a\nb\nc\n");
        assert_eq!(store.checkpoint().phase, Phase::Embedded);
    }

    #[test]
    fn stored_points_read_back_what_the_windows_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let vector = SparseVector {
            indices: vec![2, 9],
            values: vec![0.5, 1.5],
        };
        let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
        // Positions 0, 4 and 7 of the input: a shard's points carry their global positions.
        let mut writer = store.window().unwrap();
        writer
            .point(b"a\n", &[&[1.0, -2.0]], Some(Some(&vector)), 0, "a", "0")
            .unwrap();
        writer
            .point(b"b\n", &[&[0.25, 3.0]], Some(None), 4, "b", "0")
            .unwrap();
        writer.commit(5, |_| {}).unwrap();
        let mut writer = store.window().unwrap();
        writer
            .point(
                b"c\n",
                &[&[f32::MIN_POSITIVE, 0.0]],
                Some(Some(&vector)),
                7,
                "c",
                "0",
            )
            .unwrap();
        writer.commit(8, |_| {}).unwrap();
        let target = tmp.path().join("out/c/points.jsonl");
        store.finish_points(&target).unwrap();

        let read: Vec<StoredPoint> = StoredPoints::open(
            &dir,
            store.checkpoint(),
            &target,
            &target.with_file_name(CHUNK_HASHES_FILE),
            true,
        )
        .unwrap()
        .collect::<std::io::Result<_>>()
        .unwrap();
        let point = |line: &[u8], dense: Vec<f32>, sparse, position, id: &str| StoredPoint {
            line: line.to_vec(),
            dense,
            sparse: Some(sparse),
            position,
            id: id.to_string(),
            text_sha256: "0".to_string(),
        };
        assert_eq!(
            read,
            [
                point(b"a\n", vec![1.0, -2.0], Some(vector.clone()), 0, "a"),
                point(b"b\n", vec![0.25, 3.0], None, 4, "b"),
                point(b"c\n", vec![f32::MIN_POSITIVE, 0.0], Some(vector), 7, "c"),
            ]
        );

        // A points file that does not match the checkpoint is refused, not half read.
        std::fs::write(&target, b"a\nb\n").unwrap();
        let err = StoredPoints::open(
            &dir,
            store.checkpoint(),
            &target,
            &target.with_file_name(CHUNK_HASHES_FILE),
            true,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("the checkpoint records"), "{err}");
    }
    /// A work file replaced by a link (someone with write access to the output directory) is
    /// refused by name on resume; the file it points to keeps its content (`set_len` would
    /// have truncated it, the window appended to it).
    #[cfg(unix)]
    #[test]
    fn a_linked_work_file_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
        append(&mut store, &[(b"a\n", vec![1.0, 0.0], None, "a")], 0);
        let checkpoint = store.checkpoint().clone();
        drop(store);
        let precious = tmp.path().join("precious.txt");
        std::fs::write(&precious, "keep me\n").unwrap();
        std::fs::remove_file(dir.join(POINTS_PARTIAL)).unwrap();
        std::os::unix::fs::symlink(&precious, dir.join(POINTS_PARTIAL)).unwrap();
        let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
        let err = store.window().err().unwrap();
        assert!(
            err.to_string().contains(&format!(
                "{}: is a symbolic link",
                dir.join(POINTS_PARTIAL).display()
            )),
            "{err}"
        );
        // Nor is the link renamed into the output as the points file.
        let target = tmp.path().join("out/c/points.jsonl");
        assert!(store.finish_points(&target).is_err());
        assert!(std::fs::symlink_metadata(&target).is_err());
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    }

    /// The work directory and the collection's output directory must be real directories.
    #[cfg(unix)]
    #[test]
    fn a_linked_work_or_output_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::os::unix::fs::symlink(&elsewhere, work.join("c")).unwrap();
        // Without a checkpoint the link is removed (never followed) and a real directory made.
        let store = CollectionStore::open(&work.join("c"), "fp", None).unwrap();
        assert!(!crate::files::is_symlink(&work.join("c")));
        drop(store);
        std::fs::remove_dir(work.join("c")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, work.join("c")).unwrap();
        let checkpoint = Checkpoint::new("fp");
        let err = CollectionStore::open(&work.join("c"), "fp", Some(checkpoint))
            .err()
            .unwrap();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let mut store = CollectionStore::open(&tmp.path().join("real"), "fp", None).unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("c")).unwrap();
        let err = store
            .finish_points(&out.join("c/points.jsonl"))
            .unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}

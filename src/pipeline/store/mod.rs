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
//!
//! Here: the store and its writers; the checkpoint format in `checkpoint.rs`, a window's
//! write side in `window.rs`, the read side of a finished store in `points.rs`.

use crate::export::{write_atomic, CollectionReport};

mod checkpoint;
mod points;
mod window;

pub use super::stored_vectors::RetrievalState;
use super::stored_vectors::{
    VectorLengths, DENSE_FILE, DOCS_FILE, SPARSE_INDICES, SPARSE_NNZ, SPARSE_VALUES,
};
pub use checkpoint::{Checkpoint, FileLengths, Phase};
pub use points::{split_row, StoredPoint, StoredPoints};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
pub use window::WindowWriter;

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

#[cfg(test)]
mod tests;

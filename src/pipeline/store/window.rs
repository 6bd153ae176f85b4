//! The write side of a window: points appended one by one to the work files' buffers, then
//! committed with the checkpoint.

use super::{Checkpoint, CollectionStore, FileLengths, HashRecord};
use crate::pipeline::stored_vectors::NO_SPARSE;
use crate::vectors::SparseVector;
use std::io::Write;

/// One window being appended, point by point (each point goes straight to the files' buffers,
/// so a window's rendered lines are never all held in memory).
pub struct WindowWriter<'s> {
    pub(super) store: &'s mut CollectionStore,
    /// Bytes this window added to each file.
    pub(super) added: FileLengths,
    pub(super) points: usize,
    /// The dense models' dimensions of the points written.
    pub(super) dims: Vec<usize>,
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

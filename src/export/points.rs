//! Writes `<collection>/points.jsonl` atomically.

use super::atomic::AtomicFile;
use super::wire::{PointLine, VectorRef};
use crate::input::Chunk;
use crate::vectors::SparsePoint;
use std::io::Write;
use std::path::Path;

/// The vectors of a collection, one entry per chunk in chunk order.
pub struct CollectionVectors<'a> {
    /// (vector name, one dense vector per chunk), in configured order.
    pub dense: Vec<(&'a str, &'a [Vec<f32>])>,
    /// (vector name, one optional sparse point per chunk), when the sparse stage ran.
    pub sparse: Option<(&'a str, &'a [Option<SparsePoint>])>,
}

/// Writes one point per chunk.
pub fn write_points(
    path: &Path,
    collection: &str,
    chunks: &[Chunk],
    vectors: &CollectionVectors<'_>,
    include_text: bool,
) -> std::io::Result<usize> {
    let mismatch = |name: &str, len: usize| {
        std::io::Error::other(format!(
            "vector set {name:?} has {len} entries for {} chunks",
            chunks.len()
        ))
    };
    for (name, set) in &vectors.dense {
        if set.len() != chunks.len() {
            return Err(mismatch(name, set.len()));
        }
    }
    if let Some((name, set)) = vectors.sparse {
        if set.len() != chunks.len() {
            return Err(mismatch(name, set.len()));
        }
    }
    let mut file = AtomicFile::create(path)?;
    for (index, chunk) in chunks.iter().enumerate() {
        let mut named: Vec<(&str, VectorRef<'_>)> = vectors
            .dense
            .iter()
            .map(|(name, set)| (*name, VectorRef::Dense(set[index].as_slice())))
            .collect();
        let sparse = vectors
            .sparse
            .and_then(|(name, set)| set[index].as_ref().map(|point| (name, point)));
        if let Some((name, point)) = sparse {
            named.push((name, VectorRef::Sparse(&point.vector)));
        }
        let line = PointLine::new(
            collection,
            chunk,
            named,
            include_text,
            sparse.map(|(_, p)| p.source),
        );
        serde_json::to_writer(&mut file, &line)?;
        file.write_all(b"\n")?;
    }
    file.commit()?;
    Ok(chunks.len())
}

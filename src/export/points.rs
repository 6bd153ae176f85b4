//! The lines of `<collection>/points.jsonl`. The runner renders each window's points with
//! [`render_point`] and appends them to the collection's work file, which becomes
//! `points.jsonl` (by an atomic rename) once every window is done.

use super::wire::{PointLine, VectorRef};
use crate::input::Chunk;
use crate::vectors::SparsePoint;

/// One point's vectors: each dense model's (by vector name, in configured order), then the
/// sparse one when the sparse stage ran and gave one.
pub struct PointVectors<'a> {
    pub dense: Vec<(&'a str, &'a [f32])>,
    pub sparse: Option<(&'a str, &'a SparsePoint)>,
}

/// Appends the point line of `chunk` (with its newline) to `out`.
pub fn render_point(
    out: &mut Vec<u8>,
    collection: &str,
    chunk: &Chunk,
    vectors: &PointVectors<'_>,
    include_text: bool,
) -> serde_json::Result<()> {
    let mut named: Vec<(&str, VectorRef<'_>)> = vectors
        .dense
        .iter()
        .map(|(name, vector)| (*name, VectorRef::Dense(vector)))
        .collect();
    if let Some((name, point)) = vectors.sparse {
        named.push((name, VectorRef::Sparse(&point.vector)));
    }
    let line = PointLine::new(
        collection,
        chunk,
        named,
        include_text,
        vectors.sparse.map(|(_, p)| p.source),
    );
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

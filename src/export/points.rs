//! Writes `<collection>/points.jsonl` atomically.

use super::atomic::AtomicFile;
use super::wire::PointLine;
use crate::input::Chunk;
use std::io::Write;
use std::path::Path;

/// A named dense vector set: vector name and one vector per chunk, in chunk order.
pub type NamedVectorSet<'a> = (&'a str, &'a [Vec<f32>]);

/// Writes one point per chunk; `vectors` hold one vector per chunk for each name.
pub fn write_points(
    path: &Path,
    collection: &str,
    chunks: &[Chunk],
    vectors: &[NamedVectorSet<'_>],
    include_text: bool,
) -> std::io::Result<usize> {
    if let Some((name, set)) = vectors.iter().find(|(_, set)| set.len() != chunks.len()) {
        return Err(std::io::Error::other(format!(
            "vector set {name:?} has {} vectors for {} chunks",
            set.len(),
            chunks.len()
        )));
    }
    let mut file = AtomicFile::create(path)?;
    for (index, chunk) in chunks.iter().enumerate() {
        let named = vectors
            .iter()
            .map(|(name, set)| (*name, set[index].as_slice()))
            .collect();
        let line = PointLine::new(collection, chunk, named, include_text);
        serde_json::to_writer(&mut file, &line)?;
        file.write_all(b"\n")?;
    }
    file.commit()?;
    Ok(chunks.len())
}

//! `<collection>/query_vectors.jsonl`: the vectors of every query a run ranked, made with the
//! same models, query prompts and truncation as the run used, so that the points can be
//! searched with them (`query_points(query=…, using=<vector name>)`). One line per query, in
//! query order: its id, the sha256 of its text (never the text), its source, and the same named
//! vectors as the points — a vector is absent where encoding that query failed.

use super::atomic::write_atomic;
use super::wire::{NamedVectors, VectorRef};
use crate::ranking::{QuerySet, QuerySource};
use crate::vectors::SparseVector;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Name of each collection's query-vector file.
pub const QUERY_VECTORS_FILE: &str = "query_vectors.jsonl";

#[derive(Serialize)]
struct QueryVectorLine<'a> {
    query_id: &'a str,
    query_sha256: String,
    source: &'static str,
    vector: NamedVectors<'a>,
}

/// Renders one line per query of `set`. `dense`: per dense model, its vector name and one
/// vector per query (`None`: that model's encoding failed); `sparse`: the sparse vector name
/// and one optional vector per query.
pub fn render_query_vectors(
    set: &QuerySet,
    dense: &[(&str, Option<&[Vec<f32>]>)],
    sparse: Option<(&str, &[Option<SparseVector>])>,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let source = match set.source {
        QuerySource::File(_) => "file",
        QuerySource::Probe => "probe",
    };
    for (i, query) in set.queries.iter().enumerate() {
        let mut named: Vec<(&str, VectorRef<'_>)> = dense
            .iter()
            .filter_map(|(name, vectors)| {
                let vector = vectors.and_then(|v| v.get(i))?;
                Some((*name, VectorRef::Dense(vector)))
            })
            .collect();
        if let Some((name, vectors)) = sparse {
            if let Some(Some(vector)) = vectors.get(i) {
                named.push((name, VectorRef::Sparse(vector)));
            }
        }
        let line = QueryVectorLine {
            query_id: &query.id,
            query_sha256: hex::encode(Sha256::digest(query.text.as_bytes())),
            source,
            vector: NamedVectors(named),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Writes rendered query-vector `lines` to `path` atomically: as they are, or with `parquet`
/// (the run's layout) as `query_vectors.parquet` of `collection`.
pub fn write_query_vectors(
    path: &Path,
    lines: &[u8],
    parquet: Option<&super::parquet::Layout>,
    collection: &str,
) -> Result<(), super::parquet::ParquetError> {
    use super::parquet::{Layout, ParquetError, RecordKind, Writer};
    match parquet {
        None => write_atomic(path, lines).map_err(|source| ParquetError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Some(layout) => {
            let layout = Layout {
                collection: collection.to_string(),
                ..layout.clone()
            };
            let rows = lines
                .split_inclusive(|&b| b == b'\n')
                .map(Ok::<_, std::io::Error>);
            Writer::new(RecordKind::Query, layout)?
                .write(path, rows, 1)
                .map(|_| ())
        }
    }
}

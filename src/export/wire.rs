//! The output formats, as serialize-only structs. These are contracts: fields are added, not
//! renamed or removed, and [`SCHEMA_VERSION`] changes with any change. (Version 2 removed the
//! top-level `chunk_id` of points, which Qdrant's upsert schema rejects; it is in the payload.)
//!
//! # Format
//!
//! `<collection>/points.jsonl`, one Qdrant-ready point per chunk, in input order:
//!
//! ```text
//! {"id":"5f0c…-uuidv5","vector":{"minilm":[0.0123,-0.0456,…]},"payload":{"collection":"scifact-mini","chunk_id":"4983","metadata":{…}}}
//! ```
//!
//! - `id`: UUIDv5 of `collection + "/" + chunk_id` in [`crate::input::POINT_ID_NAMESPACE`]
//!   (Qdrant accepts integers or UUIDs only); `payload.chunk_id` is the chunk's own id;
//! - `vector`: one entry per dense model, named as configured, then — only when the sparse
//!   stage ran — the sparse vector `{"indices": [...], "values": [...]}` (vocabulary ids
//!   ascending, weights > 0) under `sparse.name`;
//! - `payload.title`/`payload.text` appear only with `output.include_text = true`;
//! - `payload.metadata` is the chunk's metadata (omitted when empty);
//! - `payload.sparse_source` (`"splade"` or `"metadata"`, the flagged fallback) appears only
//!   when the point has a sparse vector.
//!
//! With the sparse stage off, no sparse key appears and the bytes equal a dense-only run's.
//!
//! Floats are written in their shortest round-trip form, so identical runs give identical bytes.

use crate::input::Chunk;
use crate::vectors::{SparseSource, SparseVector};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// # Ranked lists
///
/// `<collection>/rerank.jsonl`, one line per query (written when fusion or rerank runs):
///
/// ```text
/// {"query_id":"1","query_sha256":"9f2c…","source":"file","status":"ok","candidates":[{"chunk_id":"31715818","rank":1,"rerank_logit":3.19,"rerank_score":3.19,"fused_rank":2,"fused_score":0.0325,"dense_rank":1,"sparse_rank":4}]}
/// ```
///
/// - never the query text: its sha256 joins the line to the query;
/// - `source`: `file` or `probe` (probe queries also carry `target_chunk_id`);
/// - `status`: `ok` (reranked), `fused` (rerank off: the fused list) or `failed` (with `reason`;
///   the candidates are the fused list, without rerank scores — never invented ones);
/// - `candidates`: the top `rerank.top_k`, in final order; ranks are 1-based; `dense_rank` /
///   `sparse_rank` are absent when that list did not return the chunk;
/// - with several dense models, `dense_ranks` gives the rank in each model's list by vector
///   name (`{"minilm":1,"bge-small":3}`; a model whose list missed the chunk is absent) and
///   `dense_rank` is the first model's.
#[derive(Serialize)]
pub struct RankedLine<'a> {
    pub query_id: &'a str,
    pub query_sha256: &'a str,
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_chunk_id: Option<&'a str>,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub candidates: Vec<RankedCandidateLine<'a>>,
}

/// One candidate of a [`RankedLine`].
#[derive(Serialize)]
pub struct RankedCandidateLine<'a> {
    pub chunk_id: &'a str,
    pub rank: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_logit: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f32>,
    /// `rerank.blend`'s score, when it blends (the list is in its order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blend_score: Option<f64>,
    pub fused_rank: usize,
    pub fused_score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_rank: Option<usize>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dense_ranks: std::collections::BTreeMap<&'a str, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_rank: Option<usize>,
}

/// Version of the points/manifest schema.
pub const SCHEMA_VERSION: u32 = 2;

/// One line of `points.jsonl`: exactly Qdrant's point schema (`id`, `vector`, `payload`; its
/// client models forbid any other field).
#[derive(Serialize)]
pub struct PointLine<'a> {
    pub id: uuid::Uuid,
    pub vector: NamedVectors<'a>,
    pub payload: Payload<'a>,
}

/// One named vector: dense values, or a sparse `{"indices": [...], "values": [...]}`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(untagged)]
pub enum VectorRef<'a> {
    Dense(&'a [f32]),
    Sparse(&'a SparseVector),
}

/// Named vectors, serialized as a JSON object in the given order.
pub struct NamedVectors<'a>(pub Vec<(&'a str, VectorRef<'a>)>);

impl Serialize for NamedVectors<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, values) in &self.0 {
            map.serialize_entry(name, values)?;
        }
        map.end()
    }
}

/// The point payload: ids always, text only on request, metadata as given.
#[derive(Serialize)]
pub struct Payload<'a> {
    pub collection: &'a str,
    pub chunk_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: &'a serde_json::Map<String, serde_json::Value>,
    /// `splade` or `metadata`; present only when the sparse stage ran and gave a vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_source: Option<SparseSource>,
}

impl<'a> PointLine<'a> {
    pub fn new(
        collection: &'a str,
        chunk: &'a Chunk,
        vectors: Vec<(&'a str, VectorRef<'a>)>,
        include_text: bool,
        sparse_source: Option<SparseSource>,
    ) -> Self {
        Self {
            id: chunk.point_id,
            vector: NamedVectors(vectors),
            payload: Payload {
                collection,
                chunk_id: chunk.id.as_str(),
                title: chunk.title.as_deref().filter(|_| include_text),
                text: include_text.then_some(chunk.text.as_str()),
                metadata: &chunk.metadata,
                sparse_source,
            },
        }
    }
}

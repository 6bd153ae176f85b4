//! What ranking works on and produces: query sets and ranked lists. These types sit below both
//! the pipeline (which makes them) and the export (which writes them), so neither imports the
//! other.

pub mod blend;
pub mod budget;

use crate::fusion::FusedHit;
use crate::input::Query;
use crate::models::PairScore;
use crate::retrieval::Hit;
use serde::Serialize;

/// Where the queries came from.
#[derive(Clone, Debug, PartialEq)]
pub enum QuerySource {
    File(std::path::PathBuf),
    Probe,
}

/// The queries of one collection.
#[derive(Clone, Debug)]
pub struct QuerySet {
    pub source: QuerySource,
    pub queries: Vec<Query>,
    /// Probe mode: the id of the chunk each query was made from (its one right answer).
    pub targets: Option<Vec<String>>,
}

/// How a query ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryStatus {
    /// Reranked by the CrossEncoder.
    Ok,
    /// Rerank is off: the list is the fused one.
    Fused,
    /// Something could not be computed; `reason` says what. The list holds what is real.
    Failed,
}

/// One candidate of a query's final list.
#[derive(Clone, Debug)]
pub struct RankedCandidate {
    pub fused: FusedHit,
    pub rerank: Option<PairScore>,
    /// The score `rerank.blend` ordered it by (none for `replace`).
    pub blend_score: Option<f64>,
}

/// A query's outcome.
#[derive(Clone, Debug)]
pub struct RankedQuery {
    pub id: String,
    /// sha256 of the query text, so lists can be joined to queries without storing the text.
    pub text_sha256: String,
    pub status: QueryStatus,
    pub reason: Option<String>,
    /// Each dense model's hits (config order).
    pub dense: Vec<Vec<Hit>>,
    pub sparse: Option<Vec<Hit>>,
    /// The fused list, `fusion.depth` long at most.
    pub fused: Vec<FusedHit>,
    /// Final order: reranked candidates (all scored ones), else the fused list.
    pub ranked: Vec<RankedCandidate>,
}

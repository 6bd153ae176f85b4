//! The CrossEncoder scores of an earlier run's ranked pairs, keyed by the texts' hashes.

use super::{exact_f32s, unhex};
use crate::models::PairScore;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// An earlier run's CrossEncoder scores, by (sha256 of the query text, sha256 of the passage
/// text): a pair's score depends on nothing else once the model and its settings match.
#[derive(Debug, Default)]
pub struct PairScores {
    pub(super) scores: HashMap<([u8; 32], [u8; 32]), PairScore>,
}

impl PairScores {
    /// Scores keyed by (query text sha256, passage text sha256).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (([u8; 32], [u8; 32]), PairScore)>) -> Self {
        Self {
            scores: pairs.into_iter().collect(),
        }
    }

    /// The earlier score of this pair, if it was scored.
    pub fn get(&self, query_sha256: &[u8; 32], passage_sha256: &[u8; 32]) -> Option<PairScore> {
        self.scores.get(&(*query_sha256, *passage_sha256)).copied()
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

#[derive(Deserialize)]
pub(super) struct RankedLineIn<'a> {
    query_sha256: &'a str,
    status: &'a str,
    #[serde(borrow)]
    candidates: Vec<RankedCandidateIn<'a>>,
}

#[derive(Deserialize)]
pub(super) struct RankedCandidateIn<'a> {
    chunk_id: String,
    #[serde(borrow)]
    rerank_logit: Option<&'a RawValue>,
    #[serde(borrow)]
    rerank_score: Option<&'a RawValue>,
}

/// The reranked pairs of one `rerank.jsonl` line into `by_chunk`; a query that was not
/// reranked (`fused`, `failed`) has none.
pub(super) fn scored_pairs(
    line: &[u8],
    by_chunk: &mut HashMap<String, Vec<([u8; 32], PairScore)>>,
) -> Result<(), String> {
    let parsed: RankedLineIn = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    if parsed.status != "ok" {
        return Ok(());
    }
    let query = unhex(parsed.query_sha256).ok_or("query_sha256 is not a sha256")?;
    for candidate in parsed.candidates {
        let (Some(logit), Some(score)) = (candidate.rerank_logit, candidate.rerank_score) else {
            return Err(format!(
                "candidate {} of a reranked query has no rerank_logit or rerank_score",
                candidate.chunk_id
            ));
        };
        let score = PairScore {
            logit: exact_f32(logit.get())?,
            score: exact_f32(score.get())?,
        };
        by_chunk
            .entry(candidate.chunk_id)
            .or_default()
            .push((query, score));
    }
    Ok(())
}

/// One float written by this tool (shortest round-trip text) back to the same f32 bits.
pub(super) fn exact_f32(raw: &str) -> Result<f32, String> {
    match exact_f32s(&format!("[{}]", raw.trim()))?.as_slice() {
        [value] => Ok(*value),
        _ => Err("a score is not one number".to_string()),
    }
}

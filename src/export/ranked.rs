//! Writes `<collection>/rerank.jsonl` atomically (format: [`super::wire::RankedLine`]).

use super::atomic::AtomicFile;
use super::wire::{RankedCandidateLine, RankedLine};
use crate::input::Chunk;
use crate::pipeline::rank::{QuerySet, QueryStatus, RankedQuery};
use std::io::Write;
use std::path::Path;

/// One line per query, the top `top_k` candidates of each.
pub fn write_ranked(
    path: &Path,
    set: &QuerySet,
    queries: &[RankedQuery],
    chunks: &[Chunk],
    top_k: usize,
) -> std::io::Result<usize> {
    let mut file = AtomicFile::create(path)?;
    let source = match set.source {
        crate::pipeline::rank::QuerySource::File(_) => "file",
        crate::pipeline::rank::QuerySource::Probe => "probe",
    };
    for (position, query) in queries.iter().enumerate() {
        let target = set
            .targets
            .as_ref()
            .and_then(|targets| targets.get(position))
            .map(|&t| chunks[t].id.as_str());
        let line = RankedLine {
            query_id: &query.id,
            query_sha256: &query.text_sha256,
            source,
            target_chunk_id: target,
            status: match query.status {
                QueryStatus::Ok => "ok",
                QueryStatus::Fused => "fused",
                QueryStatus::Failed => "failed",
            },
            reason: query.reason.as_deref(),
            candidates: query
                .ranked
                .iter()
                .take(top_k)
                .enumerate()
                .map(|(i, c)| RankedCandidateLine {
                    chunk_id: chunks[c.fused.index].id.as_str(),
                    rank: i + 1,
                    rerank_logit: c.rerank.map(|s| s.logit),
                    rerank_score: c.rerank.map(|s| s.score),
                    fused_rank: c.fused.rank,
                    fused_score: c.fused.score,
                    dense_rank: c.fused.dense_rank,
                    sparse_rank: c.fused.sparse_rank,
                })
                .collect(),
        };
        serde_json::to_writer(&mut file, &line)?;
        file.write_all(b"\n")?;
    }
    file.commit()?;
    Ok(queries.len())
}

//! Writes `<collection>/rerank.jsonl` atomically (format: [`super::wire::RankedLine`]).

use super::atomic::AtomicFile;
use super::wire::{RankedCandidateLine, RankedLine};
use crate::ranking::{QuerySet, QuerySource, QueryStatus, RankedQuery};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line per query, the top `top_k` candidates of each; `ids[i]` is the chunk id of point `i`;
/// `dense_names`: the dense models' vector names (config order).
pub fn write_ranked(
    path: &Path,
    set: &QuerySet,
    queries: &[RankedQuery],
    ids: &[String],
    dense_names: &[&str],
    top_k: usize,
) -> std::io::Result<usize> {
    let mut file = AtomicFile::create(path)?;
    let source = match set.source {
        QuerySource::File(_) => "file",
        QuerySource::Probe => "probe",
    };
    for (position, query) in queries.iter().enumerate() {
        let target = set
            .targets
            .as_ref()
            .and_then(|targets| targets.get(position))
            .map(String::as_str);
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
                    chunk_id: ids.get(c.fused.index).map_or("", String::as_str),
                    rank: i + 1,
                    rerank_logit: c.rerank.map(|s| s.logit),
                    rerank_score: c.rerank.map(|s| s.score),
                    blend_score: c.blend_score,
                    fused_rank: c.fused.rank,
                    fused_score: c.fused.score,
                    dense_rank: c.fused.dense_rank,
                    dense_ranks: dense_names
                        .iter()
                        .zip(&c.fused.dense_ranks)
                        .filter_map(|(name, rank)| rank.map(|rank| (*name, rank)))
                        .collect(),
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

/// The rankings of an existing `rerank.jsonl`: per query id, the chunk ids in final order and
/// in fused order (of the candidates the file holds: its lists are cut at `rerank.top_k`).
#[derive(Debug, Default)]
pub struct RankedFile {
    pub final_order: std::collections::BTreeMap<String, Vec<String>>,
    pub fused_order: std::collections::BTreeMap<String, Vec<String>>,
    /// Longest candidate list in the file (the `top_k` the run used).
    pub depth: usize,
    pub failed_queries: usize,
}

/// Why a `rerank.jsonl` could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RankedReadError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", .path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Reads a `rerank.jsonl` back; errors name the file and line.
pub fn read_ranked(path: &Path) -> Result<RankedFile, RankedReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| RankedReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = RankedFile::default();
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |problem: String| RankedReadError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|err| at(format!("invalid JSON: {err}")))?;
        let query = value["query_id"]
            .as_str()
            .ok_or_else(|| at("missing query_id".to_string()))?
            .to_string();
        if value["status"] == "failed" {
            file.failed_queries += 1;
        }
        let mut candidates: Vec<(String, u64)> = value["candidates"]
            .as_array()
            .ok_or_else(|| at("missing candidates".to_string()))?
            .iter()
            .map(|c| {
                let id = c["chunk_id"]
                    .as_str()
                    .ok_or_else(|| at("candidate without chunk_id".to_string()))?;
                Ok((id.to_string(), c["fused_rank"].as_u64().unwrap_or(u64::MAX)))
            })
            .collect::<Result<_, RankedReadError>>()?;
        file.depth = file.depth.max(candidates.len());
        file.final_order.insert(
            query.clone(),
            candidates.iter().map(|(id, _)| id.clone()).collect(),
        );
        candidates.sort_by_key(|(_, fused)| *fused);
        file.fused_order
            .insert(query, candidates.into_iter().map(|(id, _)| id).collect());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rerank.jsonl");
        std::fs::write(
            &path,
            "{\"query_id\":\"q1\",\"status\":\"ok\",\"candidates\":[{\"chunk_id\":\"c\",\"fused_rank\":1}]}\n\
             {\"status\":\"ok\",\"candidates\":[]}\n",
        )
        .unwrap();
        let err = read_ranked(&path).unwrap_err();
        assert!(
            matches!(err, RankedReadError::Line { line: 2, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{}:2: missing query_id", path.display())
        );
        let missing = read_ranked(&dir.path().join("none.jsonl")).unwrap_err();
        assert!(
            matches!(missing, RankedReadError::Read { .. }),
            "{missing:?}"
        );
    }
}

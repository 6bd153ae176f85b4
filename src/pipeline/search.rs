//! Searching a collection's stored vectors for a set of queries (`fusion.retrieval`,
//! `fusion.retrieval_memory`):
//!
//! - the **scan** (default): one pass over the stored vectors in fixed-size blocks, each query
//!   keeping its best `fusion.depth` hits ([`crate::retrieval::scan`]). Memory is the blocks and
//!   the queries' heaps, independent of the collection; each stored byte is read once for all
//!   queries and all dense models. Its sparse side is the inverted index turned around (a term
//!   table over the queries), so it does the index's work without building one over the
//!   collection.
//! - the **index**: every stored vector memory-mapped (so paged in by the search) and an
//!   inverted index built over the sparse ones; memory grows with the collection (about
//!   [`RetrievalState::index_bytes`]), so it is used only while that fits the budget.
//!
//! Both give the same lists: the same scores, bit for bit, in the same order, so the choice
//! never changes an output byte; it is recorded in the manifest (`ranking.retrieval`). The
//! scan was as fast or faster at every size and query count measured (BENCHMARKS.md, "Ranking
//! memory"), which is why it is the default and `index` is there only on request.

use super::stored_vectors::RetrievalState;
use crate::config::{RetrievalMethod, RunConfig};
use crate::export::manifest::RetrievalReport;
use crate::retrieval::{DenseScan, Hit, SparseScan};
use crate::vectors::SparseVector;
use std::time::Instant;
use tracing::info;

/// The scan's dense block: whole rows up to this many bytes.
pub const SCAN_DENSE_BLOCK_BYTES: usize = 4 << 20;
/// The scan's sparse block, in stored entries (a term id and a weight, 8 bytes each).
pub const SCAN_SPARSE_BLOCK_ENTRIES: usize = 1 << 19;
/// Bytes of one kept hit in a query's heap.
const HIT_BYTES: u64 = std::mem::size_of::<Hit>() as u64;

/// How to search: `fusion.retrieval`, `fusion.retrieval_memory` and `fusion.depth`.
#[derive(Clone, Copy, Debug)]
pub struct SearchSettings {
    pub method: RetrievalMethod,
    pub memory_budget: u64,
    pub depth: usize,
}

impl SearchSettings {
    pub fn of(config: &RunConfig) -> Self {
        Self {
            method: config.fusion.retrieval,
            memory_budget: config.fusion.retrieval_memory.0,
            depth: config.fusion.depth,
        }
    }
}

/// Which method runs, and why: the one asked for, unless it is the index and the index would
/// not fit the budget.
pub fn choose(state: &RetrievalState, settings: SearchSettings) -> (RetrievalMethod, String) {
    let budget = settings.memory_budget;
    let index = state.index_bytes();
    match settings.method {
        RetrievalMethod::Scan => (RetrievalMethod::Scan, "fusion.retrieval = scan".into()),
        RetrievalMethod::Index if index > budget => (
            RetrievalMethod::Scan,
            format!(
                "fusion.retrieval = index, but the index would take {} MiB, over \
                 fusion.retrieval_memory ({} MiB)",
                mib(index),
                mib(budget)
            ),
        ),
        RetrievalMethod::Index => (
            RetrievalMethod::Index,
            format!(
                "fusion.retrieval = index; the index ({} MiB) fits fusion.retrieval_memory \
                 ({} MiB)",
                mib(index),
                mib(budget)
            ),
        ),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 20))
}

/// The lists retrieval found: `dense[model][query]` (config order; a model given no queries
/// has none) and, when sparse vectors were searched, `sparse[query]` (`None` for a query
/// without a vector).
pub struct Retrieved {
    pub dense: Vec<Vec<Vec<Hit>>>,
    pub sparse: Option<Vec<Option<Vec<Hit>>>>,
    pub report: RetrievalReport,
}

/// Searches the stored vectors: each dense model's column block for its queries (`dense[m]`,
/// config order) and, when sparse vectors were stored and `sparse` is given, the sparse ones;
/// the best `depth` of each, best first (ties by lower point index).
pub fn search(
    state: &RetrievalState,
    dense: &[&[Vec<f32>]],
    sparse: Option<&[Option<SparseVector>]>,
    settings: SearchSettings,
) -> std::io::Result<Retrieved> {
    let started = Instant::now();
    let depth = settings.depth;
    let queries = dense
        .iter()
        .map(|q| q.len())
        .chain(sparse.map(<[_]>::len))
        .max()
        .unwrap_or(0);
    let (method, reason) = choose(state, settings);
    let sparse = sparse.filter(|_| state.has_sparse());
    let (dense_hits, sparse_hits) = match method {
        RetrievalMethod::Index => {
            let mapped = state.map()?;
            let indexes = mapped.dense_indexes();
            let dense_hits = indexes
                .iter()
                .zip(dense)
                .map(|(index, queries)| index.search_many(queries, depth))
                .collect();
            let sparse_hits = match (sparse, mapped.sparse_index()) {
                (Some(vectors), Some(index)) => Some(
                    vectors
                        .iter()
                        .map(|v| v.as_ref().map(|v| index.search(v, depth)))
                        .collect(),
                ),
                _ => None,
            };
            (dense_hits, sparse_hits)
        }
        RetrievalMethod::Scan => {
            let lists: Vec<_> = state
                .dense_columns()
                .into_iter()
                .zip(dense.iter().copied())
                .collect();
            let mut scan = DenseScan::new(state.dense_width(), &lists, depth);
            state.scan_dense(SCAN_DENSE_BLOCK_BYTES, |rows| scan.add_block(rows))?;
            let dense_hits = scan.finish();
            let sparse_hits = match sparse {
                Some(vectors) => {
                    let refs: Vec<Option<&SparseVector>> =
                        vectors.iter().map(Option::as_ref).collect();
                    let mut scan = SparseScan::new(&refs, depth);
                    state.scan_sparse(SCAN_SPARSE_BLOCK_ENTRIES, |nnz, indices, values| {
                        scan.add_block(nnz, indices, values)
                    })?;
                    Some(scan.finish())
                }
                None => None,
            };
            (dense_hits, sparse_hits)
        }
    };
    let lists = dense.iter().filter(|q| !q.is_empty()).count() + usize::from(sparse.is_some());
    let report = RetrievalReport {
        method,
        reason,
        queries,
        points: state.ids.len(),
        index_bytes: state.index_bytes(),
        scan_bytes: SCAN_DENSE_BLOCK_BYTES as u64
            + 8 * SCAN_SPARSE_BLOCK_ENTRIES as u64
            + (queries * lists * depth) as u64 * HIT_BYTES,
        memory_budget_bytes: settings.memory_budget,
        seconds: started.elapsed().as_secs_f64(),
    };
    info!(
        method = ?report.method,
        queries,
        points = report.points,
        seconds = format!("{:.3}", report.seconds),
        "retrieval done"
    );
    Ok(Retrieved {
        dense: dense_hits,
        sparse: sparse_hits,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::store::CollectionStore;

    fn sv(terms: &[(u32, f32)]) -> SparseVector {
        SparseVector {
            indices: terms.iter().map(|t| t.0).collect(),
            values: terms.iter().map(|t| t.1).collect(),
        }
    }

    fn settings(method: RetrievalMethod, memory_budget: u64) -> SearchSettings {
        SearchSettings {
            method,
            memory_budget,
            depth: 2,
        }
    }

    #[test]
    fn the_index_runs_only_within_the_budget_and_both_methods_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = CollectionStore::open(tmp.path(), "fp", None).unwrap();
        let mut writer = store.window().unwrap();
        let points: [(&[f32], &[f32], Option<SparseVector>); 4] = [
            (
                &[1.0, 0.0],
                &[0.0, 1.0, 0.0],
                Some(sv(&[(1, 1.0), (5, 0.5)])),
            ),
            (&[0.0, 1.0], &[1.0, 0.0, 0.0], None),
            (&[0.5, 0.5], &[0.0, 0.0, 1.0], Some(sv(&[(5, 2.0)]))),
            (
                &[1.0, 0.0],
                &[0.0, 1.0, 0.0],
                Some(sv(&[(1, 1.0), (5, 0.5)])),
            ),
        ];
        for (i, (a, b, sparse)) in points.iter().enumerate() {
            writer
                .point(
                    b"p\n",
                    &[a, b],
                    Some(sparse.as_ref()),
                    i,
                    &format!("id{i}"),
                    "0",
                )
                .unwrap();
        }
        writer.commit(4, |_| {}).unwrap();
        let state = store.retrieval().unwrap();
        let index_bytes = state.index_bytes();
        assert!(index_bytes > 4 * 5 * 4, "at least the dense rows");

        let fits = choose(&state, settings(RetrievalMethod::Index, index_bytes));
        assert_eq!(fits.0, RetrievalMethod::Index, "{}", fits.1);
        let over = choose(&state, settings(RetrievalMethod::Index, index_bytes - 1));
        assert_eq!(over.0, RetrievalMethod::Scan);
        assert!(
            over.1.contains("over fusion.retrieval_memory"),
            "{}",
            over.1
        );
        let scan = choose(&state, settings(RetrievalMethod::Scan, u64::MAX));
        assert_eq!(
            scan,
            (RetrievalMethod::Scan, "fusion.retrieval = scan".to_string())
        );

        // The second model's query encoding "failed" (no queries); one query has no sparse
        // vector. Exact ties (points 0 and 3) go to the lower point.
        let first = vec![vec![1.0, 0.0], vec![0.2, 0.8]];
        let dense: [&[Vec<f32>]; 2] = [&first, &[]];
        let sparse = [Some(sv(&[(5, 1.0)])), None];
        let found = |method, budget| {
            search(&state, &dense, Some(&sparse), settings(method, budget)).unwrap()
        };
        let index = found(RetrievalMethod::Index, u64::MAX);
        let scanned = found(RetrievalMethod::Scan, u64::MAX);
        assert_eq!(index.report.method, RetrievalMethod::Index);
        assert_eq!(scanned.report.method, RetrievalMethod::Scan);
        assert_eq!(index.dense, scanned.dense);
        assert_eq!(index.sparse, scanned.sparse);
        let order = |hits: &[Hit]| hits.iter().map(|h| h.index).collect::<Vec<_>>();
        assert_eq!(order(&scanned.dense[0][0]), [0, 3]);
        assert!(scanned.dense[1].is_empty());
        let sparse_found = scanned.sparse.unwrap();
        assert_eq!(order(sparse_found[0].as_deref().unwrap()), [2, 0]);
        assert!(sparse_found[1].is_none());
        assert_eq!(scanned.report.points, 4);
        assert_eq!(scanned.report.queries, 2);
    }
}

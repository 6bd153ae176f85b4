//! Streaming retrieval: one pass over a collection's stored vectors, block by block, keeping
//! only each query's best `depth` hits in a bounded heap.
//!
//! Memory is the queries, their heaps and one block, whatever the size of the collection. The
//! results are those of [`DenseIndex::search`](super::DenseIndex::search) and
//! [`SparseIndex::search`](super::SparseIndex::search), bit for bit and in the same order: the
//! same scoring functions with the same summation order, and the same total ranking order
//! ([`rank_order`]) to keep the best `depth`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use rayon::prelude::*;

use super::{dot, rank_order, Hit, DIRECT_TERM_TABLE_MAX};
use crate::vectors::SparseVector;

/// Rows scored together against every query of a thread's share before the next rows: a tile
/// of 384-d rows this long stays in the core's L2 cache while the queries pass over it.
const DENSE_TILE_ROWS: usize = 64;

/// The best `depth` hits seen so far, in [`rank_order`].
#[derive(Clone, Debug)]
pub struct TopK {
    depth: usize,
    /// A max-heap under rank order: its top is the worst of the kept hits.
    heap: BinaryHeap<Ranked>,
}

/// A hit ordered by [`rank_order`] (a total order for distinct indices).
#[derive(Clone, Copy, Debug)]
struct Ranked(Hit);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        rank_order(&self.0, &other.0)
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl TopK {
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            heap: BinaryHeap::with_capacity(depth.min(1 << 16) + 1),
        }
    }

    /// Keeps `hit` if it ranks among the best `depth` so far.
    pub fn offer(&mut self, hit: Hit) {
        if self.heap.len() < self.depth {
            self.heap.push(Ranked(hit));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if rank_order(&hit, &worst.0) == Ordering::Less {
                *worst = Ranked(hit);
            }
        }
    }

    /// The kept hits, best first.
    pub fn into_hits(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// One (dense list, query) pair being searched.
struct DenseTask<'q> {
    /// The list's columns within a row.
    columns: Range<usize>,
    query: &'q [f32],
    best: TopK,
}

/// A streaming exact dense search of several lists (each a column block of the stored rows,
/// one per dense model) for their queries at once: every block of rows is read once for all of
/// them.
pub struct DenseScan<'q> {
    /// Floats per stored row.
    width: usize,
    tasks: Vec<DenseTask<'q>>,
    /// Queries per list, to split the results back.
    per_list: Vec<usize>,
    /// Rows scanned so far: the index of the next block's first row.
    rows_seen: usize,
}

impl<'q> DenseScan<'q> {
    /// `lists[l]` = (its columns within rows `width` floats wide, its queries). Columns are
    /// clipped to the row, as [`DenseIndex::columns`](super::DenseIndex::columns) does.
    pub fn new(width: usize, lists: &[(Range<usize>, &'q [Vec<f32>])], depth: usize) -> Self {
        let mut tasks = Vec::new();
        let mut per_list = Vec::new();
        for (columns, queries) in lists {
            let columns = columns.start.min(width)..columns.end.min(width);
            per_list.push(queries.len());
            for query in queries.iter() {
                // What the index answers with nothing: an empty query, list or depth.
                let active = !query.is_empty() && !columns.is_empty() && depth > 0;
                tasks.push(DenseTask {
                    columns: columns.clone(),
                    query,
                    best: TopK::new(if active { depth } else { 0 }),
                });
            }
        }
        Self {
            width,
            tasks,
            per_list,
            rows_seen: 0,
        }
    }

    /// Scores the next whole rows (`rows.len()` a multiple of the width; a trailing partial
    /// row is ignored).
    pub fn add_block(&mut self, rows: &[f32]) {
        let width = self.width;
        if width == 0 {
            return;
        }
        let whole = rows.len() / width * width;
        let rows = &rows[..whole];
        let first = self.rows_seen;
        let share = self
            .tasks
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(1);
        self.tasks.par_chunks_mut(share).for_each(|tasks| {
            for (tile_number, tile) in rows.chunks(DENSE_TILE_ROWS * width).enumerate() {
                let tile_first = first + tile_number * DENSE_TILE_ROWS;
                for task in tasks.iter_mut().filter(|t| t.best.depth > 0) {
                    let (start, end) = (task.columns.start, task.columns.end);
                    for (offset, row) in tile.chunks_exact(width).enumerate() {
                        task.best.offer(Hit {
                            index: tile_first + offset,
                            score: dot(task.query, &row[start..end]),
                        });
                    }
                }
            }
        });
        self.rows_seen += whole / width;
    }

    /// Each list's hits per query: `[list][query]`, best first.
    pub fn finish(self) -> Vec<Vec<Vec<Hit>>> {
        let mut tasks = self.tasks.into_iter();
        self.per_list
            .iter()
            .map(|&n| tasks.by_ref().take(n).map(|t| t.best.into_hits()).collect())
            .collect()
    }
}

/// Query term → the (query, weight) entries of the queries holding it.
enum TermTable {
    /// Indexed by term id: `offsets[t]..offsets[t + 1]` (SPLADE vocabularies are ~30k ids).
    Direct(Vec<u32>),
    Hashed(HashMap<u32, Range<u32>>),
}

impl TermTable {
    fn get(&self, term: u32) -> Range<usize> {
        match self {
            TermTable::Direct(offsets) => {
                let t = term as usize;
                match (offsets.get(t), offsets.get(t + 1)) {
                    (Some(&a), Some(&b)) => a as usize..b as usize,
                    _ => 0..0,
                }
            }
            TermTable::Hashed(map) => map
                .get(&term)
                .map_or(0..0, |r| r.start as usize..r.end as usize),
        }
    }
}

/// Whether term ids strictly ascend (each once): then summing a dot product in either
/// vector's order is summing it in the same order.
fn strictly_ascending(indices: &[u32]) -> bool {
    indices.windows(2).all(|w| w[0] < w[1])
}

/// One thread's share of the sparse queries, with its own term table and accumulators.
struct SparseGroup<'q> {
    /// Global query number of each local query.
    queries: Vec<usize>,
    vectors: Vec<&'q SparseVector>,
    /// Whether each query's terms strictly ascend.
    ascending: Vec<bool>,
    table: TermTable,
    /// (local query, weight), grouped by term.
    entries: Vec<(u32, f32)>,
    scores: Vec<f32>,
    seen: Vec<bool>,
    touched: Vec<u32>,
    best: Vec<TopK>,
}

impl<'q> SparseGroup<'q> {
    fn new(members: Vec<(usize, &'q SparseVector)>, depth: usize) -> Self {
        let mut postings: Vec<(u32, u32, f32)> = Vec::new();
        for (local, (_, vector)) in (0u32..).zip(&members) {
            for (&term, &weight) in vector.indices.iter().zip(&vector.values) {
                postings.push((term, local, weight));
            }
        }
        // By term, then query, then the query's own order (a stable sort keeps it).
        postings.sort_by_key(|&(term, local, _)| (term, local));
        let max_term = postings.last().map_or(0, |p| p.0);
        let entries: Vec<(u32, f32)> = postings.iter().map(|&(_, q, w)| (q, w)).collect();
        let table = if max_term <= DIRECT_TERM_TABLE_MAX {
            let mut offsets = vec![0u32; max_term as usize + 2];
            for &(term, _, _) in &postings {
                offsets[term as usize + 1] += 1;
            }
            for t in 1..offsets.len() {
                offsets[t] += offsets[t - 1];
            }
            TermTable::Direct(offsets)
        } else {
            let mut map: HashMap<u32, Range<u32>> = HashMap::new();
            for (at, &(term, _, _)) in (0u32..).zip(&postings) {
                map.entry(term)
                    .and_modify(|r| r.end = at + 1)
                    .or_insert(at..at + 1);
            }
            TermTable::Hashed(map)
        };
        let n = members.len();
        Self {
            ascending: members
                .iter()
                .map(|(_, v)| strictly_ascending(&v.indices))
                .collect(),
            queries: members.iter().map(|(q, _)| *q).collect(),
            vectors: members.into_iter().map(|(_, v)| v).collect(),
            table,
            entries,
            scores: vec![0.0; n],
            seen: vec![false; n],
            touched: Vec::new(),
            best: (0..n).map(|_| TopK::new(depth)).collect(),
        }
    }

    /// Scores each document of a block against this group's queries.
    fn scan(&mut self, docs: &[(usize, Range<usize>)], indices: &[u32], values: &[f32]) {
        for (doc, range) in docs {
            let (terms, weights) = (&indices[range.clone()], &values[range.clone()]);
            let doc_ascending = strictly_ascending(terms);
            for (&term, &weight) in terms.iter().zip(weights) {
                for &(local, query_weight) in &self.entries[self.table.get(term)] {
                    let q = local as usize;
                    if !self.seen[q] {
                        self.seen[q] = true;
                        self.touched.push(local);
                    }
                    self.scores[q] += query_weight * weight;
                }
            }
            for &local in &self.touched {
                let q = local as usize;
                let score = if doc_ascending && self.ascending[q] {
                    self.scores[q]
                } else {
                    // Repeated or unsorted ids: the inverted index's order (query terms in
                    // order, then the document's entries in order), so the score is its score.
                    let query = self.vectors[q];
                    let mut score = 0f32;
                    for (&qt, &qw) in query.indices.iter().zip(&query.values) {
                        for (&dt, &dw) in terms.iter().zip(weights) {
                            if dt == qt {
                                score += qw * dw;
                            }
                        }
                    }
                    score
                };
                self.best[q].offer(Hit { index: *doc, score });
                self.scores[q] = 0.0;
                self.seen[q] = false;
            }
            self.touched.clear();
        }
    }
}

/// A streaming exact sparse search: each stored vector is scored against every query sharing
/// one of its terms (through a term table over the queries, the inverted index turned around),
/// so the work is that of the inverted index without building one over the collection.
pub struct SparseScan<'q> {
    groups: Vec<SparseGroup<'q>>,
    /// Queries in all (`None` where a query has no vector).
    queries: Vec<Option<&'q SparseVector>>,
    docs_seen: usize,
}

impl<'q> SparseScan<'q> {
    pub fn new(queries: &[Option<&'q SparseVector>], depth: usize) -> Self {
        let active: Vec<(usize, &SparseVector)> = queries
            .iter()
            .enumerate()
            .filter_map(|(q, v)| v.filter(|v| !v.is_empty() && depth > 0).map(|v| (q, v)))
            .collect();
        let threads = rayon::current_num_threads().max(1);
        let share = active.len().div_ceil(threads).max(1);
        let groups = active
            .chunks(share)
            .map(|members| SparseGroup::new(members.to_vec(), depth))
            .collect();
        Self {
            groups,
            queries: queries.to_vec(),
            docs_seen: 0,
        }
    }

    /// Scores the next documents: `nnz[d]` entries of `indices`/`values` for each, in order;
    /// `None` for a document without a sparse vector (never returned).
    pub fn add_block(&mut self, nnz: &[Option<u32>], indices: &[u32], values: &[f32]) {
        let mut docs = Vec::with_capacity(nnz.len());
        let mut offset = 0usize;
        let limit = indices.len().min(values.len());
        for (d, n) in nnz.iter().enumerate() {
            if let Some(n) = n {
                let end = (offset + *n as usize).min(limit);
                docs.push((self.docs_seen + d, offset.min(end)..end));
                offset = end;
            }
        }
        self.groups
            .par_iter_mut()
            .for_each(|group| group.scan(&docs, indices, values));
        self.docs_seen += nnz.len();
    }

    /// Each query's hits, best first (`None` for a query without a vector; an empty list for
    /// one sharing no term with the collection).
    pub fn finish(self) -> Vec<Option<Vec<Hit>>> {
        let mut results: Vec<Option<Vec<Hit>>> =
            self.queries.iter().map(|q| q.map(|_| Vec::new())).collect();
        for group in self.groups {
            for (q, best) in group.queries.into_iter().zip(group.best) {
                if let Some(slot) = results.get_mut(q) {
                    *slot = Some(best.into_hits());
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Lcg;
    use super::super::{DenseIndex, SparseIndex};
    use super::*;

    fn bits(hits: &[Hit]) -> Vec<(usize, u32)> {
        hits.iter().map(|h| (h.index, h.score.to_bits())).collect()
    }

    #[test]
    fn top_k_keeps_the_best_in_rank_order_with_ties_by_index_and_nan_last() {
        let mut best = TopK::new(3);
        for (index, score) in [
            (0, 1.0),
            (1, f32::NAN),
            (2, 3.0),
            (3, 1.0),
            (4, 3.0),
            (5, 2.0),
        ] {
            best.offer(Hit { index, score });
        }
        let hits = best.into_hits();
        assert_eq!(
            bits(&hits),
            vec![
                (2, 3f32.to_bits()),
                (4, 3f32.to_bits()),
                (5, 2f32.to_bits())
            ]
        );
        let mut nan = TopK::new(2);
        nan.offer(Hit {
            index: 0,
            score: f32::NAN,
        });
        nan.offer(Hit {
            index: 1,
            score: -5.0,
        });
        assert_eq!(nan.into_hits()[0].index, 1);
        assert!(TopK::new(0).into_hits().is_empty());
    }

    #[test]
    fn dense_scan_in_any_blocks_equals_the_index_bit_for_bit() {
        let mut rng = Lcg(7);
        let (n, width) = (1000, 12);
        let rows: Vec<f32> = (0..n * width).map(|_| rng.coarse()).collect();
        let queries: Vec<Vec<f32>> = (0..9)
            .map(|q| {
                if q == 4 {
                    Vec::new()
                } else {
                    (0..8).map(|_| rng.coarse()).collect()
                }
            })
            .collect();
        let lists = [(0..8, &queries[..]), (8..20, &queries[..3])];
        for depth in [0, 1, 10, 2000] {
            for block_rows in [1, 7, 64, 1000] {
                let mut scan = DenseScan::new(width, &lists, depth);
                for block in rows.chunks(block_rows * width) {
                    scan.add_block(block);
                }
                let found = scan.finish();
                for ((columns, queries), found) in lists.iter().zip(&found) {
                    let index = DenseIndex::columns(&rows, width, columns.clone());
                    let expected = index.search_many(queries, depth);
                    assert_eq!(found.len(), expected.len());
                    for (f, e) in found.iter().zip(&expected) {
                        assert_eq!(bits(f), bits(e), "depth {depth}, blocks of {block_rows}");
                    }
                }
            }
        }
    }

    fn sparse(rng: &mut Lcg, terms: usize, vocab: u64) -> SparseVector {
        let weights = (0..terms)
            .map(|_| ((rng.next_u64() >> 33) % vocab, rng.coarse().abs() + 0.25))
            .map(|(t, w)| (t as u32, w))
            .collect();
        SparseVector::from_weights(weights, None)
    }

    #[test]
    fn sparse_scan_in_any_blocks_equals_the_inverted_index_bit_for_bit() {
        let mut rng = Lcg(11);
        let mut docs: Vec<Option<SparseVector>> = (0..600)
            .map(|d| (d % 13 != 0).then(|| sparse(&mut rng, 1 + d % 9, 40)))
            .collect();
        // Repeated and unsorted ids, and large ids (the hashed table).
        docs[5] = Some(SparseVector {
            indices: vec![7, 3, 7],
            values: vec![0.5, 0.25, 0.75],
        });
        docs[6] = Some(SparseVector {
            indices: vec![3_000_000_000, 3],
            values: vec![1.0, 0.5],
        });
        docs[7] = Some(SparseVector::default());
        let mut queries: Vec<Option<SparseVector>> =
            (0..11).map(|_| Some(sparse(&mut rng, 4, 40))).collect();
        queries[2] = None;
        queries[3] = Some(SparseVector::default());
        queries[4] = Some(SparseVector {
            indices: vec![7, 3, 7, 3_000_000_000],
            values: vec![0.5, 1.0, 0.25, 2.0],
        });
        queries[5] = Some(SparseVector {
            indices: vec![1000],
            values: vec![1.0],
        });
        let refs: Vec<Option<&SparseVector>> = docs.iter().map(Option::as_ref).collect();
        let index = SparseIndex::new(&refs);
        let query_refs: Vec<Option<&SparseVector>> = queries.iter().map(Option::as_ref).collect();
        for depth in [0, 1, 10, 1000] {
            for block_docs in [1, 5, 97, 600] {
                let mut scan = SparseScan::new(&query_refs, depth);
                for block in refs.chunks(block_docs) {
                    let nnz: Vec<Option<u32>> =
                        block.iter().map(|v| v.map(|v| v.len() as u32)).collect();
                    let indices: Vec<u32> = block
                        .iter()
                        .flatten()
                        .flat_map(|v| v.indices.clone())
                        .collect();
                    let values: Vec<f32> = block
                        .iter()
                        .flatten()
                        .flat_map(|v| v.values.clone())
                        .collect();
                    scan.add_block(&nnz, &indices, &values);
                }
                let found = scan.finish();
                for (q, (found, query)) in found.iter().zip(&queries).enumerate() {
                    match query {
                        None => assert!(found.is_none()),
                        Some(query) => {
                            let expected = index.search(query, depth);
                            let found = found.as_deref().unwrap_or_default();
                            assert_eq!(
                                bits(found),
                                bits(&expected),
                                "query {q}, depth {depth}, blocks of {block_docs}"
                            );
                        }
                    }
                }
            }
        }
    }
}

//! Exact retrieval over one collection's vectors: brute-force inner product for dense vectors and
//! an inverted index for sparse (SPLADE) vectors.
//!
//! Collections are at most a few hundred thousand chunks, so there is no approximate index: every
//! search is exact and deterministic. Results are ranked by score descending, ties broken by the
//! lower chunk index, and a NaN score never ranks above a finite one (NaNs go last, among
//! themselves by index). Top-k selection is `select_nth_unstable` over the candidates followed by
//! a sort of the `depth` survivors, never a sort of the whole collection.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;
use serde::Serialize;

use crate::vectors::SparseVector;

pub mod scan;

pub use scan::{DenseScan, SparseScan, TopK};

/// Dense collections with at least this many vectors are scored in parallel with rayon; smaller
/// ones on the calling thread (the split costs more than it saves there).
pub const PARALLEL_MIN_DOCS: usize = 4096;

/// One retrieved chunk: its index in the collection and its similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// Chunk index in the collection (the position in the slice the index was built from).
    pub index: usize,
    pub score: f32,
}

/// The ranking order of hits: higher score first, NaN last, ties by lower index.
///
/// `Ordering::Less` means `a` ranks before `b`. A total order as long as indices are unique.
pub fn rank_order(a: &Hit, b: &Hit) -> Ordering {
    score_desc(a.score, b.score).then(a.index.cmp(&b.index))
}

/// Descending order of scores with NaN after every number (and NaNs equal among themselves).
fn score_desc(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// The best `depth` hits in rank order, without sorting all of them.
fn top_k(mut hits: Vec<Hit>, depth: usize) -> Vec<Hit> {
    if depth == 0 {
        return Vec::new();
    }
    if depth < hits.len() {
        hits.select_nth_unstable_by(depth - 1, rank_order);
        hits.truncate(depth);
        // The candidates were the whole collection: a list kept per query must not keep their
        // capacity (1,000 queries over 60,000 chunks held 2 GB so).
        hits.shrink_to_fit();
    }
    hits.sort_unstable_by(rank_order);
    hits
}

/// Inner product over the shared prefix of `a` and `b` (the whole vectors when the dimensions
/// agree), with eight independent accumulators so the loop vectorises. The summation order is
/// fixed, so a score does not depend on threading.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (xs, ys) in chunks_a.zip(chunks_b) {
        for ((s, x), y) in acc.iter_mut().zip(xs).zip(ys) {
            *s += x * y;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Exact dense search over a borrowed row-major matrix (`rows.len() / dim` vectors of `dim`
/// floats): the compact form the run keeps, in memory or memory-mapped from its work directory.
///
/// Queries of another length are scored over the shared prefix; callers validate against
/// [`DenseIndex::dim`] where that matters.
#[derive(Clone, Copy, Debug)]
pub struct DenseIndex<'a> {
    rows: &'a [f32],
    /// Floats per row.
    width: usize,
    /// The vectors are `row[start..start + dim]`.
    start: usize,
    dim: usize,
}

impl<'a> DenseIndex<'a> {
    /// `rows` holds whole vectors of `dim` floats; a trailing partial row is ignored.
    pub fn new(rows: &'a [f32], dim: usize) -> Self {
        Self::columns(rows, dim, 0..dim)
    }

    /// Vectors that are the `columns` of rows `width` floats wide (several models' vectors
    /// stored side by side); a trailing partial row is ignored.
    pub fn columns(rows: &'a [f32], width: usize, columns: std::ops::Range<usize>) -> Self {
        let whole = rows.len().checked_div(width).unwrap_or(0) * width;
        let columns = columns.start.min(width)..columns.end.min(width);
        Self {
            rows: &rows[..whole],
            width,
            start: columns.start,
            dim: columns.len(),
        }
    }

    /// Number of indexed vectors (chunks).
    pub fn len(&self) -> usize {
        if self.dim == 0 {
            return 0;
        }
        self.rows.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vectors' dimension; `None` for an empty collection.
    pub fn dim(&self) -> Option<usize> {
        (!self.is_empty()).then_some(self.dim)
    }

    /// The `depth` chunks with the highest inner product with `query`, best first (ties by lower
    /// index, NaN last). Empty when `depth` is 0, the query is empty or the collection is.
    pub fn search(&self, query: &[f32], depth: usize) -> Vec<Hit> {
        if depth == 0 || query.is_empty() || self.is_empty() {
            return Vec::new();
        }
        let (start, end) = (self.start, self.start + self.dim);
        let score = |(index, row): (usize, &[f32])| Hit {
            index,
            score: dot(query, &row[start..end]),
        };
        let hits: Vec<Hit> = if self.len() >= PARALLEL_MIN_DOCS {
            self.rows
                .par_chunks_exact(self.width)
                .enumerate()
                .map(score)
                .collect()
        } else {
            self.rows
                .chunks_exact(self.width)
                .enumerate()
                .map(score)
                .collect()
        };
        top_k(hits, depth)
    }

    /// [`DenseIndex::search`] for each query, in parallel over queries; results in query order.
    pub fn search_many(&self, queries: &[Vec<f32>], depth: usize) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .map(|query| self.search(query, depth))
            .collect()
    }
}

/// An inverted index over a collection's sparse vectors: term id → postings (chunk index, weight).
///
/// Postings are stored column-wise (chunk indices as `u32`, weights as `f32`) in one contiguous
/// block per term, terms sorted for binary search. Chunks beyond `u32::MAX` are not indexed.
#[derive(Clone, Debug, Default)]
pub struct SparseIndex {
    /// Length of the slice the index was built from (bounds every chunk index).
    slots: usize,
    /// Number of chunks that had a sparse vector.
    docs: usize,
    /// Distinct term ids, ascending.
    terms: Vec<u32>,
    /// `offsets[t]..offsets[t + 1]` is the postings range of `terms[t]`.
    offsets: Vec<usize>,
    posting_docs: Vec<u32>,
    posting_weights: Vec<f32>,
}

impl SparseIndex {
    /// Builds the index; entry `i` of `vectors` is chunk `i`, `None` for a chunk without a sparse
    /// vector (it is never returned). Within each term, postings are in ascending chunk order.
    pub fn new(vectors: &[Option<&SparseVector>]) -> Self {
        Self::build(vectors.len(), || {
            (0..=u32::MAX)
                .zip(vectors)
                .filter_map(|(doc, vector)| vector.map(|v| (doc, (&v.indices[..], &v.values[..]))))
        })
    }

    /// Builds the index from a source that can be walked several times (three passes: count,
    /// place, fill), so postings can come straight from the run's compact on-disk vectors
    /// without a second in-memory copy. Each item is (chunk index < `slots`, term ids, weights),
    /// chunk indices ascending.
    pub fn build<'v, I, F>(chunk_slots: usize, source: F) -> Self
    where
        F: Fn() -> I,
        I: Iterator<Item = (u32, (&'v [u32], &'v [f32]))>,
    {
        let indexed = &source;
        let mut docs = 0usize;
        let mut max_term = 0u32;
        for (_, (indices, _)) in indexed() {
            docs += 1;
            max_term = indices.iter().copied().fold(max_term, u32::max);
        }

        // Per term: first the posting count, then the next free slot of its postings block.
        let mut slots = TermSlots::new(max_term);
        for (_, (indices, values)) in indexed() {
            for &term in indices.iter().take(values.len()) {
                if let Some(count) = slots.get_or_insert(term) {
                    *count += 1;
                }
            }
        }

        let mut terms = slots.terms();
        terms.sort_unstable();
        let mut offsets = Vec::with_capacity(terms.len() + 1);
        let mut total = 0usize;
        offsets.push(0);
        for &term in &terms {
            if let Some(count) = slots.get_mut(term) {
                let start = total;
                total += *count;
                *count = start;
            }
            offsets.push(total);
        }

        let mut posting_docs = vec![0u32; total];
        let mut posting_weights = vec![0f32; total];
        for (doc, (indices, values)) in indexed() {
            for (&term, &weight) in indices.iter().zip(values) {
                if let Some(cursor) = slots.get_mut(term) {
                    if let (Some(d), Some(w)) = (
                        posting_docs.get_mut(*cursor),
                        posting_weights.get_mut(*cursor),
                    ) {
                        *d = doc;
                        *w = weight;
                    }
                    *cursor += 1;
                }
            }
        }

        Self {
            slots: chunk_slots,
            docs,
            terms,
            offsets,
            posting_docs,
            posting_weights,
        }
    }

    /// Number of indexed chunks (those that had a sparse vector, empty ones included).
    pub fn len(&self) -> usize {
        self.docs
    }

    pub fn is_empty(&self) -> bool {
        self.docs == 0
    }

    /// Number of distinct term ids in the index.
    pub fn num_terms(&self) -> usize {
        self.terms.len()
    }

    /// Total number of postings (sum of the indexed vectors' lengths).
    pub fn num_postings(&self) -> usize {
        self.posting_docs.len()
    }

    fn postings(&self, term: u32) -> Option<Range<usize>> {
        let slot = self.terms.binary_search(&term).ok()?;
        Some(*self.offsets.get(slot)?..*self.offsets.get(slot + 1)?)
    }

    /// The `depth` chunks with the highest dot product with `query`, best first (ties by lower
    /// index, NaN last). Only chunks sharing at least one term with the query are candidates, so
    /// an empty query, or one sharing no term with the collection, gives an empty result.
    pub fn search(&self, query: &SparseVector, depth: usize) -> Vec<Hit> {
        if depth == 0 || query.is_empty() || self.posting_docs.is_empty() {
            return Vec::new();
        }
        let mut scores = vec![0f32; self.slots];
        let mut seen = vec![false; self.slots];
        let mut touched: Vec<usize> = Vec::new();
        // Query terms in their stored (ascending) order and postings in chunk order: the
        // accumulation order, and so every score, is fixed.
        for (&term, &query_weight) in query.indices.iter().zip(&query.values) {
            let Some(range) = self.postings(term) else {
                continue;
            };
            let docs = &self.posting_docs[range.clone()];
            let weights = &self.posting_weights[range];
            for (&doc, &weight) in docs.iter().zip(weights) {
                let doc = doc as usize;
                if let (Some(score), Some(seen)) = (scores.get_mut(doc), seen.get_mut(doc)) {
                    if !*seen {
                        *seen = true;
                        touched.push(doc);
                    }
                    *score += query_weight * weight;
                }
            }
        }
        let hits = touched
            .into_iter()
            .map(|index| Hit {
                index,
                score: scores[index],
            })
            .collect();
        top_k(hits, depth)
    }

    /// [`SparseIndex::search`] for each query, in parallel over queries; results in query order.
    pub fn search_many(&self, queries: &[SparseVector], depth: usize) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .map(|query| self.search(query, depth))
            .collect()
    }
}

/// Term ids up to this bound get a directly indexed table while building a [`SparseIndex`]
/// (SPLADE vocabularies are ~30k); larger ids fall back to a hash map.
pub(crate) const DIRECT_TERM_TABLE_MAX: u32 = 1 << 21;

/// A per-term counter while building a [`SparseIndex`].
enum TermSlots {
    /// Indexed by term id; `usize::MAX` marks an unused id.
    Direct(Vec<usize>),
    Hashed(HashMap<u32, usize>),
}

impl TermSlots {
    fn new(max_term: u32) -> Self {
        if max_term <= DIRECT_TERM_TABLE_MAX {
            TermSlots::Direct(vec![usize::MAX; max_term as usize + 1])
        } else {
            TermSlots::Hashed(HashMap::new())
        }
    }

    fn get_or_insert(&mut self, term: u32) -> Option<&mut usize> {
        match self {
            TermSlots::Direct(table) => {
                let slot = table.get_mut(term as usize)?;
                if *slot == usize::MAX {
                    *slot = 0;
                }
                Some(slot)
            }
            TermSlots::Hashed(map) => Some(map.entry(term).or_insert(0)),
        }
    }

    fn get_mut(&mut self, term: u32) -> Option<&mut usize> {
        match self {
            TermSlots::Direct(table) => table.get_mut(term as usize).filter(|s| **s != usize::MAX),
            TermSlots::Hashed(map) => map.get_mut(&term),
        }
    }

    /// The terms seen, in no particular order.
    fn terms(&self) -> Vec<u32> {
        match self {
            TermSlots::Direct(table) => (0..=u32::MAX)
                .zip(table)
                .filter(|(_, slot)| **slot != usize::MAX)
                .map(|(term, _)| term)
                .collect(),
            TermSlots::Hashed(map) => map.keys().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major copy of equal-length vectors.
    fn flatten(vectors: &[Vec<f32>]) -> (Vec<f32>, usize) {
        let dim = vectors.first().map_or(0, Vec::len);
        (vectors.iter().flatten().copied().collect(), dim)
    }

    fn sv(terms: &[(u32, f32)]) -> SparseVector {
        SparseVector {
            indices: terms.iter().map(|t| t.0).collect(),
            values: terms.iter().map(|t| t.1).collect(),
        }
    }

    fn indices(hits: &[Hit]) -> Vec<usize> {
        hits.iter().map(|h| h.index).collect()
    }

    /// Tiny deterministic LCG (Numerical Recipes constants).
    pub(super) struct Lcg(pub(super) u64);

    impl Lcg {
        pub(super) fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }

        /// Uniform in [-1, 1).
        pub(super) fn next_f32(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }

        /// One of five values, so that scores tie often.
        pub(super) fn coarse(&mut self) -> f32 {
            ((self.next_u64() >> 33) % 5) as f32 * 0.25 - 0.5
        }
    }

    fn random_collection(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.next_f32()).collect())
            .collect()
    }

    fn brute_force(vectors: &[Vec<f32>], query: &[f32], depth: usize) -> Vec<Hit> {
        let mut all: Vec<Hit> = vectors
            .iter()
            .enumerate()
            .map(|(index, v)| Hit {
                index,
                score: dot(query, v),
            })
            .collect();
        all.sort_by(rank_order);
        all.truncate(depth);
        all
    }

    #[test]
    fn dot_matches_naive_sum() {
        let v = random_collection(7, 2, 37);
        let naive: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
        assert!((dot(&v[0], &v[1]) - naive).abs() < 1e-5);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn dense_known_ranking() {
        let vectors = vec![
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.75, 0.75],
            vec![-1.0, 0.0],
        ];
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        assert_eq!(index.len(), 4);
        assert_eq!(index.dim(), Some(2));
        let hits = index.search(&[1.0, 0.5], 3);
        assert_eq!(indices(&hits), vec![2, 0, 1]);
        assert_eq!(hits[0].score, 1.125);
        assert_eq!(hits[1].score, 1.0);
        assert_eq!(hits[2].score, 0.5);
    }

    #[test]
    fn dense_ties_go_to_lower_index() {
        let vectors = vec![
            vec![0.0, 1.0],
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![0.5, 0.0],
            vec![1.0, 0.0],
        ];
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        assert_eq!(indices(&index.search(&[1.0, 0.0], 2)), vec![1, 2]);
        assert_eq!(indices(&index.search(&[1.0, 0.0], 5)), vec![1, 2, 4, 3, 0]);
    }

    #[test]
    fn dense_depth_beyond_collection_and_empty_cases() {
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        assert_eq!(indices(&index.search(&[0.0, 1.0], 10)), vec![1, 0]);
        assert!(index.search(&[0.0, 1.0], 0).is_empty());
        assert!(index.search(&[], 10).is_empty());
        let none: Vec<Vec<f32>> = Vec::new();
        let (rows, dim) = flatten(&none);
        let empty = DenseIndex::new(&rows, dim);
        assert!(empty.is_empty());
        assert_eq!(empty.dim(), None);
        assert!(empty.search(&[1.0], 5).is_empty());
    }

    #[test]
    fn dense_nan_never_above_finite() {
        let vectors = vec![vec![f32::NAN], vec![-5.0], vec![f32::NAN], vec![1.0]];
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        let hits = index.search(&[1.0], 4);
        assert_eq!(indices(&hits), vec![3, 1, 0, 2]);
        assert_eq!(indices(&index.search(&[1.0], 2)), vec![3, 1]);
    }

    #[test]
    fn dense_agrees_with_brute_force_sort() {
        let vectors = random_collection(42, 500, 16);
        let queries = random_collection(4242, 8, 16);
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        for depth in [1, 10, 100, 500, 600] {
            let many = index.search_many(&queries, depth);
            assert_eq!(many.len(), queries.len());
            for (query, hits) in queries.iter().zip(&many) {
                let expected = brute_force(&vectors, query, depth);
                assert_eq!(hits, &expected);
                assert_eq!(hits, &index.search(query, depth));
            }
        }
    }

    #[test]
    fn dense_parallel_path_agrees_with_brute_force() {
        let vectors = random_collection(9, PARALLEL_MIN_DOCS + 123, 8);
        let query = random_collection(10, 1, 8).remove(0);
        let (rows, dim) = flatten(&vectors);
        let index = DenseIndex::new(&rows, dim);
        assert_eq!(index.search(&query, 25), brute_force(&vectors, &query, 25));
    }

    #[test]
    fn sparse_known_ranking_and_missing_chunks() {
        let a = sv(&[(1, 1.0), (5, 2.0)]);
        let b = sv(&[(2, 3.0)]);
        let c = sv(&[(1, 0.5), (2, 1.0), (9, 4.0)]);
        let d = sv(&[(7, 1.0)]);
        // Chunk 1 has no sparse vector; chunk 4 has one sharing nothing with the query.
        let vectors = vec![Some(&a), None, Some(&b), Some(&c), Some(&d)];
        let index = SparseIndex::new(&vectors);
        assert_eq!(index.len(), 4);
        assert!(!index.is_empty());
        assert_eq!(index.num_terms(), 5);
        assert_eq!(index.num_postings(), 7);

        let query = sv(&[(1, 2.0), (2, 1.0), (5, 0.5)]);
        let hits = index.search(&query, 10);
        // a: 2*1 + 0.5*2 = 3; b: 3; c: 2*0.5 + 1 = 2. Tie a/b → lower index first.
        assert_eq!(
            hits,
            vec![
                Hit {
                    index: 0,
                    score: 3.0
                },
                Hit {
                    index: 2,
                    score: 3.0
                },
                Hit {
                    index: 3,
                    score: 2.0
                },
            ]
        );
        assert_eq!(indices(&index.search(&query, 2)), vec![0, 2]);
        assert!(!indices(&hits).contains(&1));
        assert!(!indices(&hits).contains(&4));
    }

    #[test]
    fn sparse_large_term_ids_use_the_hashed_table() {
        let big = DIRECT_TERM_TABLE_MAX + 1;
        let a = sv(&[(3, 1.0), (big, 2.0)]);
        let b = sv(&[(big, 1.0), (u32::MAX, 5.0)]);
        let index = SparseIndex::new(&[Some(&a), Some(&b)]);
        assert_eq!(index.num_terms(), 3);
        assert_eq!(index.num_postings(), 4);
        let hits = index.search(&sv(&[(3, 1.0), (big, 1.0), (u32::MAX, 1.0)]), 10);
        assert_eq!(
            hits,
            vec![
                Hit {
                    index: 1,
                    score: 6.0
                },
                Hit {
                    index: 0,
                    score: 3.0
                }
            ]
        );
    }

    #[test]
    fn sparse_chunk_without_vector_never_returned() {
        let a = sv(&[(3, 1.0)]);
        let vectors = vec![None, Some(&a), None];
        let index = SparseIndex::new(&vectors);
        assert_eq!(index.len(), 1);
        for query in [sv(&[(3, 1.0)]), sv(&[(0, 1.0), (3, 2.0), (100, 1.0)])] {
            assert_eq!(indices(&index.search(&query, 10)), vec![1]);
        }
    }

    #[test]
    fn sparse_empty_cases() {
        let a = sv(&[(3, 1.0)]);
        let index = SparseIndex::new(&[Some(&a)]);
        assert!(index.search(&SparseVector::default(), 10).is_empty());
        assert!(index.search(&sv(&[(4, 1.0)]), 10).is_empty());
        assert!(index.search(&sv(&[(3, 1.0)]), 0).is_empty());

        let empty = SparseIndex::new(&[None, None]);
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(empty.search(&sv(&[(3, 1.0)]), 10).is_empty());
        assert!(SparseIndex::new(&[]).is_empty());
    }

    #[test]
    fn sparse_agrees_with_brute_force_and_search_many() {
        let mut rng = Lcg(123);
        let term = |rng: &mut Lcg| ((rng.next_f32() + 1.0) * 20.0) as u32;
        let make = |rng: &mut Lcg| {
            let mut terms: Vec<(u32, f32)> = (0..6)
                .map(|_| (term(rng), rng.next_f32().abs() + 0.01))
                .collect();
            terms.sort_by_key(|t| t.0);
            terms.dedup_by_key(|t| t.0);
            sv(&terms)
        };
        let docs: Vec<Option<SparseVector>> = (0..300)
            .map(|i| (i % 7 != 0).then(|| make(&mut rng)))
            .collect();
        let queries: Vec<SparseVector> = (0..10).map(|_| make(&mut rng)).collect();
        let refs: Vec<Option<&SparseVector>> = docs.iter().map(Option::as_ref).collect();
        let index = SparseIndex::new(&refs);
        let many = index.search_many(&queries, 20);
        for (query, hits) in queries.iter().zip(&many) {
            let mut expected: Vec<Hit> = Vec::new();
            for (i, doc) in docs.iter().enumerate() {
                let Some(doc) = doc else { continue };
                let mut score = 0.0f32;
                let mut shared = false;
                for (t, qw) in query.indices.iter().zip(&query.values) {
                    if let Ok(p) = doc.indices.binary_search(t) {
                        shared = true;
                        score += qw * doc.values[p];
                    }
                }
                if shared {
                    expected.push(Hit { index: i, score });
                }
            }
            expected.sort_by(rank_order);
            expected.truncate(20);
            assert_eq!(indices(hits), indices(&expected));
            for (h, e) in hits.iter().zip(&expected) {
                assert!((h.score - e.score).abs() < 1e-5);
                assert!(h.index % 7 != 0);
            }
        }
    }
}

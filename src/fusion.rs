//! Fusion of one query's hit lists (one per dense model, and the sparse one) into a single
//! ranking.
//!
//! Two methods:
//!
//! - **Reciprocal rank fusion** (Cormack, Clarke & Büttcher, SIGIR 2009):
//!   `RRF(d) = Σ_lists weight / (k + rank_list(d))` with **1-based** ranks and, by default,
//!   **k = 60** ([`DEFAULT_RRF_K`]), the constant of the paper (also Elasticsearch's default
//!   `rank_constant`). A document missing from a list contributes nothing for that list. Only
//!   ranks matter, so lists on incomparable score scales fuse without calibration.
//! - **Convex combination**: each list's scores are min-max normalised to `[0, 1]` over the hits
//!   that list returned (`(s − min) / (max − min)`; every hit gets 1.0 when `max == min`), then
//!   `fused(d) = Σ_lists weight · normalised_list(d)`, a missing document counting 0.
//!
//! Both sort by fused score descending, ties broken by the lower chunk index, NaN last, so the
//! result is deterministic.
//!
//! Other conventions give other scores. Qdrant's RRF uses k = 2 with **0-based** positions,
//! `1 / (k + position)`, i.e. `1 / (1 + rank)` in our 1-based terms: its scores are much larger
//! than ours and weigh the head of each list far more heavily, so a fused order is often similar
//! but not guaranteed identical, and scores are never comparable across the two. Compare ranks,
//! not scores, with fusion done elsewhere.
//!
//! Conventions where the literature is silent:
//! - A chunk index repeated within one list counts once, at its first (best) position; later
//!   repeats are ignored by both methods and by the per-list rank/score columns of [`FusedHit`].
//! - Convex combination normalises over the *finite* scores of a list; a NaN or infinite score
//!   normalises to 0.0.
//! - `k` is not validated: callers keep it positive (`k <= -1` divides by zero or flips signs).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::retrieval::Hit;

/// The RRF constant of Cormack et al., used with 1-based ranks.
pub const DEFAULT_RRF_K: f64 = 60.0;

/// How [`fuse`] combines the dense and sparse lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Reciprocal rank fusion.
    #[default]
    Rrf,
    /// Weighted sum of min-max-normalised scores.
    Convex,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rrf => "rrf",
            Method::Convex => "convex",
        }
    }
}

/// One document of a fused ranking, with where it stood in each input list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FusedHit {
    /// Chunk index in the collection.
    pub index: usize,
    /// Final fused rank, 1-based.
    pub rank: usize,
    /// Fused score (RRF or convex, per the method).
    pub score: f64,
    /// Rank in the (primary) dense list, 1-based; `None` when the dense list did not return it.
    pub dense_rank: Option<usize>,
    /// Rank in each dense list (config order; the first is `dense_rank`), when there are
    /// several.
    pub dense_ranks: Vec<Option<usize>>,
    /// Rank in the sparse list, 1-based; `None` when absent or there was no sparse list.
    pub sparse_rank: Option<usize>,
    pub dense_score: Option<f32>,
    pub sparse_score: Option<f32>,
}

/// Descending order of scores with NaN after every number.
fn score_desc(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// The hits of a list with their 0-based positions, each chunk index only at its first position.
fn first_occurrences(list: &[Hit]) -> impl Iterator<Item = (usize, &Hit)> {
    let mut seen = HashSet::with_capacity(list.len());
    list.iter()
        .enumerate()
        .filter(move |(_, hit)| seen.insert(hit.index))
}

/// Sums per-document contributions over the lists (in list order, so sums are reproducible) and
/// sorts by score descending, ties by lower index.
fn accumulate<'a, F, I>(lists: &[(&'a [Hit], f64)], mut contributions: F) -> Vec<(usize, f64)>
where
    F: FnMut(&'a [Hit], f64) -> I,
    I: Iterator<Item = (usize, f64)>,
{
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for &(list, weight) in lists {
        for (index, contribution) in contributions(list, weight) {
            *scores.entry(index).or_insert(0.0) += contribution;
        }
    }
    let mut fused: Vec<(usize, f64)> = scores.into_iter().collect();
    fused.sort_unstable_by(|a, b| score_desc(a.1, b.1).then(a.0.cmp(&b.0)));
    fused
}

/// Reciprocal rank fusion: `Σ weight / (k + rank)` over the lists containing each document,
/// ranks 1-based within each list. Every document of any list appears once, best first (ties by
/// lower index).
pub fn reciprocal_rank_fusion(lists: &[(&[Hit], f64)], k: f64) -> Vec<(usize, f64)> {
    accumulate(lists, |list, weight| {
        first_occurrences(list).map(move |(position, hit)| {
            let rank = (position + 1) as f64;
            (hit.index, weight / (k + rank))
        })
    })
}

/// Convex combination of per-list min-max-normalised scores: `Σ weight · (s − min) / (max − min)`
/// (1.0 for every hit of a list whose scores are all equal; 0 for a list a document is missing
/// from). Every document of any list appears once, best first (ties by lower index).
pub fn convex_combination(lists: &[(&[Hit], f64)]) -> Vec<(usize, f64)> {
    accumulate(lists, |list, weight| {
        let (min, max) = finite_range(list);
        first_occurrences(list).map(move |(_, hit)| {
            let score = f64::from(hit.score);
            let normalised = match (min, max) {
                _ if !score.is_finite() => 0.0,
                (Some(min), Some(max)) if max > min => (score - min) / (max - min),
                _ => 1.0,
            };
            (hit.index, weight * normalised)
        })
    })
}

/// Minimum and maximum of a list's finite scores (`None` when it has none).
fn finite_range(list: &[Hit]) -> (Option<f64>, Option<f64>) {
    list.iter()
        .map(|hit| f64::from(hit.score))
        .filter(|s| s.is_finite())
        .fold((None, None), |(min, max), s| {
            (
                Some(min.map_or(s, |m: f64| m.min(s))),
                Some(max.map_or(s, |m: f64| m.max(s))),
            )
        })
}

/// 1-based rank and score of each chunk in a list, at its first occurrence.
fn positions(list: &[Hit]) -> HashMap<usize, (usize, f32)> {
    first_occurrences(list)
        .map(|(position, hit)| (hit.index, (position + 1, hit.score)))
        .collect()
}

/// Fuses one query's dense hits with its sparse hits (when there are any): [`fuse_lists`] with
/// one dense list.
pub fn fuse(
    dense: &[Hit],
    sparse: Option<&[Hit]>,
    method: Method,
    rrf_k: f64,
    dense_weight: f64,
    sparse_weight: f64,
) -> Vec<FusedHit> {
    fuse_lists(
        &[(dense, dense_weight)],
        sparse.map(|list| (list, sparse_weight)),
        method,
        rrf_k,
    )
}

/// Fuses one query's dense lists (one per dense model, with their weights) and its sparse list
/// (when there is one), and annotates each fused hit with its rank and score in each input list.
///
/// With one dense list and `sparse = None` the result is the dense list alone, in its own order
/// (fused ranks equal dense ranks) with the score the method gives a single list (`weight /
/// (k + rank)` for RRF, `weight ·` normalised score for convex). `Some(&[])` is a sparse list
/// that found nothing: the documents are the dense ones, ordered by fused score.
///
/// The result is not truncated: every document of any list appears once.
pub fn fuse_lists(
    dense: &[(&[Hit], f64)],
    sparse: Option<(&[Hit], f64)>,
    method: Method,
    rrf_k: f64,
) -> Vec<FusedHit> {
    let mut lists: Vec<(&[Hit], f64)> = dense.to_vec();
    lists.extend(sparse);
    let fused = match method {
        Method::Rrf => reciprocal_rank_fusion(&lists, rrf_k),
        Method::Convex => convex_combination(&lists),
    };
    let order: Vec<(usize, f64)> = match (dense, sparse) {
        ([(only, _)], None) => {
            let scores: HashMap<usize, f64> = fused.into_iter().collect();
            first_occurrences(only)
                .map(|(_, hit)| {
                    let score = scores.get(&hit.index).copied().unwrap_or(0.0);
                    (hit.index, score)
                })
                .collect()
        }
        _ => fused,
    };

    let dense_at: Vec<HashMap<usize, (usize, f32)>> =
        dense.iter().map(|(list, _)| positions(list)).collect();
    let sparse_at = sparse.map(|(list, _)| positions(list)).unwrap_or_default();
    order
        .into_iter()
        .enumerate()
        .map(|(position, (index, score))| {
            let in_dense = dense_at.first().and_then(|at| at.get(&index));
            let in_sparse = sparse_at.get(&index);
            FusedHit {
                index,
                rank: position + 1,
                score,
                dense_rank: in_dense.map(|d| d.0),
                dense_ranks: if dense_at.len() > 1 {
                    dense_at
                        .iter()
                        .map(|at| at.get(&index).map(|d| d.0))
                        .collect()
                } else {
                    Vec::new()
                },
                sparse_rank: in_sparse.map(|s| s.0),
                dense_score: in_dense.map(|d| d.1),
                sparse_score: in_sparse.map(|s| s.1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(list: &[(usize, f32)]) -> Vec<Hit> {
        list.iter()
            .map(|&(index, score)| Hit { index, score })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn order(fused: &[(usize, f64)]) -> Vec<usize> {
        fused.iter().map(|f| f.0).collect()
    }

    #[test]
    fn rrf_hand_computed() {
        let dense = hits(&[(7, 0.9), (3, 0.8), (5, 0.7)]);
        let sparse = hits(&[(3, 12.0), (9, 11.0), (7, 10.0)]);
        let fused = reciprocal_rank_fusion(&[(&dense, 1.0), (&sparse, 1.0)], 60.0);
        // 7: ranks 1 and 3; 3: ranks 2 and 1; 9: sparse 2; 5: dense 3.
        assert_eq!(order(&fused), vec![3, 7, 9, 5]);
        assert!(close(fused[0].1, 1.0 / 62.0 + 1.0 / 61.0));
        assert!(close(fused[1].1, 1.0 / 61.0 + 1.0 / 63.0));
        assert!(close(fused[2].1, 1.0 / 62.0));
        assert!(close(fused[3].1, 1.0 / 63.0));
    }

    #[test]
    fn rrf_weights_and_k() {
        let dense = hits(&[(1, 0.9), (2, 0.5)]);
        let sparse = hits(&[(2, 3.0), (1, 1.0)]);
        // Symmetric ranks: equal weights tie (→ lower index), unequal weights decide.
        let even = reciprocal_rank_fusion(&[(&dense, 1.0), (&sparse, 1.0)], 60.0);
        assert_eq!(order(&even), vec![1, 2]);
        assert!(close(even[0].1, even[1].1));
        let sparse_heavy = reciprocal_rank_fusion(&[(&dense, 0.5), (&sparse, 2.0)], 60.0);
        assert_eq!(order(&sparse_heavy), vec![2, 1]);
        assert!(close(sparse_heavy[0].1, 0.5 / 62.0 + 2.0 / 61.0));
        assert!(close(sparse_heavy[1].1, 0.5 / 61.0 + 2.0 / 62.0));
        let small_k = reciprocal_rank_fusion(&[(&dense, 1.0)], 1.0);
        assert!(close(small_k[0].1, 0.5));
        assert!(close(small_k[1].1, 1.0 / 3.0));
    }

    #[test]
    fn rrf_ties_go_to_lower_index() {
        let a = hits(&[(8, 1.0)]);
        let b = hits(&[(4, 1.0)]);
        let c = hits(&[(6, 1.0)]);
        let fused = reciprocal_rank_fusion(&[(&a, 1.0), (&b, 1.0), (&c, 1.0)], 60.0);
        assert_eq!(order(&fused), vec![4, 6, 8]);
    }

    #[test]
    fn rrf_repeated_index_counts_once_at_first_rank() {
        let list = hits(&[(1, 0.9), (1, 0.8), (2, 0.7)]);
        let fused = reciprocal_rank_fusion(&[(&list, 1.0)], 60.0);
        assert_eq!(order(&fused), vec![1, 2]);
        assert!(close(fused[0].1, 1.0 / 61.0));
        assert!(close(fused[1].1, 1.0 / 63.0));
    }

    #[test]
    fn convex_normalisation() {
        let dense = hits(&[(0, 0.9), (1, 0.5), (2, 0.1)]);
        let sparse = hits(&[(2, 30.0), (3, 20.0), (0, 10.0)]);
        let fused = convex_combination(&[(&dense, 0.7), (&sparse, 0.3)]);
        let score = |i: usize| fused.iter().find(|f| f.0 == i).map(|f| f.1).unwrap();
        // Normalised dense: 0 → 1, 1 → 0.5, 2 → 0; sparse: 2 → 1, 3 → 0.5, 0 → 0.
        assert!(close(score(0), 0.7));
        assert!((score(1) - 0.35).abs() < 1e-7);
        assert!(close(score(2), 0.3));
        assert!(close(score(3), 0.15));
        assert_eq!(order(&fused), vec![0, 1, 2, 3]);
    }

    #[test]
    fn convex_max_equals_min_gives_one() {
        let flat = hits(&[(5, 2.5), (3, 2.5)]);
        let fused = convex_combination(&[(&flat, 0.4)]);
        assert_eq!(fused, vec![(3, 0.4), (5, 0.4)]);
        let single = hits(&[(9, -1.0)]);
        assert_eq!(convex_combination(&[(&single, 1.0)]), vec![(9, 1.0)]);
        assert!(convex_combination(&[(&[], 1.0)]).is_empty());
    }

    #[test]
    fn convex_non_finite_scores_normalise_to_zero() {
        let list = hits(&[(0, f32::INFINITY), (1, 2.0), (2, 1.0), (3, f32::NAN)]);
        let fused = convex_combination(&[(&list, 1.0)]);
        assert_eq!(fused, vec![(1, 1.0), (0, 0.0), (2, 0.0), (3, 0.0)]);
    }

    #[test]
    fn fuse_fills_ranks_and_scores() {
        let dense = hits(&[(7, 0.9), (3, 0.8), (5, 0.7)]);
        let sparse = hits(&[(3, 12.0), (9, 11.0), (7, 10.0)]);
        let fused = fuse(&dense, Some(&sparse), Method::Rrf, 60.0, 1.0, 1.0);
        assert_eq!(fused.len(), 4);
        assert_eq!(
            fused[0],
            FusedHit {
                index: 3,
                rank: 1,
                score: 1.0 / 62.0 + 1.0 / 61.0,
                dense_rank: Some(2),
                dense_ranks: Vec::new(),
                sparse_rank: Some(1),
                dense_score: Some(0.8),
                sparse_score: Some(12.0),
            }
        );
        assert_eq!((fused[1].index, fused[1].rank), (7, 2));
        assert_eq!(fused[1].sparse_rank, Some(3));
        assert_eq!(
            (fused[2].index, fused[2].dense_rank, fused[2].sparse_rank),
            (9, None, Some(2))
        );
        assert_eq!(fused[2].dense_score, None);
        assert_eq!(
            (fused[3].index, fused[3].dense_rank, fused[3].sparse_score),
            (5, Some(3), None)
        );
        let ranks: Vec<usize> = fused.iter().map(|f| f.rank).collect();
        assert_eq!(ranks, vec![1, 2, 3, 4]);
    }

    #[test]
    fn fuse_without_sparse_is_the_dense_list() {
        // Equal dense scores at 1 and 2 stay in list order even though convex gives them equal
        // fused scores and index order would put 4 before 6.
        let dense = hits(&[(6, 0.9), (4, 0.9), (2, 0.3)]);
        for method in [Method::Rrf, Method::Convex] {
            let fused = fuse(&dense, None, method, 60.0, 1.0, 1.0);
            assert_eq!(fused.iter().map(|f| f.index).collect::<Vec<_>>(), [6, 4, 2]);
            for (position, f) in fused.iter().enumerate() {
                assert_eq!(f.rank, position + 1);
                assert_eq!(f.dense_rank, Some(position + 1));
                assert_eq!(f.dense_score, Some(dense[position].score));
                assert_eq!((f.sparse_rank, f.sparse_score), (None, None));
            }
        }
        let rrf = fuse(&dense, None, Method::Rrf, 60.0, 2.0, 1.0);
        assert!(close(rrf[0].score, 2.0 / 61.0));
        assert!(close(rrf[2].score, 2.0 / 63.0));
        let convex = fuse(&dense, None, Method::Convex, 60.0, 0.5, 1.0);
        assert_eq!(
            convex.iter().map(|f| f.score).collect::<Vec<_>>(),
            [0.5, 0.5, 0.0]
        );
        // Even a zero weight keeps the dense order.
        let zero = fuse(&dense, None, Method::Rrf, 60.0, 0.0, 1.0);
        assert_eq!(zero.iter().map(|f| f.index).collect::<Vec<_>>(), [6, 4, 2]);
    }

    /// Two dense models and SPLADE: RRF sums all three with each list's weight, and every
    /// hit carries its rank in each dense list.
    #[test]
    fn fuse_lists_sums_every_dense_list_and_the_sparse_one() {
        let minilm = hits(&[(1, 0.9), (2, 0.8)]);
        let bge = hits(&[(2, 0.7), (3, 0.6)]);
        let sparse = hits(&[(3, 9.0), (1, 8.0)]);
        let fused = fuse_lists(
            &[(&minilm, 1.0), (&bge, 0.5)],
            Some((&sparse, 2.0)),
            Method::Rrf,
            60.0,
        );
        let score = |i: usize| fused.iter().find(|f| f.index == i).unwrap();
        assert!(close(score(1).score, 1.0 / 61.0 + 2.0 / 62.0));
        assert!(close(score(2).score, 1.0 / 62.0 + 0.5 / 61.0));
        assert!(close(score(3).score, 0.5 / 62.0 + 2.0 / 61.0));
        assert_eq!(fused.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 3, 2]);
        assert_eq!(score(2).dense_ranks, [Some(2), Some(1)]);
        assert_eq!(score(3).dense_ranks, [None, Some(2)]);
        assert_eq!(
            score(3).dense_rank,
            None,
            "dense_rank is the primary list's"
        );
        // Two dense lists without sparse are fused, not the first one alone.
        let dense_only = fuse_lists(&[(&minilm, 1.0), (&bge, 1.0)], None, Method::Rrf, 60.0);
        assert_eq!(dense_only[0].index, 2);
        // One list: no per-list ranks (the wire format shows them only for several).
        assert!(fuse(&minilm, None, Method::Rrf, 60.0, 1.0, 1.0)[0]
            .dense_ranks
            .is_empty());
    }

    #[test]
    fn fuse_with_empty_sparse_list() {
        let dense = hits(&[(1, 0.9), (0, 0.2)]);
        let fused = fuse(&dense, Some(&[]), Method::Rrf, 60.0, 1.0, 1.0);
        assert_eq!(fused.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 0]);
        assert!(fused.iter().all(|f| f.sparse_rank.is_none()));
        assert!(fuse(&[], Some(&[]), Method::Convex, 60.0, 1.0, 1.0).is_empty());
        assert!(fuse(&[], None, Method::Rrf, 60.0, 1.0, 1.0).is_empty());
    }

    #[test]
    fn fusing_is_deterministic() {
        // Many tied fused scores; HashMap iteration order must not leak into the result.
        let dense: Vec<Hit> = (0..200)
            .map(|i| Hit {
                index: (i * 37) % 211,
                score: 1.0 - i as f32 / 200.0,
            })
            .collect();
        let sparse: Vec<Hit> = (0..200)
            .map(|i| Hit {
                index: (i * 53 + 11) % 211,
                score: 50.0 - i as f32 / 4.0,
            })
            .collect();
        for method in [Method::Rrf, Method::Convex] {
            let first = fuse(&dense, Some(&sparse), method, DEFAULT_RRF_K, 1.0, 1.0);
            for _ in 0..20 {
                assert_eq!(
                    fuse(&dense, Some(&sparse), method, DEFAULT_RRF_K, 1.0, 1.0),
                    first
                );
            }
            for pair in first.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                assert!(a.score > b.score || (a.score == b.score && a.index < b.index));
            }
        }
    }

    #[test]
    fn method_default_and_names() {
        assert_eq!(Method::default(), Method::Rrf);
        assert_eq!(Method::Convex.as_str(), "convex");
    }
}

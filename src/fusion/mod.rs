//! Fusion of one query's hit lists (one per dense model, and the sparse one) into a single
//! ranking, with the functions the query-time engines compute, so a vector store reproduces the
//! run's lists (see [`qdrant`] for the request that does it in Qdrant).
//!
//! Methods ([`Method`]):
//!
//! - **Reciprocal rank fusion** (Cormack, Clarke & Büttcher, SIGIR 2009), weighted as Qdrant
//!   weighs it: `RRF(d) = Σ_lists 1 / (rank_list(d) / weight + k)` with **1-based** ranks and,
//!   by default, **k = 60** ([`DEFAULT_RRF_K`]); a list of weight ≤ 0 contributes 0. With every
//!   weight 1 this is the classic `Σ 1 / (k + rank)`. Qdrant writes the same function with
//!   0-based positions, `1 / ((position + 1) / weight + k' − 1)`, so its `k'` is our `k + 1`
//!   (`lib/segment/src/common/reciprocal_rank_fusion.rs`; qdrant-client's local mode computes
//!   the same). A weight stretches a list's ranks: weight 2 makes its 4th hit count as a 2nd.
//!   Elasticsearch's weighted RRF multiplies instead (`weight / (k + rank)`): the same order
//!   when every weight is 1.
//! - **Distribution-based score fusion** (DBSF, Qdrant's `fusion: dbsf`): each list's scores are
//!   mapped by `(s − (μ − 3σ)) / 6σ` (μ the mean, σ the *sample* standard deviation of the list's
//!   scores; a list of one hit, or of equal scores, gives 0.5), multiplied by the list's weight
//!   (Qdrant has no weights: 1) and summed.
//! - **Convex combination**: `Σ_lists weight · normalised_list(d)` with [`Normalization`]
//!   min-max (`(s − min)/(max − min)`, 1.0 for every hit when `max == min`), z-score
//!   (`(s − μ)/σ`, population σ, 0 when σ = 0) or none (the raw scores). Elasticsearch's linear
//!   retriever and OpenSearch's normalization processor compute this family.
//! - **Dense** or **sparse** alone: the other lists are left out (several dense lists are fused
//!   by RRF among themselves). The menu of `fusion.method = "auto"` ([`auto`]) offers them.
//!
//! In every method a document missing from a list contributes nothing for that list. All sort
//! by fused score descending, ties broken by the lower chunk index, NaN last, so the result is
//! deterministic. When only one list is fused the result is that list in its own order.
//!
//! Conventions where the literature is silent:
//! - A chunk index repeated within one list counts once, at its first (best) position; later
//!   repeats are ignored by every method and by the per-list rank/score columns of
//!   [`FusedHit`].
//! - Score-based methods normalise over the *finite* scores of a list; a NaN or infinite score
//!   contributes 0.
//! - `k` is not validated here: the config keeps it positive.

pub mod auto;
pub mod qdrant;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::retrieval::Hit;

/// The RRF constant of Cormack et al., used with 1-based ranks.
pub const DEFAULT_RRF_K: f64 = 60.0;

/// How [`Fusion::fuse`] combines the lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Reciprocal rank fusion, weighted as Qdrant weighs it.
    #[default]
    Rrf,
    /// Distribution-based score fusion (Qdrant's DBSF).
    Dbsf,
    /// Weighted sum of normalised scores.
    Convex,
    /// The dense lists alone.
    Dense,
    /// The sparse list alone (the dense lists where a query has none).
    Sparse,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rrf => "rrf",
            Method::Dbsf => "dbsf",
            Method::Convex => "convex",
            Method::Dense => "dense",
            Method::Sparse => "sparse",
        }
    }
}

/// How [`Method::Convex`] puts each list's scores on one scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(s − min) / (max − min)` over the list's hits; 1.0 for each when they are all equal.
    #[default]
    MinMax,
    /// `(s − mean) / σ` (population σ) over the list's hits; 0 when σ = 0.
    ZScore,
    /// The raw scores.
    None,
}

impl Normalization {
    pub fn as_str(self) -> &'static str {
        match self {
            Normalization::MinMax => "min_max",
            Normalization::ZScore => "z_score",
            Normalization::None => "none",
        }
    }
}

/// One fusion: the method, its parameters and each list's weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    pub method: Method,
    /// RRF's k (1-based ranks); used by `rrf`, and by `dense` over several dense lists.
    pub rrf_k: f64,
    /// Used by `convex`.
    pub normalization: Normalization,
    /// Each dense list's weight, in config order.
    pub dense_weights: Vec<f64>,
    pub sparse_weight: f64,
}

impl Fusion {
    /// Fuses one query's dense lists (config order, weighted by `dense_weights`) and its sparse
    /// list (when it has one), and annotates each fused hit with its rank and score in each
    /// input list. The result is not truncated: every document of every fused list appears once.
    ///
    /// When one list is fused (one dense list and no sparse one, or `dense`/`sparse` alone
    /// picking one) the result is that list in its own order, with the score the method gives
    /// it. `Some(&[])` is a sparse list that found nothing.
    pub fn fuse(&self, dense: &[&[Hit]], sparse: Option<&[Hit]>) -> Vec<FusedHit> {
        let weight = |i: usize| self.dense_weights.get(i).copied().unwrap_or(1.0);
        let dense_lists: Vec<(&[Hit], f64)> = dense
            .iter()
            .enumerate()
            .map(|(i, list)| (*list, weight(i)))
            .collect();
        let (lists, method): (Vec<(&[Hit], f64)>, Method) = match (self.method, sparse) {
            (Method::Sparse, Some(list)) => (vec![(list, 1.0)], Method::Rrf),
            (Method::Sparse | Method::Dense, _) => (dense_lists, Method::Rrf),
            (method, Some(list)) => {
                let mut lists = dense_lists;
                lists.push((list, self.sparse_weight));
                (lists, method)
            }
            (method, None) => (dense_lists, method),
        };
        let fused = match method {
            Method::Dbsf => distribution_based_score_fusion(&lists),
            Method::Convex => convex_combination(&lists, self.normalization),
            Method::Rrf | Method::Dense | Method::Sparse => {
                reciprocal_rank_fusion(&lists, self.rrf_k)
            }
        };
        let order: Vec<(usize, f64)> = match lists.as_slice() {
            [(only, _)] => {
                let scores: HashMap<usize, f64> = fused.into_iter().collect();
                first_occurrences(only)
                    .map(|(_, hit)| (hit.index, scores.get(&hit.index).copied().unwrap_or(0.0)))
                    .collect()
            }
            _ => fused,
        };
        annotate(order, dense, sparse)
    }

    /// The weights of the lists this fusion fuses, in fusion order (dense lists, then sparse),
    /// given whether the query has a sparse list.
    pub fn fused_weights(&self, with_sparse: bool) -> Vec<f64> {
        match self.method {
            Method::Sparse if with_sparse => vec![1.0],
            Method::Sparse | Method::Dense => self.dense_weights.clone(),
            _ => {
                let mut weights = self.dense_weights.clone();
                if with_sparse {
                    weights.push(self.sparse_weight);
                }
                weights
            }
        }
    }

    /// The method with its parameters and weights, as the manifest and the summary show it
    /// (`rrf k=60 weights dense=1 sparse=1`); `names` are the dense lists' names (one list:
    /// `dense`).
    pub fn describe(&self, names: &[String], with_sparse: bool) -> String {
        let dense_names: Vec<String> = match names {
            [_] => vec!["dense".to_string()],
            names => names.iter().map(|n| format!("dense:{n}")).collect(),
        };
        let dense: Vec<String> = dense_names
            .iter()
            .zip(&self.dense_weights)
            .map(|(name, weight)| format!("{name}={weight}"))
            .collect();
        let all = |dense: Vec<String>| {
            let mut all = dense;
            if with_sparse {
                all.push(format!("sparse={}", self.sparse_weight));
            }
            all.join(" ")
        };
        match self.method {
            Method::Rrf => format!("rrf k={} weights {}", self.rrf_k, all(dense)),
            Method::Dbsf => format!("dbsf weights {}", all(dense)),
            Method::Convex => format!(
                "convex {} weights {}",
                self.normalization.as_str(),
                all(dense)
            ),
            Method::Dense if dense.len() > 1 => {
                format!(
                    "dense alone (rrf k={} weights {})",
                    self.rrf_k,
                    dense.join(" ")
                )
            }
            Method::Dense => "dense alone".to_string(),
            Method::Sparse => "sparse alone".to_string(),
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
    /// Fused score (per the method).
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

/// Reciprocal rank fusion: `Σ 1 / (rank / weight + k)` over the lists containing each document
/// (ranks 1-based within each list; 0 from a list of weight ≤ 0). Every document of any list
/// appears once, best first (ties by lower index).
pub fn reciprocal_rank_fusion(lists: &[(&[Hit], f64)], k: f64) -> Vec<(usize, f64)> {
    accumulate(lists, |list, weight| {
        first_occurrences(list).map(move |(position, hit)| {
            let rank = (position + 1) as f64;
            let contribution = if weight > 0.0 {
                1.0 / (rank / weight + k)
            } else {
                0.0
            };
            (hit.index, contribution)
        })
    })
}

/// Distribution-based score fusion: each list's scores mapped by `(s − (μ − 3σ)) / 6σ` (sample
/// σ; 0.5 for a list of one hit or of equal scores), times the list's weight, summed.
pub fn distribution_based_score_fusion(lists: &[(&[Hit], f64)]) -> Vec<(usize, f64)> {
    accumulate(lists, |list, weight| {
        let scores = finite_scores(list);
        let n = scores.len() as f64;
        let mean = scores.iter().sum::<f64>() / n.max(1.0);
        let sample_sd = if scores.len() > 1 {
            (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        first_occurrences(list).map(move |(_, hit)| {
            let score = f64::from(hit.score);
            let normalised = if !score.is_finite() {
                0.0
            } else if sample_sd > 0.0 {
                (score - (mean - 3.0 * sample_sd)) / (6.0 * sample_sd)
            } else {
                0.5
            };
            (hit.index, weight * normalised)
        })
    })
}

/// Convex combination of per-list normalised scores: `Σ weight · normalised(s)` (0 for a list a
/// document is missing from), normalised per [`Normalization`].
pub fn convex_combination(
    lists: &[(&[Hit], f64)],
    normalization: Normalization,
) -> Vec<(usize, f64)> {
    accumulate(lists, |list, weight| {
        let scores = finite_scores(list);
        let n = scores.len() as f64;
        let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = scores.iter().sum::<f64>() / n.max(1.0);
        let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n.max(1.0)).sqrt();
        first_occurrences(list).map(move |(_, hit)| {
            let score = f64::from(hit.score);
            let normalised = match normalization {
                _ if !score.is_finite() => 0.0,
                Normalization::MinMax if max > min => (score - min) / (max - min),
                Normalization::MinMax => 1.0,
                Normalization::ZScore if sd > 0.0 => (score - mean) / sd,
                Normalization::ZScore => 0.0,
                Normalization::None => score,
            };
            (hit.index, weight * normalised)
        })
    })
}

/// A list's finite scores, each document once (at its first position).
fn finite_scores(list: &[Hit]) -> Vec<f64> {
    first_occurrences(list)
        .map(|(_, hit)| f64::from(hit.score))
        .filter(|s| s.is_finite())
        .collect()
}

/// 1-based rank and score of each chunk in a list, at its first occurrence.
fn positions(list: &[Hit]) -> HashMap<usize, (usize, f32)> {
    first_occurrences(list)
        .map(|(position, hit)| (hit.index, (position + 1, hit.score)))
        .collect()
}

/// The fused order with each hit's rank and score in every input list.
fn annotate(order: Vec<(usize, f64)>, dense: &[&[Hit]], sparse: Option<&[Hit]>) -> Vec<FusedHit> {
    let dense_at: Vec<HashMap<usize, (usize, f32)>> =
        dense.iter().map(|list| positions(list)).collect();
    let sparse_at = sparse.map(positions).unwrap_or_default();
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

    fn fusion(method: Method, rrf_k: f64, dense_weights: &[f64], sparse_weight: f64) -> Fusion {
        Fusion {
            method,
            rrf_k,
            normalization: Normalization::MinMax,
            dense_weights: dense_weights.to_vec(),
            sparse_weight,
        }
    }

    fn fuse(
        dense: &[Hit],
        sparse: Option<&[Hit]>,
        method: Method,
        rrf_k: f64,
        dense_weight: f64,
        sparse_weight: f64,
    ) -> Vec<FusedHit> {
        fusion(method, rrf_k, &[dense_weight], sparse_weight).fuse(&[dense], sparse)
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
        // Qdrant's weighting: a weight divides the rank, 1 / (rank / weight + k), so it counts
        // most when k is small next to the ranks.
        let sparse_heavy = reciprocal_rank_fusion(&[(&dense, 0.5), (&sparse, 2.0)], 1.0);
        assert_eq!(order(&sparse_heavy), vec![2, 1]);
        assert!(close(
            sparse_heavy[0].1,
            1.0 / (2.0 / 0.5 + 1.0) + 1.0 / (1.0 / 2.0 + 1.0)
        ));
        assert!(close(
            sparse_heavy[1].1,
            1.0 / (1.0 / 0.5 + 1.0) + 1.0 / (2.0 / 2.0 + 1.0)
        ));
        let at_60 = reciprocal_rank_fusion(&[(&dense, 0.5), (&sparse, 2.0)], 60.0);
        assert_eq!(order(&at_60), vec![1, 2]);
        let small_k = reciprocal_rank_fusion(&[(&dense, 1.0)], 1.0);
        assert!(close(small_k[0].1, 0.5));
        assert!(close(small_k[1].1, 1.0 / 3.0));
        // A list of weight 0 (or less) contributes nothing, as in Qdrant.
        let muted = reciprocal_rank_fusion(&[(&dense, 0.0), (&sparse, 1.0)], 60.0);
        assert_eq!(order(&muted), vec![2, 1]);
        assert!(close(muted[0].1, 1.0 / 61.0));
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
        let fused = convex_combination(&[(&dense, 0.7), (&sparse, 0.3)], Normalization::MinMax);
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
        let fused = convex_combination(&[(&flat, 0.4)], Normalization::MinMax);
        assert_eq!(fused, vec![(3, 0.4), (5, 0.4)]);
        let single = hits(&[(9, -1.0)]);
        assert_eq!(
            convex_combination(&[(&single, 1.0)], Normalization::MinMax),
            vec![(9, 1.0)]
        );
        assert!(convex_combination(&[(&[], 1.0)], Normalization::MinMax).is_empty());
    }

    #[test]
    fn convex_non_finite_scores_normalise_to_zero() {
        let list = hits(&[(0, f32::INFINITY), (1, 2.0), (2, 1.0), (3, f32::NAN)]);
        let fused = convex_combination(&[(&list, 1.0)], Normalization::MinMax);
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
        assert!(close(rrf[0].score, 1.0 / (1.0 / 2.0 + 60.0)));
        assert!(close(rrf[2].score, 1.0 / (3.0 / 2.0 + 60.0)));
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
        let fused =
            fusion(Method::Rrf, 60.0, &[1.0, 0.5], 2.0).fuse(&[&minilm, &bge], Some(&sparse));
        let score = |i: usize| fused.iter().find(|f| f.index == i).unwrap();
        let rrf = |rank: f64, weight: f64| 1.0 / (rank / weight + 60.0);
        assert!(close(score(1).score, rrf(1.0, 1.0) + rrf(2.0, 2.0)));
        assert!(close(score(2).score, rrf(2.0, 1.0) + rrf(1.0, 0.5)));
        assert!(close(score(3).score, rrf(2.0, 0.5) + rrf(1.0, 2.0)));
        // 1/61 + 1/61 > 1/62 + 1/62 > 1/64 + 1/60.5: at k = 60 the weights move little.
        assert_eq!(fused.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(score(2).dense_ranks, [Some(2), Some(1)]);
        assert_eq!(score(3).dense_ranks, [None, Some(2)]);
        assert_eq!(
            score(3).dense_rank,
            None,
            "dense_rank is the primary list's"
        );
        // Two dense lists without sparse are fused, not the first one alone.
        let dense_only = fusion(Method::Rrf, 60.0, &[1.0, 1.0], 1.0).fuse(&[&minilm, &bge], None);
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
    fn dbsf_normalises_by_three_sample_deviations() {
        // Scores 3, 2, 1: mean 2, sample σ 1, so (s − (2 − 3)) / 6 = (s + 1) / 6.
        let dense = hits(&[(0, 3.0), (1, 2.0), (2, 1.0)]);
        let sparse = hits(&[(2, 10.0)]);
        let fused = distribution_based_score_fusion(&[(&dense, 1.0), (&sparse, 1.0)]);
        let score = |i: usize| fused.iter().find(|f| f.0 == i).map(|f| f.1).unwrap();
        assert!(close(score(0), 4.0 / 6.0));
        assert!(close(score(1), 3.0 / 6.0));
        // A list of one hit gives 0.5.
        assert!(close(score(2), 2.0 / 6.0 + 0.5));
        assert_eq!(order(&fused), vec![2, 0, 1]);
        let flat = hits(&[(4, 1.0), (5, 1.0)]);
        let fused = distribution_based_score_fusion(&[(&flat, 2.0)]);
        assert_eq!(fused, vec![(4, 1.0), (5, 1.0)]);
    }

    #[test]
    fn convex_z_score_and_raw() {
        // Scores 3, 1: population mean 2, σ 1.
        let dense = hits(&[(0, 3.0), (1, 1.0)]);
        let sparse = hits(&[(1, 5.0), (2, 4.0)]);
        let z = convex_combination(&[(&dense, 1.0), (&sparse, 0.5)], Normalization::ZScore);
        let score = |fused: &[(usize, f64)], i: usize| fused.iter().find(|f| f.0 == i).unwrap().1;
        // Sparse 5, 4: mean 4.5, σ 0.5.
        assert!(close(score(&z, 0), 1.0));
        assert!(close(score(&z, 1), -1.0 + 0.5));
        assert!(close(score(&z, 2), -0.5));
        let raw = convex_combination(&[(&dense, 1.0), (&sparse, 0.5)], Normalization::None);
        assert!(close(score(&raw, 1), 1.0 + 2.5));
        assert_eq!(order(&raw), vec![1, 0, 2]);
    }

    #[test]
    fn dense_or_sparse_alone_leave_the_other_lists_out() {
        let minilm = hits(&[(1, 0.9), (2, 0.8)]);
        let bge = hits(&[(2, 0.7), (3, 0.6)]);
        let sparse = hits(&[(9, 9.0), (1, 8.0)]);
        let alone = fusion(Method::Sparse, 60.0, &[1.0, 1.0], 1.0);
        let fused = alone.fuse(&[&minilm, &bge], Some(&sparse));
        assert_eq!(fused.iter().map(|f| f.index).collect::<Vec<_>>(), [9, 1]);
        assert_eq!(fused[1].dense_ranks, [Some(1), None]);
        // A query without a sparse list falls back to the dense ones.
        let fallback = alone.fuse(&[&minilm, &bge], None);
        assert_eq!(fallback[0].index, 2);
        let dense =
            fusion(Method::Dense, 60.0, &[1.0, 1.0], 1.0).fuse(&[&minilm, &bge], Some(&sparse));
        assert_eq!(dense.iter().map(|f| f.index).collect::<Vec<_>>(), [2, 1, 3]);
        assert_eq!(
            fusion(Method::Dense, 60.0, &[1.0, 1.0], 1.0).fused_weights(true),
            [1.0, 1.0]
        );
        assert_eq!(
            fusion(Method::Rrf, 60.0, &[1.0], 0.3).fused_weights(true),
            [1.0, 0.3]
        );
        assert_eq!(
            fusion(Method::Sparse, 60.0, &[2.0], 0.3).fused_weights(true),
            [1.0]
        );
    }

    #[test]
    fn method_default_and_names() {
        assert_eq!(Method::default(), Method::Rrf);
        assert_eq!(Method::Convex.as_str(), "convex");
    }
}

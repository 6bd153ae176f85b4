//! `rerank.blend`: how the final list is made from the CrossEncoder's order and the fused order
//! of the candidates it scored.
//!
//! - `replace`: the CrossEncoder's order (logit descending) replaces the fused one.
//! - `rrf`: reciprocal rank fusion of the two orders, `1/(k + rerank_rank) + 1/(k + fused_rank)`
//!   with k = [`BLEND_RRF_K`]: a candidate both orders put high stays high, and a CrossEncoder
//!   out of its domain can move a candidate only so far.
//! - `convex`: `w · minmax(logit) + (1 − w) · minmax(fused score)`, min-max over the scored
//!   candidates of the query (1.0 for each when they are all equal), `w` = `rerank.blend_weight`.
//!
//! Ranks are 1-based: the rerank rank is the position in logit order (ties by fused rank), the
//! fused rank the candidate's rank in the fused list. Every blend breaks ties by the fused rank,
//! so it is deterministic. The blended score is kept with each candidate (`blend_score` in
//! `rerank.jsonl`); `replace` has none.

use super::RankedCandidate;
use crate::config::RerankBlend;

/// The RRF constant of the `rrf` blend (Cormack et al.'s k, as `fusion.rrf_k`'s default).
pub const BLEND_RRF_K: f64 = 60.0;

/// Orders one query's scored candidates per `blend` (`weight`: the CrossEncoder's share in the
/// convex blend) and records the blended score. Candidates without a CrossEncoder score sort
/// last.
pub fn blend(candidates: &mut [RankedCandidate], blend: RerankBlend, weight: f64) {
    let logit = |c: &RankedCandidate| c.rerank.map_or(f32::MIN, |s| s.logit);
    candidates.sort_by(|a, b| {
        logit(b)
            .total_cmp(&logit(a))
            .then(a.fused.rank.cmp(&b.fused.rank))
    });
    if blend == RerankBlend::Replace {
        for candidate in candidates.iter_mut() {
            candidate.blend_score = None;
        }
        return;
    }
    let logits: Vec<f64> = candidates.iter().map(|c| f64::from(logit(c))).collect();
    let fused: Vec<f64> = candidates.iter().map(|c| c.fused.score).collect();
    let (logit_min, logit_max) = range(&logits);
    let (fused_min, fused_max) = range(&fused);
    let scale = |value: f64, min: f64, max: f64| {
        if max > min {
            (value - min) / (max - min)
        } else {
            1.0
        }
    };
    for (position, candidate) in candidates.iter_mut().enumerate() {
        let score = match blend {
            RerankBlend::Rrf => {
                1.0 / (BLEND_RRF_K + (position + 1) as f64)
                    + 1.0 / (BLEND_RRF_K + candidate.fused.rank as f64)
            }
            RerankBlend::Convex | RerankBlend::Replace => {
                weight * scale(logits[position], logit_min, logit_max)
                    + (1.0 - weight) * scale(fused[position], fused_min, fused_max)
            }
        };
        candidate.blend_score = Some(score);
    }
    candidates.sort_by(|a, b| {
        let (sa, sb) = (a.blend_score.unwrap_or(0.0), b.blend_score.unwrap_or(0.0));
        sb.total_cmp(&sa).then(a.fused.rank.cmp(&b.fused.rank))
    });
}

/// Minimum and maximum of finite values (0, 0 when there are none).
fn range(values: &[f64]) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.fold(f64::NEG_INFINITY, f64::max);
    if min <= max {
        (min, max)
    } else {
        (0.0, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::ndcg_at;
    use crate::fusion::FusedHit;
    use crate::models::PairScore;
    use std::collections::BTreeMap;

    fn candidate(index: usize, rank: usize, logit: f32) -> RankedCandidate {
        RankedCandidate {
            fused: FusedHit {
                index,
                rank,
                score: 1.0 / (60.0 + rank as f64),
                dense_rank: Some(rank),
                dense_ranks: Vec::new(),
                sparse_rank: None,
                dense_score: None,
                sparse_score: None,
            },
            rerank: Some(PairScore {
                logit,
                score: 1.0 / (1.0 + (-logit).exp()),
            }),
            blend_score: None,
        }
    }

    fn order(candidates: &[RankedCandidate]) -> Vec<usize> {
        candidates.iter().map(|c| c.fused.index).collect()
    }

    /// A reranker that inverts the relevant order (a test double): the fused list has the
    /// relevant documents on top, the logits rank them last. Replacing drops nDCG@10 to the
    /// worst order; each blend keeps most of the fused quality.
    #[test]
    fn a_blend_bounds_the_damage_of_an_inverted_reranker() {
        let n = 20;
        // Documents 0..20 in fused order; 0, 1 and 2 are relevant (graded 3, 2, 1).
        let judgments: BTreeMap<String, i32> = [("0", 3), ("1", 2), ("2", 1)]
            .map(|(d, r)| (d.to_string(), r))
            .into();
        let inverted =
            || -> Vec<RankedCandidate> { (0..n).map(|i| candidate(i, i + 1, i as f32)).collect() };
        let ndcg = |candidates: &[RankedCandidate]| {
            let ranking: Vec<String> = order(candidates).iter().map(usize::to_string).collect();
            ndcg_at(10, &judgments, &ranking)
        };
        let fused_ndcg = ndcg(&inverted());
        assert!((fused_ndcg - 1.0).abs() < 1e-12);

        let mut replaced = inverted();
        blend(&mut replaced, RerankBlend::Replace, 0.5);
        assert_eq!(order(&replaced)[..3], [19, 18, 17]);
        let replaced_ndcg = ndcg(&replaced);
        assert!(replaced_ndcg < 0.05, "replace: {replaced_ndcg}");

        let mut rrf = inverted();
        blend(&mut rrf, RerankBlend::Rrf, 0.5);
        // 1/(60 + r) + 1/(60 + 21 − r) is symmetric and largest at the ends: the fused top and
        // the reranker's top tie, the fused rank breaks the tie.
        assert_eq!(order(&rrf)[..2], [0, 19]);
        let rrf_ndcg = ndcg(&rrf);
        assert!(
            rrf_ndcg > 0.5 && rrf_ndcg > replaced_ndcg + 0.4,
            "rrf: {rrf_ndcg}"
        );

        let mut convex = inverted();
        blend(&mut convex, RerankBlend::Convex, 0.3);
        let convex_ndcg = ndcg(&convex);
        assert!(convex_ndcg > 0.9, "convex 0.3: {convex_ndcg}");
        assert!(convex.iter().all(|c| c.blend_score.is_some()));
        assert!(replaced.iter().all(|c| c.blend_score.is_none()));
    }

    #[test]
    fn an_agreeing_reranker_keeps_its_order_under_every_blend() {
        for kind in [RerankBlend::Replace, RerankBlend::Rrf, RerankBlend::Convex] {
            let mut candidates: Vec<RankedCandidate> = (0..5)
                .map(|i| candidate(i, i + 1, 10.0 - i as f32))
                .collect();
            candidates.reverse();
            blend(&mut candidates, kind, 0.5);
            assert_eq!(order(&candidates), [0, 1, 2, 3, 4], "{kind:?}");
        }
    }

    #[test]
    fn convex_weights_hand_computed() {
        // Logits 0 and 4 (normalised 0, 1); fused scores of ranks 1 and 2 (normalised 1, 0).
        let mut candidates = vec![candidate(7, 1, 0.0), candidate(8, 2, 4.0)];
        blend(&mut candidates, RerankBlend::Convex, 0.75);
        assert_eq!(order(&candidates), [8, 7]);
        assert_eq!(candidates[0].blend_score, Some(0.75));
        assert_eq!(candidates[1].blend_score, Some(0.25));
        blend(&mut candidates, RerankBlend::Convex, 0.5);
        // A tie: the fused rank decides.
        assert_eq!(order(&candidates), [7, 8]);
    }
}

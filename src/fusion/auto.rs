//! `fusion.method = "auto"`: a fusion chosen per collection, without relevance labels, the
//! CrossEncoder judging.
//!
//! The menu ([`menu`]): RRF as configured (the default, and the baseline every other entry must
//! beat), the dense lists alone, the sparse list alone, DBSF, and min-max convex combinations
//! giving the dense lists 0.3, 0.5 and 0.7 of the weight. For the queries of the run (the query
//! file's, else the probe's), every entry's top [`JUDGE_DEPTH`] are pooled, the CrossEncoder
//! scores each (query, passage) pair of the pool once, and each entry's nDCG@10 is computed with
//! the pair's probability `sigmoid(logit)` as its graded gain (the ideal order: the pool sorted
//! by it).
//!
//! The rule ([`choose`]): an entry replaces the baseline only on clear evidence: its mean nDCG
//! gain over the baseline is at least [`MARGIN`] and the lower end of a paired bootstrap
//! interval of that gain ([`RESAMPLES`] resamples of the queries, a fixed seed) is above zero,
//! at a confidence of `1 − 0.05 / m` for `m` alternatives (Bonferroni: the chance of switching
//! away from an entry that is no better stays under 5 % over the whole menu). Among the entries
//! that qualify, the largest mean gain wins (menu order breaks ties). With fewer than
//! [`MIN_QUERIES`] judged queries the baseline stays. Everything is deterministic for a fixed
//! input.
//!
//! The reranker is never judged by itself: `auto` chooses the fusion only; `rerank.blend` is a
//! setting, chosen from labelled evidence (BENCHMARKS.md).

use super::{Fusion, Method, Normalization};
use serde::{Deserialize, Serialize};

/// Depth of each entry's list that is pooled and judged (nDCG@10).
pub const JUDGE_DEPTH: usize = 10;
/// The smallest mean nDCG@10 gain over the baseline that can switch.
pub const MARGIN: f64 = 0.01;
/// Judged queries needed before anything but the baseline can be chosen.
pub const MIN_QUERIES: usize = 8;
/// Bootstrap resamples of the queries.
pub const RESAMPLES: usize = 2000;
/// The family-wise error rate the interval is set for.
const ALPHA: f64 = 0.05;
/// The bootstrap's seed: the choice is reproducible.
const SEED: u64 = 0x0E3B_ED00_A070_F051;

/// One fusion of the menu, with its name in the manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct MenuEntry {
    pub name: String,
    pub fusion: Fusion,
}

/// The menu for a collection: `base` is the configured fusion (its k and weights make the
/// baseline RRF); entries that need a sparse list are left out without one.
pub fn menu(base: &Fusion, sparse: bool) -> Vec<MenuEntry> {
    let with = |method: Method, normalization: Normalization, dense: f64, sparse: f64| Fusion {
        method,
        rrf_k: base.rrf_k,
        normalization,
        dense_weights: base.dense_weights.iter().map(|_| dense).collect(),
        sparse_weight: sparse,
    };
    let mut entries = vec![
        MenuEntry {
            name: "rrf".to_string(),
            fusion: Fusion {
                method: Method::Rrf,
                normalization: Normalization::MinMax,
                ..base.clone()
            },
        },
        MenuEntry {
            name: "dense".to_string(),
            fusion: Fusion {
                method: Method::Dense,
                normalization: Normalization::MinMax,
                ..base.clone()
            },
        },
    ];
    if sparse {
        entries.push(MenuEntry {
            name: "sparse".to_string(),
            fusion: with(Method::Sparse, Normalization::MinMax, 1.0, 1.0),
        });
    }
    entries.push(MenuEntry {
        name: "dbsf".to_string(),
        fusion: with(Method::Dbsf, Normalization::MinMax, 1.0, 1.0),
    });
    if sparse {
        let dense_lists = base.dense_weights.len().max(1) as f64;
        for share in [0.3, 0.5, 0.7] {
            entries.push(MenuEntry {
                name: format!("convex:{share}"),
                fusion: with(
                    Method::Convex,
                    Normalization::MinMax,
                    share / dense_lists,
                    // 0.3, not 0.30000000000000004, in the manifest.
                    ((1.0 - share) * 10.0_f64).round() / 10.0,
                ),
            });
        }
    }
    entries
}

/// One menu entry as judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryJudgement {
    pub name: String,
    /// The fusion with its parameters (as the manifest's `ranking.fusion`).
    pub fusion: String,
    /// Mean nDCG@10 with the CrossEncoder's probabilities as gains.
    pub judged_ndcg_at_10: f64,
    /// Mean gain over the baseline, and its bootstrap interval (`[0, 0]` for the baseline).
    pub gain: f64,
    pub interval: [f64; 2],
    /// Queries where it beat / lost to the baseline.
    pub wins: usize,
    pub losses: usize,
    /// nDCG@10 against the run's qrels, when there are some: shown for comparison, never
    /// used to choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled_ndcg_at_10: Option<f64>,
}

/// The choice and what it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Index of the chosen entry in the menu.
    #[serde(skip)]
    pub chosen: usize,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
    /// Queries judged (those whose every pooled pair was scored).
    pub queries: usize,
    /// The interval's confidence (`1 − 0.05 / alternatives`).
    pub confidence: f64,
    pub entries: Vec<EntryJudgement>,
}

/// Judges the menu and chooses. `tops[e][q]` is entry `e`'s top [`JUDGE_DEPTH`] documents for
/// query `q`; `gain(q, doc)` the judge's gain for a pooled pair (`None`: not scored, and the
/// query is left out). `descriptions[e]` names entry `e`'s fusion.
pub fn choose(
    names: &[String],
    descriptions: &[String],
    tops: &[Vec<Vec<usize>>],
    gain: impl Fn(usize, usize) -> Option<f64>,
) -> Choice {
    let entries = tops.len();
    let queries = tops.first().map_or(0, Vec::len);
    // Per judged query, every entry's nDCG@10.
    let mut ndcg: Vec<Vec<f64>> = vec![Vec::new(); entries];
    for q in 0..queries {
        let mut pool: Vec<usize> = tops.iter().flat_map(|top| top[q].iter().copied()).collect();
        pool.sort_unstable();
        pool.dedup();
        let Some(pool_gains) = pool
            .iter()
            .map(|&d| gain(q, d))
            .collect::<Option<Vec<f64>>>()
        else {
            continue;
        };
        if pool.is_empty() {
            continue;
        }
        for (e, top) in tops.iter().enumerate() {
            let ranked: Vec<f64> = top[q]
                .iter()
                .take(JUDGE_DEPTH)
                .map(|d| pool_gains[pool.binary_search(d).unwrap_or(0)])
                .collect();
            ndcg[e].push(crate::eval::ndcg_of_gains(
                JUDGE_DEPTH,
                &ranked,
                &pool_gains,
            ));
        }
    }
    let judged = ndcg.first().map_or(0, Vec::len);
    let alternatives = entries.saturating_sub(1).max(1);
    let confidence = 1.0 - ALPHA / alternatives as f64;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let mut judgements = Vec::with_capacity(entries);
    let mut best: Option<(usize, f64)> = None;
    for e in 0..entries {
        let differences: Vec<f64> = ndcg[e]
            .iter()
            .zip(&ndcg[0])
            .map(|(x, base)| x - base)
            .collect();
        let gain = mean(&differences);
        let interval = if e == 0 || judged == 0 {
            [0.0, 0.0]
        } else {
            bootstrap_interval(&differences, confidence)
        };
        let qualifies = e > 0 && judged >= MIN_QUERIES && gain >= MARGIN && interval[0] > 0.0;
        if qualifies && best.is_none_or(|(_, best_gain)| gain > best_gain) {
            best = Some((e, gain));
        }
        judgements.push(EntryJudgement {
            name: names[e].clone(),
            fusion: descriptions[e].clone(),
            judged_ndcg_at_10: mean(&ndcg[e]),
            gain,
            interval,
            wins: differences.iter().filter(|&&d| d > 0.0).count(),
            losses: differences.iter().filter(|&&d| d < 0.0).count(),
            labelled_ndcg_at_10: None,
        });
    }
    let (chosen, reason) = match best {
        Some((e, gain)) => (
            e,
            format!(
                "{} beat {} by {gain:.4} nDCG@10 (interval {:.4} to {:.4} at {:.1} %, margin {MARGIN})",
                names[e],
                names[0],
                judgements[e].interval[0],
                judgements[e].interval[1],
                confidence * 100.0
            ),
        ),
        None if judged < MIN_QUERIES => (
            0,
            format!(
                "{judged} judged queries, fewer than {MIN_QUERIES}: {} kept",
                names.first().map_or("the baseline", String::as_str)
            ),
        ),
        None => (
            0,
            format!(
                "no entry beat {} by {MARGIN} nDCG@10 with its interval above 0 at {:.1} %",
                names.first().map_or("the baseline", String::as_str),
                confidence * 100.0
            ),
        ),
    };
    Choice {
        chosen,
        name: names.get(chosen).cloned().unwrap_or_default(),
        reason,
        queries: judged,
        confidence,
        entries: judgements,
    }
}

/// Percentile bootstrap interval of the mean of `values` at `confidence` (two-sided), from
/// [`RESAMPLES`] resamples drawn with a fixed seed.
fn bootstrap_interval(values: &[f64], confidence: f64) -> [f64; 2] {
    if values.is_empty() {
        return [0.0, 0.0];
    }
    let mut state = SEED;
    let n = values.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sum: f64 = (0..n)
                .map(|_| values[(split_mix(&mut state) % n as u64) as usize])
                .sum();
            sum / n as f64
        })
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    [at(tail), at(1.0 - tail)]
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small, fixed pseudo-random sequence.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::Hit;

    fn base() -> Fusion {
        Fusion {
            method: Method::Rrf,
            rrf_k: 60.0,
            normalization: Normalization::MinMax,
            dense_weights: vec![1.0],
            sparse_weight: 1.0,
        }
    }

    fn hits(indices: &[usize]) -> Vec<Hit> {
        indices
            .iter()
            .enumerate()
            .map(|(i, &index)| Hit {
                index,
                score: 1.0 - i as f32 / 100.0,
            })
            .collect()
    }

    /// Every menu entry's top 10 for each query's (dense, sparse) lists.
    fn tops(menu: &[MenuEntry], lists: &[(Vec<Hit>, Vec<Hit>)]) -> Vec<Vec<Vec<usize>>> {
        menu.iter()
            .map(|entry| {
                lists
                    .iter()
                    .map(|(dense, sparse)| {
                        entry
                            .fusion
                            .fuse(&[dense], Some(sparse))
                            .iter()
                            .take(JUDGE_DEPTH)
                            .map(|h| h.index)
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn run(lists: &[(Vec<Hit>, Vec<Hit>)], relevant: impl Fn(usize, usize) -> bool) -> Choice {
        let menu = menu(&base(), true);
        let names: Vec<String> = menu.iter().map(|e| e.name.clone()).collect();
        let descriptions: Vec<String> = menu
            .iter()
            .map(|e| e.fusion.describe(&["minilm".to_string()], true))
            .collect();
        let tops = tops(&menu, lists);
        choose(&names, &descriptions, &tops, |q, d| {
            Some(if relevant(q, d) { 0.95 } else { 0.02 })
        })
    }

    /// Query `q`'s relevant documents are 1000·q + 0..3. The dense list holds them at the top
    /// in `dense_good` collections; the sparse list holds noise (or them, when `sparse_good`).
    fn collection(
        queries: usize,
        dense_good: bool,
        sparse_good: bool,
    ) -> Vec<(Vec<Hit>, Vec<Hit>)> {
        (0..queries)
            .map(|q| {
                let base = 1000 * q;
                let noise = |offset: usize| -> Vec<usize> {
                    (0..30)
                        .map(|i| base + 100 + offset + (i * 7 + q) % 60)
                        .collect()
                };
                let mut dense = noise(0);
                let mut sparse = noise(200);
                dense.dedup();
                sparse.dedup();
                if dense_good {
                    dense.splice(0..0, [base, base + 1]);
                }
                if sparse_good {
                    sparse.splice(0..0, [base + 2, base + 1]);
                }
                (hits(&dense), hits(&sparse))
            })
            .collect()
    }

    #[test]
    fn a_useless_sparse_list_leaves_the_dense_one() {
        let lists = collection(30, true, false);
        let relevant = |q: usize, d: usize| d >= 1000 * q && d < 1000 * q + 3;
        let choice = run(&lists, relevant);
        assert_eq!(choice.name, "dense", "{choice:#?}");
        assert_eq!(choice.queries, 30);
        assert!(choice.entries[1].interval[0] > 0.0);
        // Deterministic for a fixed input.
        assert_eq!(run(&lists, relevant), choice);
    }

    #[test]
    fn a_useless_dense_list_leaves_the_sparse_one() {
        let lists = collection(30, false, true);
        let choice = run(&lists, |q, d| d >= 1000 * q && d < 1000 * q + 3);
        assert_eq!(choice.name, "sparse", "{choice:#?}");
    }

    #[test]
    fn fusion_that_wins_is_kept() {
        // Each list finds a different relevant document: only fusion has both on top.
        let lists = collection(30, true, true);
        let choice = run(&lists, |q, d| d >= 1000 * q && d < 1000 * q + 3);
        assert_eq!(choice.chosen, 0, "{choice:#?}");
        assert!(
            choice.reason.starts_with("no entry beat rrf"),
            "{}",
            choice.reason
        );
        let dense = &choice.entries[1];
        assert!(dense.gain < 0.0 && dense.losses > dense.wins);
    }

    #[test]
    fn too_few_queries_keep_the_baseline() {
        let lists = collection(MIN_QUERIES - 1, true, false);
        let choice = run(&lists, |q, d| d >= 1000 * q && d < 1000 * q + 3);
        assert_eq!(choice.chosen, 0);
        assert!(choice.reason.contains("fewer than"), "{}", choice.reason);
    }

    #[test]
    fn an_unscored_pair_leaves_its_query_out() {
        let lists = collection(12, true, false);
        let menu = menu(&base(), true);
        let names: Vec<String> = menu.iter().map(|e| e.name.clone()).collect();
        let tops = tops(&menu, &lists);
        let choice = choose(&names, &names, &tops, |q, _| (q != 3).then_some(0.5));
        assert_eq!(choice.queries, 11);
    }

    #[test]
    fn the_menu_without_sparse_has_no_sparse_entries() {
        let names: Vec<String> = menu(&base(), false).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["rrf", "dense", "dbsf"]);
        let full = menu(&base(), true);
        assert_eq!(full.len(), 7);
        assert_eq!(full[4].fusion.dense_weights, [0.3]);
        assert!((full[4].fusion.sparse_weight - 0.7).abs() < 1e-12);
    }

    #[test]
    fn the_bootstrap_interval_covers_the_mean() {
        let values: Vec<f64> = (0..50).map(|i| (i % 5) as f64 / 10.0).collect();
        let [low, high] = bootstrap_interval(&values, 0.95);
        assert!(low < 0.2 && 0.2 < high && high - low < 0.15, "{low} {high}");
        let [low, high] = bootstrap_interval(&[0.3; 10], 0.99);
        assert!((low - 0.3).abs() < 1e-12 && (high - 0.3).abs() < 1e-12);
    }
}

//! `rerank.budget`: the +10 % rule enforced, not only reported. The rerank stage
//! (pipeline::rank) runs the rounds; this module plans them and records the plan.
//!
//! The rule: sparse + fusion + rerank may take at most `budget` × the dense stage's time. With
//! a budget, the rerank stage scores in two rounds. The **floor round** scores every query's
//! top `floor` candidates (`max(rerank.top_k, rerank.min_candidates)`): those are always
//! scored, and their time is this run's own measurement of the CrossEncoder's throughput, in
//! seconds per token (a pair's cost grows with its tokens; batches are formed by tokens). The
//! **plan** then picks one depth for every query (fewer candidates for every query rather than
//! fewer queries): the deepest whose remaining pairs, at the measured cost per token, fit in
//! [`PLAN_FILL`] of what the budget leaves after the dense-relative allowance, the sparse stage,
//! fusion and the floor round. The rest of the budget is the planner's margin: the budget holds
//! as long as the deeper pairs cost at most 1 / [`PLAN_FILL`] of the floor's cost per token.
//! When the sparse stage and fusion, or the floor round, already spent the budget, the floor is
//! all that runs; the run warns and the summary says the budget was not held.

use serde::{Deserialize, Serialize};

/// The share of what is left that the plan fills; the remainder is its margin against a
/// throughput that drops between the floor round and the deeper one.
pub const PLAN_FILL: f64 = 0.9;

/// What the planner knows once the floor round has run.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetInputs {
    /// The allowed overhead as a fraction of the dense stage's time.
    pub budget: f64,
    /// The dense stage's time in this run.
    pub dense_s: f64,
    /// What the sparse stage and fusion (retrieval included) already spent.
    pub spent_s: f64,
    /// Candidates every query gets.
    pub floor: usize,
    /// `rerank.candidates`: the most any query gets.
    pub candidates: usize,
    /// The rerank stage's time up to the plan (tokenizing every pair, the floor round).
    pub floor_s: f64,
    /// The floor round's model time and the tokens of the pairs the model scored in it: the
    /// measured cost per token.
    pub floor_model_s: f64,
    pub floor_tokens: usize,
    /// `extension_tokens[j]`: the tokens the model would score at candidate position
    /// `floor + j`, summed over the queries (pairs whose score is reused cost none).
    pub extension_tokens: Vec<usize>,
}

/// Why the depth is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    /// Every candidate fits: the depth is `rerank.candidates`.
    AllFit,
    /// The budget limits the depth between the floor and `rerank.candidates`.
    Limited,
    /// Sparse, fusion and the floor round already spent the budget: the floor only.
    FloorOverBudget,
    /// The floor round scored no pair (all reused), so there is no cost to predict from: the
    /// floor only.
    NoMeasurement,
}

/// The plan and, once the stage has run, its outcome (`manifest.json`, under the
/// collection's `overhead.rerank_budget`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RerankPlan {
    pub budget: f64,
    /// `budget` × the dense stage's seconds.
    pub allowed_s: f64,
    /// Sparse and fusion, spent before the rerank stage.
    pub spent_before_rerank_s: f64,
    pub floor: usize,
    pub candidates: usize,
    pub floor_s: f64,
    pub floor_model_s: f64,
    pub floor_tokens: usize,
    /// Measured in the floor round; absent when it scored no pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_per_1k_tokens: Option<f64>,
    /// The candidates every query gets.
    pub depth: usize,
    pub outcome: PlanOutcome,
    /// The deeper round's predicted seconds and tokens.
    pub predicted_extension_s: f64,
    pub extension_tokens: usize,
    /// (spent + floor + predicted extension) / dense.
    pub predicted_ratio: f64,
    /// [`PLAN_FILL`].
    pub plan_fill: f64,
    /// After the stage: the deeper round's seconds, the whole rerank stage's, and whether
    /// sparse + fusion + rerank stayed within `allowed_s` (the collection's `overhead.ratio`
    /// is the same measurement over the dense stage's time).
    pub extension_s: f64,
    pub rerank_s: f64,
    pub held: bool,
}

impl RerankPlan {
    /// The pairs' depth for the inputs (see the module docs).
    pub fn plan(inputs: &BudgetInputs) -> Self {
        let allowed_s = inputs.budget * inputs.dense_s;
        let left_s = allowed_s - inputs.spent_s - inputs.floor_s;
        let per_token =
            (inputs.floor_tokens > 0).then(|| inputs.floor_model_s / inputs.floor_tokens as f64);
        let deepest = inputs.candidates.max(inputs.floor);
        let reachable = inputs.extension_tokens.len().min(deepest - inputs.floor);
        let all_tokens: usize = inputs.extension_tokens[..reachable].iter().sum();
        let (extra, outcome) = match per_token {
            _ if all_tokens == 0 => (reachable, PlanOutcome::AllFit),
            _ if left_s <= 0.0 => (0, PlanOutcome::FloorOverBudget),
            None => (0, PlanOutcome::NoMeasurement),
            Some(per_token) => {
                let fits = PLAN_FILL * left_s;
                let mut tokens = 0;
                let mut extra = 0;
                for &at_depth in &inputs.extension_tokens[..reachable] {
                    if (tokens + at_depth) as f64 * per_token > fits + 1e-9 {
                        break;
                    }
                    tokens += at_depth;
                    extra += 1;
                }
                let outcome = if extra == reachable {
                    PlanOutcome::AllFit
                } else {
                    PlanOutcome::Limited
                };
                (extra, outcome)
            }
        };
        let extension_tokens: usize = inputs.extension_tokens[..extra].iter().sum();
        let predicted_extension_s = per_token.map_or(0.0, |p| p * extension_tokens as f64);
        let predicted_ratio = if inputs.dense_s > 0.0 {
            (inputs.spent_s + inputs.floor_s + predicted_extension_s) / inputs.dense_s
        } else {
            0.0
        };
        Self {
            budget: inputs.budget,
            allowed_s,
            spent_before_rerank_s: inputs.spent_s,
            floor: inputs.floor,
            candidates: inputs.candidates,
            floor_s: inputs.floor_s,
            floor_model_s: inputs.floor_model_s,
            floor_tokens: inputs.floor_tokens,
            seconds_per_1k_tokens: per_token.map(|p| p * 1000.0),
            depth: inputs.floor + extra,
            outcome,
            predicted_extension_s,
            extension_tokens,
            predicted_ratio,
            plan_fill: PLAN_FILL,
            extension_s: 0.0,
            rerank_s: 0.0,
            held: false,
        }
    }

    /// Records the deeper round's time, the stage's, and whether the budget held.
    pub fn finish(&mut self, extension_s: f64, rerank_s: f64) {
        self.extension_s = extension_s;
        self.rerank_s = rerank_s;
        self.held = self.spent_before_rerank_s + rerank_s <= self.allowed_s;
    }

    /// One line for the warning and the summary when the floor alone exceeds the budget.
    pub fn over_budget_reason(&self) -> Option<String> {
        (self.outcome == PlanOutcome::FloorOverBudget).then(|| {
            format!(
                "rerank.budget {:.0} % ({:.2} s) was spent before the deeper candidates: sparse + fusion {:.2} s, the floor of {} candidates {:.2} s; only the floor was reranked",
                100.0 * self.budget,
                self.allowed_s,
                self.spent_before_rerank_s,
                self.floor,
                self.floor_s
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 queries; every candidate position costs 100 queries × 200 tokens.
    fn inputs(budget: f64, dense_s: f64, spent_s: f64, floor_s: f64) -> BudgetInputs {
        BudgetInputs {
            budget,
            dense_s,
            spent_s,
            floor: 10,
            candidates: 100,
            floor_s,
            floor_model_s: floor_s,
            // 10 positions × 20,000 tokens.
            floor_tokens: 200_000,
            extension_tokens: vec![20_000; 90],
        }
    }

    /// An independent count of the depth: whole positions while the predicted seconds stay
    /// within PLAN_FILL of what is left.
    fn expected_depth(i: &BudgetInputs) -> usize {
        let per_position = i.floor_s / i.floor_tokens as f64 * 20_000.0;
        let left = i.budget * i.dense_s - i.spent_s - i.floor_s;
        if left <= 0.0 {
            return i.floor;
        }
        let extra = ((PLAN_FILL * left) / per_position + 1e-9).floor() as usize;
        i.floor + extra.min(90)
    }

    #[test]
    fn the_depth_fills_the_budget_for_a_range_of_budgets_dense_times_and_pair_costs() {
        for budget in [0.05, 0.10, 0.25, 0.5, 1.0, 3.0] {
            for dense_s in [10.0, 60.0, 600.0] {
                for floor_s in [0.5, 2.0, 8.0] {
                    let i = inputs(budget, dense_s, 0.2 * budget * dense_s, floor_s);
                    let plan = RerankPlan::plan(&i);
                    let expected = expected_depth(&i);
                    assert_eq!(
                        plan.depth, expected,
                        "budget {budget}, dense {dense_s} s, floor {floor_s} s"
                    );
                    assert!(plan.depth >= i.floor && plan.depth <= i.candidates);
                    if plan.outcome != PlanOutcome::FloorOverBudget {
                        // The plan keeps its margin.
                        let predicted = i.spent_s + i.floor_s + plan.predicted_extension_s;
                        assert!(
                            predicted
                                <= i.spent_s
                                    + i.floor_s
                                    + PLAN_FILL * (i.budget * i.dense_s - i.spent_s - i.floor_s)
                                    + 1e-9
                        );
                        assert!((plan.predicted_ratio - predicted / dense_s).abs() < 1e-12);
                    }
                    let outcome = match plan.depth {
                        _ if i.budget * i.dense_s - i.spent_s - i.floor_s <= 0.0 => {
                            PlanOutcome::FloorOverBudget
                        }
                        100 => PlanOutcome::AllFit,
                        _ => PlanOutcome::Limited,
                    };
                    assert_eq!(plan.outcome, outcome);
                }
            }
        }
    }

    #[test]
    fn the_sparse_stage_counts_against_the_budget() {
        // 60 s dense, 10 %: 6 s allowed. The floor took 1 s (0.1 s per position beyond it).
        let without = RerankPlan::plan(&inputs(0.10, 60.0, 0.0, 1.0));
        let with = RerankPlan::plan(&inputs(0.10, 60.0, 3.0, 1.0));
        assert_eq!(without.depth, 10 + 45); // 0.9 × 5 s / 0.1 s
        assert_eq!(with.depth, 10 + 18); // 0.9 × 2 s / 0.1 s
        assert_eq!(with.outcome, PlanOutcome::Limited);
        // Sparse alone over the budget: the floor only, said so.
        let over = RerankPlan::plan(&inputs(0.10, 60.0, 7.0, 1.0));
        assert_eq!(
            (over.depth, over.outcome),
            (10, PlanOutcome::FloorOverBudget)
        );
        assert!(over
            .over_budget_reason()
            .unwrap()
            .contains("only the floor"));
    }

    #[test]
    fn the_floor_is_kept_and_the_depth_never_passes_the_candidates() {
        // The floor round alone over the budget.
        let plan = RerankPlan::plan(&inputs(0.10, 10.0, 0.0, 2.0));
        assert_eq!(
            (plan.depth, plan.outcome),
            (10, PlanOutcome::FloorOverBudget)
        );
        // A huge budget: every candidate, no further.
        let plan = RerankPlan::plan(&inputs(100.0, 600.0, 0.0, 1.0));
        assert_eq!((plan.depth, plan.outcome), (100, PlanOutcome::AllFit));
        // Fewer candidates than positions with tokens: capped at the candidates.
        let mut short = inputs(100.0, 600.0, 0.0, 1.0);
        short.candidates = 30;
        assert_eq!(RerankPlan::plan(&short).depth, 30);
        // Lists shorter than the candidates (a small collection): all there is.
        let mut few = inputs(100.0, 600.0, 0.0, 1.0);
        few.extension_tokens.truncate(5);
        assert_eq!(RerankPlan::plan(&few).depth, 15);
    }

    #[test]
    fn reused_pairs_cost_nothing_and_no_measurement_keeps_the_floor() {
        // Every deeper pair reused: all fit whatever the budget.
        let mut reused = inputs(0.01, 60.0, 5.0, 1.0);
        reused.extension_tokens = vec![0; 90];
        let plan = RerankPlan::plan(&reused);
        assert_eq!((plan.depth, plan.outcome), (100, PlanOutcome::AllFit));
        // The floor's pairs all reused: no cost per token to predict from.
        let mut unmeasured = inputs(1.0, 60.0, 0.0, 0.0);
        unmeasured.floor_tokens = 0;
        let plan = RerankPlan::plan(&unmeasured);
        assert_eq!((plan.depth, plan.outcome), (10, PlanOutcome::NoMeasurement));
        assert_eq!(plan.seconds_per_1k_tokens, None);
    }

    #[test]
    fn finish_says_whether_the_budget_held() {
        let mut plan = RerankPlan::plan(&inputs(0.10, 60.0, 0.0, 1.0));
        let on_plan = plan.floor_s + plan.predicted_extension_s;
        plan.finish(plan.predicted_extension_s, on_plan);
        assert!(plan.held);
        plan.finish(10.0, plan.floor_s + 10.0);
        assert!(!plan.held);
    }
}

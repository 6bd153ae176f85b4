//! Batch planning by token budget. Free of candle so it is tested in milliseconds.
//!
//! Texts are sorted by token length (longest first, so the most demanding batch runs first and
//! padding waste stays small), then packed greedily while `items × longest ≤ max_tokens` and
//! `items ≤ max_items`. [`crate::dispatch`] runs the plan (workers, out-of-memory halving,
//! splitting on failure) and puts results back in input order.

use serde::Serialize;

/// Limits of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchBudget {
    /// Padded tokens per batch: items × longest sequence.
    pub max_tokens: usize,
    /// Items per batch, whatever their length.
    pub max_items: usize,
}

/// Groups of input indices, one group per batch, in execution order.
pub fn plan_batches(lengths: &[usize], budget: BatchBudget) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable sort: equal lengths keep input order, so plans are deterministic.
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
    let max_items = budget.max_items.max(1);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for index in order {
        let len = lengths[index].max(1);
        let widest = longest.max(len);
        let fits = current.len() < max_items && (current.len() + 1) * widest <= budget.max_tokens;
        if !current.is_empty() && !fits {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        // A single item longer than the budget still runs, alone.
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Splits the largest batches of `plan` in two until there are at least `workers` batches (or
/// every batch holds one item), so that a small input (a few changed chunks of a `--reuse` run,
/// a short last window) keeps every worker busy instead of one running a single batch while the
/// others wait. A split batch still fits its budget (fewer items, no longer item); the longest
/// items still run first.
pub fn spread_over(mut plan: Vec<Vec<usize>>, workers: usize) -> Vec<Vec<usize>> {
    while plan.len() < workers {
        let Some((largest, _)) = plan
            .iter()
            .enumerate()
            .filter(|(_, batch)| batch.len() > 1)
            .max_by_key(|(position, batch)| (batch.len(), std::cmp::Reverse(*position)))
        else {
            break;
        };
        let half = plan[largest].len().div_ceil(2);
        let tail = plan[largest].split_off(half);
        plan.insert(largest + 1, tail);
    }
    plan
}

/// Counters of what a stage's batches did, for logs and the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchStats {
    pub batches: usize,
    pub items: usize,
    /// Real (unpadded) tokens.
    pub tokens: usize,
    /// Tokens including padding: Σ items × longest.
    pub padded_tokens: usize,
    /// The largest batch's items × longest (what a memory budget bounds).
    pub max_batch_tokens: usize,
    pub min_batch_size: usize,
    pub max_batch_size: usize,
}

impl BatchStats {
    pub fn record(&mut self, lengths: &[usize]) {
        let longest = lengths.iter().copied().max().unwrap_or(0);
        self.batches += 1;
        self.items += lengths.len();
        self.tokens += lengths.iter().sum::<usize>();
        self.padded_tokens += longest * lengths.len();
        self.max_batch_tokens = self.max_batch_tokens.max(longest * lengths.len());
        self.min_batch_size = if self.batches == 1 {
            lengths.len()
        } else {
            self.min_batch_size.min(lengths.len())
        };
        self.max_batch_size = self.max_batch_size.max(lengths.len());
    }

    /// Adds the batches of `other` (another round of the same stage).
    pub fn absorb(&mut self, other: &BatchStats) {
        if other.batches == 0 {
            return;
        }
        self.min_batch_size = if self.batches == 0 {
            other.min_batch_size
        } else {
            self.min_batch_size.min(other.min_batch_size)
        };
        self.batches += other.batches;
        self.items += other.items;
        self.tokens += other.tokens;
        self.padded_tokens += other.padded_tokens;
        self.max_batch_tokens = self.max_batch_tokens.max(other.max_batch_tokens);
        self.max_batch_size = self.max_batch_size.max(other.max_batch_size);
    }

    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.items as f64 / self.batches as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: BatchBudget = BatchBudget {
        max_tokens: 100,
        max_items: 4,
    };

    #[test]
    fn every_index_planned_exactly_once() {
        let lengths = [5, 50, 7, 30, 30, 1, 99, 12, 3, 60];
        let plan = plan_batches(&lengths, BUDGET);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
    }

    #[test]
    fn batches_respect_token_and_item_limits() {
        let lengths = [5, 50, 7, 30, 30, 1, 99, 12, 3, 60, 8, 8, 8, 8, 8];
        for batch in plan_batches(&lengths, BUDGET) {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(batch.len() <= BUDGET.max_items);
            assert!(batch.len() * longest <= BUDGET.max_tokens, "{batch:?}");
        }
    }

    #[test]
    fn longest_first_and_oversized_items_run_alone() {
        let lengths = [10, 500, 20];
        let plan = plan_batches(&lengths, BUDGET);
        assert_eq!(plan[0], vec![1]);
        assert_eq!(plan[1], vec![2, 0]);
    }

    #[test]
    fn a_plan_smaller_than_the_workers_is_spread_over_them() {
        let lengths = [10, 9, 8, 7, 6];
        let plan = plan_batches(&lengths, BUDGET);
        assert_eq!(plan, vec![vec![0, 1, 2, 3], vec![4]]);
        // Four workers: the four-item batch is halved, then the first half again.
        assert_eq!(
            spread_over(plan.clone(), 4),
            vec![vec![0], vec![1], vec![2, 3], vec![4]]
        );
        // Enough batches already, or nothing left to split: the plan is unchanged.
        assert_eq!(spread_over(plan.clone(), 2), plan);
        assert_eq!(
            spread_over(vec![vec![0], vec![1]], 8),
            vec![vec![0], vec![1]]
        );
        assert_eq!(spread_over(Vec::new(), 2), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn stats_count_padding() {
        let mut stats = BatchStats::default();
        stats.record(&[10, 4]);
        stats.record(&[3]);
        assert_eq!(stats.batches, 2);
        assert_eq!(stats.tokens, 17);
        assert_eq!(stats.padded_tokens, 23);
        assert_eq!((stats.min_batch_size, stats.max_batch_size), (1, 2));
    }
}

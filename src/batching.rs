//! Batch planning by token budget. Free of candle so it is tested in milliseconds.
//!
//! Texts are sorted by token length (longest first, so the most demanding batch runs first and
//! padding waste stays small), then packed greedily while `items × longest ≤ max_tokens` and
//! `items ≤ max_items`. Results are put back in input order by [`run_in_input_order`].

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

    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.items as f64 / self.batches as f64
        }
    }
}

/// A batch function returned a different number of results than it was given items.
#[derive(Debug, thiserror::Error)]
#[error("a batch of {expected} items returned {got} results")]
pub struct BatchSizeMismatch {
    pub expected: usize,
    pub got: usize,
}

/// Runs `run` on each planned batch and returns the results in input order.
pub fn run_in_input_order<T, E, F>(
    count: usize,
    plan: &[Vec<usize>],
    mut run: F,
) -> Result<Vec<T>, E>
where
    F: FnMut(&[usize]) -> Result<Vec<T>, E>,
    E: From<BatchSizeMismatch>,
{
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    for batch in plan {
        let results = run(batch)?;
        if results.len() != batch.len() {
            return Err(BatchSizeMismatch {
                expected: batch.len(),
                got: results.len(),
            }
            .into());
        }
        for (&index, result) in batch.iter().zip(results) {
            slots[index] = Some(result);
        }
    }
    let filled = slots.iter().filter(|slot| slot.is_some()).count();
    if filled != count {
        return Err(BatchSizeMismatch {
            expected: count,
            got: filled,
        }
        .into());
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Per-item outcome of [`run_splitting_on_failure`].
pub struct SplitOutcome<T, E> {
    /// (input index, result), in the batch's order.
    pub results: Vec<(usize, Result<T, E>)>,
    /// Extra calls made after the first one failed.
    pub retries: usize,
}

/// Runs `run` on `batch`; if it fails, splits the batch in halves and retries each half,
/// recursively, down to single items. Only the items that fail on their own get an error, so
/// one bad chunk cannot take its batch-mates down with it. Nothing is lost or duplicated: every
/// index of `batch` appears exactly once in the outcome.
pub fn run_splitting_on_failure<T, E, F>(batch: &[usize], run: &mut F) -> SplitOutcome<T, E>
where
    F: FnMut(&[usize]) -> Result<Vec<T>, E>,
    E: From<BatchSizeMismatch>,
{
    let mut outcome = SplitOutcome {
        results: Vec::with_capacity(batch.len()),
        retries: 0,
    };
    split_into(batch, run, &mut outcome);
    outcome
}

fn split_into<T, E, F>(batch: &[usize], run: &mut F, outcome: &mut SplitOutcome<T, E>)
where
    F: FnMut(&[usize]) -> Result<Vec<T>, E>,
    E: From<BatchSizeMismatch>,
{
    let attempt = run(batch).and_then(|results| {
        if results.len() == batch.len() {
            Ok(results)
        } else {
            Err(BatchSizeMismatch {
                expected: batch.len(),
                got: results.len(),
            }
            .into())
        }
    });
    match attempt {
        Ok(results) => outcome
            .results
            .extend(batch.iter().copied().zip(results.into_iter().map(Ok))),
        Err(err) if batch.len() == 1 => outcome.results.push((batch[0], Err(err))),
        Err(_) => {
            let (left, right) = batch.split_at(batch.len() / 2);
            outcome.retries += 2;
            split_into(left, run, outcome);
            split_into(right, run, outcome);
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
    fn results_come_back_in_input_order() {
        let lengths = [3, 9, 1, 7, 5];
        let plan = plan_batches(
            &lengths,
            BatchBudget {
                max_tokens: 18,
                max_items: 8,
            },
        );
        assert!(plan.len() > 1);
        let out: Vec<usize> =
            run_in_input_order::<_, BatchSizeMismatch, _>(lengths.len(), &plan, |batch| {
                Ok(batch.iter().map(|&i| lengths[i] * 10).collect())
            })
            .unwrap();
        assert_eq!(out, vec![30, 90, 10, 70, 50]);
    }

    #[test]
    fn short_batch_result_is_an_error_not_a_gap() {
        let plan = vec![vec![0, 1]];
        let err = run_in_input_order::<usize, BatchSizeMismatch, _>(2, &plan, |_| Ok(vec![1]))
            .unwrap_err();
        assert_eq!((err.expected, err.got), (2, 1));
    }

    #[test]
    fn splitting_isolates_the_failing_items() {
        let batch: Vec<usize> = (10..18).collect();
        let mut calls = 0;
        let outcome = run_splitting_on_failure::<_, BatchSizeMismatch, _>(
            &batch,
            &mut |items: &[usize]| {
                calls += 1;
                if items.contains(&13) || items.contains(&16) {
                    Err(BatchSizeMismatch {
                        expected: 0,
                        got: 0,
                    })
                } else {
                    Ok(items.iter().map(|i| i * 2).collect())
                }
            },
        );
        let mut seen: Vec<usize> = outcome.results.iter().map(|(i, _)| *i).collect();
        seen.sort();
        assert_eq!(seen, batch, "every item exactly once");
        let failed: Vec<usize> = outcome
            .results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(failed, vec![13, 16]);
        for (index, result) in &outcome.results {
            if let Ok(value) = result {
                assert_eq!(*value, index * 2, "results stay attached to their item");
            }
        }
        assert_eq!(outcome.retries, calls - 1);
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

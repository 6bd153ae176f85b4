//! One way every stage runs its batches: plan by token budget, dispatch to the model's workers
//! ([`crate::dispatch::run_batches`]: adaptive budget, halving on out-of-memory, splitting on
//! failure, results in input order), record statistics and progress, and let tests inject
//! faults. The stages differ only in what a failed item becomes: a dense chunk gets no point
//! (counted, the collection partial), sparse falls back per chunk, rerank fails the query.

use super::{run_batches, AdaptivePolicy, DispatchError, DispatchStats};
use crate::batching::{plan_batches, spread_over, BatchBudget, BatchStats};
use crate::models::ModelError;
use std::sync::Mutex;

/// A fault a test forces on a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The batch fails (an inference error).
    Fail,
    /// The batch runs out of memory (the worker halves its budget and retries).
    OutOfMemory,
}

/// Decides, from a batch's item indices (chunks; queries for rerank), whether to fail it: the
/// way tests exercise recovery and fallbacks without relying on chance.
pub type FaultInjector = dyn Fn(&[usize]) -> Option<Fault> + Send + Sync;

/// Per-item results in input order, with what it took.
pub struct BatchResults<T> {
    pub results: Vec<Result<T, ModelError>>,
    pub stats: BatchStats,
    pub dispatch: DispatchStats,
}

/// Runs items of `lengths` tokens through `run`, one batch worker per entry of `workers` (a
/// model replica per GPU, or one CPU model repeated once per thread; see
/// [`crate::models::Replicas::workers`]). `fault_keys` maps an item to the index a fault
/// injector sees (chunk or query index).
#[allow(clippy::too_many_arguments)]
pub fn run_stage_batches<M, T, F>(
    workers: &[&M],
    lengths: &[usize],
    budget: BatchBudget,
    fault: Option<&FaultInjector>,
    fault_keys: &(dyn Fn(usize) -> usize + Sync),
    on_batch: &(dyn Fn(usize) + Sync),
    run: F,
) -> Result<BatchResults<T>, DispatchError>
where
    M: Sync,
    T: Send,
    F: Fn(&M, &[usize]) -> Result<Vec<T>, ModelError> + Sync,
{
    let plan = spread_over(plan_batches(lengths, budget), workers.len());
    let stats = Mutex::new(BatchStats::default());
    let outcome = run_batches(
        workers,
        lengths,
        plan,
        AdaptivePolicy::new(budget.max_tokens),
        |model, _worker, items| {
            if let Some(fault) = fault {
                let keys: Vec<usize> = items.iter().map(|&i| fault_keys(i)).collect();
                match fault(&keys) {
                    Some(Fault::Fail) => {
                        return Err(ModelError::Injected.as_batch_failure());
                    }
                    Some(Fault::OutOfMemory) => {
                        return Err(ModelError::OutOfMemory {
                            message: "injected (test)".to_string(),
                        }
                        .as_batch_failure());
                    }
                    None => {}
                }
            }
            let values = run(model, items).map_err(ModelError::as_batch_failure)?;
            if let Ok(mut stats) = stats.lock() {
                stats.record(&items.iter().map(|&i| lengths[i]).collect::<Vec<_>>());
            }
            on_batch(items.len());
            Ok(values)
        },
    )?;
    Ok(BatchResults {
        results: outcome
            .results
            .into_iter()
            .map(|result| result.map_err(ModelError::from_item))
            .collect(),
        stats: stats.into_inner().unwrap_or_default(),
        dispatch: outcome.stats,
    })
}

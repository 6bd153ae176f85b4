//! The one contract every model kind meets ([`Encoder`]: BERT bi-encoder, SPLADE, CrossEncoder),
//! and the one batched path every stage, the queries and the benchmark use ([`run_encoded`]):
//! tokenised items → token-budget plan → the replicas' workers → one result per item, in input
//! order ([`run_encoder_batches`]: the plan run by [`crate::dispatch::run_batches`], with its
//! adaptive budget, halving on out-of-memory and splitting on failure; statistics, progress and
//! the faults tests inject). The stages differ only in what a failed item becomes: a dense
//! chunk gets no point (counted, the collection partial), sparse falls back per chunk, rerank
//! fails the query.

use super::identity::ModelIdentity;
use super::tokenize::Encoded;
use super::ModelError;
use crate::batching::{plan_batches, spread_over, BatchBudget, BatchStats};
use crate::dispatch::{
    run_batches, AdaptivePolicy, DispatchError, DispatchStats, Fault, FaultInjector,
};
use crate::gpu::EncoderMemoryModel;
use std::sync::Mutex;

/// What the runner, the planner and the dispatcher need of a loaded model.
pub trait Encoder: Sync {
    /// One item's result (a dense vector, a sparse vector, a pair score).
    type Output: Send;

    fn identity(&self) -> &ModelIdentity;

    /// Concurrent batch workers this copy serves (CPU threads sharing it; 1 on a GPU).
    fn workers(&self) -> usize;

    /// (activation-memory model, weight bytes) of one copy, for the device budget.
    fn memory_profile(&self) -> (EncoderMemoryModel, u64);

    /// One forward pass over tokenised items; one output per item, in order.
    fn forward(&self, items: &[&Encoded]) -> Result<Vec<Self::Output>, ModelError>;
}

/// Runs `encodings` through the `workers`' [`Encoder::forward`]. `fault_keys` maps an item to
/// the index a test's fault injector sees (chunk position or query index); `on_batch` hears
/// of every finished batch (progress).
pub fn run_encoded<M: Encoder>(
    workers: &[&M],
    encodings: &[Encoded],
    budget: BatchBudget,
    fault: Option<&FaultInjector>,
    fault_keys: &(dyn Fn(usize) -> usize + Sync),
    on_batch: &(dyn Fn(usize) + Sync),
) -> Result<BatchResults<M::Output>, DispatchError> {
    let lengths: Vec<usize> = encodings.iter().map(Encoded::len).collect();
    run_encoder_batches(
        workers,
        &lengths,
        budget,
        fault,
        fault_keys,
        on_batch,
        |model, batch| {
            let items: Vec<&Encoded> = batch.iter().map(|&i| &encodings[i]).collect();
            model.forward(&items)
        },
    )
}

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
pub fn run_encoder_batches<M, T, F>(
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

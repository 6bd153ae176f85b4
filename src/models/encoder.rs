//! The one contract every model kind meets ([`Encoder`]: BERT bi-encoder, SPLADE, CrossEncoder),
//! and the one batched path every stage, the queries and the benchmark use ([`run_encoded`]):
//! tokenised items → token-budget plan → the replicas' workers → one result per item, in input
//! order (see [`crate::dispatch::run_stage_batches`] for out-of-memory halving and splitting).

use super::identity::ModelIdentity;
use super::tokenize::Encoded;
use super::ModelError;
use crate::batching::BatchBudget;
use crate::dispatch::{run_stage_batches, BatchResults, DispatchError, FaultInjector};
use crate::gpu::EncoderMemoryModel;

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
    run_stage_batches(
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

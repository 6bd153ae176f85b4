//! A stage's hold on its device: lease it ([`crate::gpu::lease_gpus`]), size the stage's batches
//! from the budget the lease leaves after the model's weights and the architecture's memory
//! model, and record both for the manifest. The lease is released when the returned guard is
//! dropped at the end of the stage, on every path.
//!
//! On the CPU the host's memory is read and budgeted the same way (the ceiling bounds RAM per
//! stage, shared by the CPU workers), but not locked: CPU jobs may run side by side.

use crate::batching::BatchBudget;
use crate::gpu::{
    lease_gpus, DeviceId, DeviceLease, EncoderMemoryModel, LeaseError, LeaseLog, LeaseOptions,
    MemoryProbe, StageMemory,
};
use crate::models::{CrossEncoder, DenseEmbedder, ModelIdentity, SpladeEncoder};
use tracing::{info, warn};

/// What one stage needs to know to lease and plan.
pub struct StageNeeds<'a> {
    pub stage: &'a str,
    pub device_label: &'a str,
    pub model: EncoderMemoryModel,
    pub weights_bytes: u64,
    pub max_length: usize,
    pub workers: usize,
    pub configured: BatchBudget,
}

/// What a stage's model tells the planner: implemented by the three model kinds.
pub trait StageModel {
    fn identity(&self) -> &ModelIdentity;
    /// (activation-memory model, weight bytes).
    fn memory_profile(&self) -> (EncoderMemoryModel, u64);
    fn workers(&self) -> usize;
}

macro_rules! stage_model {
    ($($model:ty),*) => {$(
        impl StageModel for $model {
            fn identity(&self) -> &ModelIdentity {
                <$model>::identity(self)
            }
            fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
                <$model>::memory_profile(self)
            }
            fn workers(&self) -> usize {
                <$model>::workers(self)
            }
        }
    )*};
}

stage_model!(DenseEmbedder, SpladeEncoder, CrossEncoder);

impl<'a> StageNeeds<'a> {
    /// The needs of `model` running `stage` with the configured batch budget.
    pub fn for_model(stage: &'a str, model: &'a impl StageModel, configured: BatchBudget) -> Self {
        let (memory, weights_bytes) = model.memory_profile();
        let identity = model.identity();
        Self {
            stage,
            device_label: &identity.device,
            model: memory,
            weights_bytes,
            max_length: identity.max_length,
            workers: model.workers(),
            configured,
        }
    }
}

/// Leases the stage's device and plans its batch budget.
pub fn lease_stage<'p>(
    needs: &StageNeeds<'_>,
    options: &LeaseOptions,
    probe: &'p dyn MemoryProbe,
    log: &LeaseLog,
) -> Result<(DeviceLease<'p>, BatchBudget, StageMemory), LeaseError> {
    let device: DeviceId = needs
        .device_label
        .parse()
        .map_err(|_| LeaseError::UnknownDevice(needs.device_label.to_string()))?;
    let lease = lease_gpus(
        std::slice::from_ref(&device),
        &options.for_stage(needs.stage),
        probe,
        log,
    )?;
    let budget_bytes = lease
        .devices()
        .first()
        .map_or(0, |leased| leased.budget_bytes);
    let available = lease.budget_after_weights(&device, needs.weights_bytes);
    let per_worker = available / needs.workers.max(1) as u64;
    let capacity = needs.model.max_tokens_within(per_worker, needs.max_length);
    let max_tokens = needs.configured.max_tokens.min(capacity.max_tokens).max(1);
    if !capacity.one_item_fits {
        warn!(stage = needs.stage, device = %device, budget_bytes, "one item at the max length may not fit the memory budget");
    }
    if max_tokens < needs.configured.max_tokens {
        info!(stage = needs.stage, device = %device, max_tokens, configured = needs.configured.max_tokens,
            "batch token budget lowered to fit the memory ceiling");
    }
    let memory = StageMemory {
        device: device.to_string(),
        budget_bytes,
        weights_bytes: needs.weights_bytes,
        workers: needs.workers.max(1),
        max_tokens,
        one_item_fits: capacity.one_item_fits,
    };
    Ok((
        lease,
        BatchBudget {
            max_tokens,
            max_items: needs.configured.max_items,
        },
        memory,
    ))
}

//! A stage's hold on its device: lease it ([`crate::gpu::lease_gpus`]), size the stage's batches
//! from the budget the lease leaves after the model's weights and the architecture's memory
//! model, and record both for the manifest. The lease is released when the returned guard is
//! dropped at the end of the stage, on every path.
//!
//! On the CPU the host's memory is read and budgeted the same way (the ceiling bounds RAM per
//! stage, shared by the CPU workers), but not locked: CPU jobs may run side by side.

use crate::batching::BatchBudget;
pub use crate::gpu::StageNeeds;
use crate::gpu::{
    lease_gpus, DeviceId, DeviceLease, LeaseError, LeaseLog, LeaseOptions, MemoryProbe, StageMemory,
};
use tracing::{info, warn};

/// Leases the stage's devices (every replica's) and plans its batch budget: each worker gets
/// what its device has left after the weights, shared among that device's workers, and the
/// tightest device sets the plan for all (each worker then adapts on its own).
pub fn lease_stage<'p>(
    needs: &StageNeeds,
    options: &LeaseOptions,
    probe: &'p dyn MemoryProbe,
    log: &LeaseLog,
) -> Result<(DeviceLease<'p>, BatchBudget, StageMemory), LeaseError> {
    let devices: Vec<DeviceId> = needs
        .device_labels
        .iter()
        .map(|label| {
            label
                .parse()
                .map_err(|_| LeaseError::UnknownDevice(label.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let lease = lease_gpus(
        &devices,
        &options.for_stage(needs.stage.as_str()),
        probe,
        log,
    )?;
    let workers_per_device = (needs.workers / devices.len().max(1)).max(1) as u64;
    let tightest = devices
        .iter()
        .map(|device| {
            let budget = lease
                .devices()
                .iter()
                .find(|leased| leased.id == *device)
                .map_or(0, |leased| leased.budget_bytes);
            (
                device,
                budget,
                lease.budget_after_weights(device, needs.weights_bytes),
            )
        })
        .min_by_key(|(_, _, available)| *available);
    let Some((device, budget_bytes, available)) = tightest else {
        return Err(LeaseError::UnknownDevice("(no device)".to_string()));
    };
    let per_worker = available / workers_per_device;
    let capacity = needs.model.max_tokens_within(per_worker, needs.max_length);
    let max_tokens = needs.configured.max_tokens.min(capacity.max_tokens).max(1);
    if !capacity.one_item_fits {
        warn!(stage = %needs.stage, device = %device, budget_bytes, "one item at the max length may not fit the memory budget");
    }
    if max_tokens < needs.configured.max_tokens {
        info!(stage = %needs.stage, device = %device, max_tokens, configured = needs.configured.max_tokens,
            "batch token budget lowered to fit the memory ceiling");
    }
    let memory = StageMemory {
        device: needs.device_labels.join(","),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{EncoderMemoryModel, HeadMemory, LeaseEventKind, ScriptedProbe};
    use crate::stage::Stage;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_stage_on_two_gpus_leases_both_and_plans_for_the_tighter_one() {
        let dir = tempfile::tempdir().unwrap();
        let probe = ScriptedProbe::new()
            .with_constant(DeviceId::Cuda(0), 16 * GIB, 15 * GIB) // the ceiling binds: 12
            .with_constant(DeviceId::Cuda(1), 16 * GIB, 3 * GIB); // free memory binds: 3
        let model = EncoderMemoryModel {
            hidden: 384,
            intermediate: 1536,
            heads: 12,
            layers: 6,
            bytes_per_value: 2,
            head: HeadMemory::Pooling,
        };
        let needs = StageNeeds {
            stage: Stage::Dense,
            device_labels: vec!["cuda:0".to_string(), "cuda:1".to_string()],
            model,
            weights_bytes: GIB,
            max_length: 512,
            workers: 2,
            configured: BatchBudget {
                max_tokens: usize::MAX / 4,
                max_items: 1 << 20,
            },
        };
        let options = LeaseOptions {
            lock_dir: dir.path().to_path_buf(),
            ceiling_bytes: 12 * GIB,
            ..LeaseOptions::default()
        };
        let log = LeaseLog::new();
        {
            let (lease, budget, memory) = lease_stage(&needs, &options, &probe, &log).unwrap();
            let leased: Vec<DeviceId> = lease.devices().iter().map(|d| d.id.clone()).collect();
            assert_eq!(leased, vec![DeviceId::Cuda(0), DeviceId::Cuda(1)]);
            // One worker per device: each worker's plan fits the device with less room
            // (3 GiB free − 1 GiB of weights), not the roomier one.
            let tight = model.max_tokens_within(2 * GIB, 512).max_tokens;
            let roomy = model.max_tokens_within(11 * GIB, 512).max_tokens;
            assert!(tight < roomy);
            assert_eq!(budget.max_tokens, tight);
            assert_eq!(memory.device, "cuda:0,cuda:1");
            assert_eq!(memory.budget_bytes, 3 * GIB);
            assert_eq!(memory.workers, 2);
        }
        let released = log
            .events()
            .iter()
            .filter(|e| e.kind == LeaseEventKind::Released)
            .count();
        assert_eq!(released, 2, "both devices released with the stage");
    }
}

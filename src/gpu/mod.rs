//! Devices, their memory, and exclusive leases.
//!
//! A stage's device work goes through three steps, each its own module so each is tested
//! without a GPU:
//!
//! 1. [`lease_gpus`] ([`lease`]) takes an exclusive OS file lock per device — two jobs on one
//!    machine must not share a GPU — and reads each device's memory through a [`MemoryProbe`]
//!    ([`memory`]). A device's budget is min(ceiling, free memory at lease). The returned
//!    [`DeviceLease`] is an RAII guard: dropping it (normally, on an early return, or while
//!    unwinding from a panic) releases every lock. Every lease, release, snapshot and busy
//!    device is recorded in a [`LeaseLog`] for the manifest.
//! 2. [`EncoderMemoryModel`] ([`budget`]) turns the budget left after the weights
//!    ([`DeviceLease::budget_after_weights`]) into a token budget for the batch planner
//!    ([`crate::batching::plan_batches`]), conservatively for every batch shape it can form.
//! 3. [`crate::dispatch::run_batches`] runs the planned batches, one worker per leased device,
//!    halving a worker's budget on out-of-memory and growing it back once pressure eases.
//!
//! Probes are injected (`&dyn MemoryProbe`): [`SystemMemoryProbe`] reads the host,
//! `CudaMemoryProbe` (feature `cuda`) reads GPUs and their peaks, and [`ScriptedProbe`] replays
//! readings in tests. [`default_probe`] picks the one for this build.

pub mod budget;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod lease;
pub mod memory;
pub mod runtime;

/// What the CUDA start-up check found, when this run uses a GPU (recorded in the manifest).
pub fn cuda_report() -> Option<runtime::CudaReport> {
    #[cfg(feature = "cuda")]
    {
        cuda::last_report()
    }
    #[cfg(not(feature = "cuda"))]
    {
        None
    }
}

/// The probe a run uses: the CUDA probe (which also reads the host) when built with `cuda`,
/// the host's otherwise (a CPU-only build has no GPU to read).
pub fn default_probe() -> Box<dyn MemoryProbe> {
    #[cfg(feature = "cuda")]
    {
        Box::new(cuda::CudaMemoryProbe::new())
    }
    #[cfg(not(feature = "cuda"))]
    {
        Box::new(SystemMemoryProbe)
    }
}

pub use budget::{BatchCapacity, EncoderMemoryModel, HeadMemory, StageMemory, StageNeeds};
pub use lease::{
    lease_gpus, DeviceLease, HolderPid, LeaseError, LeaseEvent, LeaseEventKind, LeaseLog,
    LeaseOptions, LeaseWait, LeasedDevice, DEFAULT_CEILING_BYTES,
};
pub use memory::{
    parse_meminfo, DeviceId, MemoryProbe, MemoryReading, ParseDeviceIdError, ProbeError,
    ScriptedProbe, SystemMemoryProbe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::{plan_batches, BatchBudget};

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// Injected readings → lease budget = min(ceiling, free) → memory model → planned batches:
    /// no planned batch is estimated above the device's budget after weights.
    #[test]
    fn batches_planned_from_injected_readings_stay_within_the_lease_budget() {
        let dir = tempfile::tempdir().unwrap();
        let probe = ScriptedProbe::new()
            .with_constant(DeviceId::Cuda(0), 16 * GIB, 15 * GIB) // ceiling binds
            .with_constant(DeviceId::Cuda(1), 16 * GIB, 700 * MIB); // free memory binds
        let options = LeaseOptions {
            lock_dir: dir.path().to_path_buf(),
            wait: LeaseWait::Fail,
            ceiling_bytes: 2 * GIB,
            min_budget_bytes: 0,
            stage: "sparse".to_string(),
            lock_cpu: false,
            ceiling_when_unprobed: false,
        };
        let log = LeaseLog::new();
        let lease = lease_gpus(
            &[DeviceId::Cuda(0), DeviceId::Cuda(1)],
            &options,
            &probe,
            &log,
        )
        .unwrap();
        let budgets: Vec<u64> = lease.devices().iter().map(|d| d.budget_bytes).collect();
        assert_eq!(budgets, vec![2 * GIB, 700 * MIB]);

        let model = EncoderMemoryModel {
            hidden: 256,
            intermediate: 1024,
            heads: 4,
            layers: 4,
            bytes_per_value: 2,
            head: HeadMemory::MlmLogits {
                vocab: 30522,
                slice_tokens: 4096,
            },
        };
        let weights = 100 * MIB;
        let lengths: Vec<usize> = (0..500).map(|i| 3 + (i * 7919) % 510).collect();
        let longest = *lengths.iter().max().unwrap();
        let mut token_budgets = Vec::new();
        for leased in lease.devices() {
            let budget = lease.budget_after_weights(&leased.id, weights);
            assert_eq!(budget, leased.budget_bytes - weights);
            let capacity = model.max_tokens_within(budget, longest);
            assert!(capacity.one_item_fits);
            token_budgets.push(capacity.max_tokens);
            let plan = plan_batches(
                &lengths,
                BatchBudget {
                    max_tokens: capacity.max_tokens,
                    max_items: usize::MAX,
                },
            );
            assert!(plan.len() > 1);
            for batch in plan {
                let batch_longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
                let bytes = model.bytes_for_batch(batch.len(), batch_longest);
                assert!(bytes <= budget, "{}: {bytes} > {budget}", leased.id);
            }
        }
        assert!(
            token_budgets[0] > token_budgets[1],
            "less free memory, smaller batches: {token_budgets:?}"
        );
    }
}

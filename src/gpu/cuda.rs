//! The CUDA memory probe (feature `cuda`): free and total memory per GPU from the driver
//! (`cuMemGetInfo`), and each stage's peak from the device's default memory pool, which is where
//! candle's allocations come from on GPUs that support pools (`cuMemAllocAsync`).
//!
//! The CPU is delegated to [`SystemMemoryProbe`], so one probe serves every stage.
//!
//! This file is compiled only with `--features cuda` (scripts/build-cuda.sh) and has no CPU
//! test; the leasing logic that consumes it is tested with [`super::ScriptedProbe`].

use super::memory::{DeviceId, MemoryProbe, MemoryReading, ProbeError, SystemMemoryProbe};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Reads GPU memory through the CUDA driver.
#[derive(Default)]
pub struct CudaMemoryProbe {
    host: SystemMemoryProbe,
    /// The primary context per ordinal, retained once: the same context candle uses, so the
    /// probe costs no extra device memory.
    contexts: Mutex<HashMap<usize, Arc<CudaContext>>>,
}

impl CudaMemoryProbe {
    pub fn new() -> Self {
        Self::default()
    }

    fn context(&self, ordinal: usize) -> Result<Arc<CudaContext>, ProbeError> {
        let mut contexts = self.contexts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(context) = contexts.get(&ordinal) {
            return Ok(context.clone());
        }
        let context = CudaContext::new(ordinal).map_err(|err| self.failed(ordinal, err))?;
        contexts.insert(ordinal, context.clone());
        Ok(context)
    }

    fn failed(&self, ordinal: usize, err: impl std::fmt::Display) -> ProbeError {
        ProbeError::Failed {
            probe: self.label(),
            device: DeviceId::Cuda(ordinal),
            message: err.to_string(),
        }
    }

    /// The device's default memory pool, after binding its context to this thread.
    fn default_pool(&self, ordinal: usize) -> Option<sys::CUmemoryPool> {
        let context = self.context(ordinal).ok()?;
        if !context.has_async_alloc() {
            return None;
        }
        context.bind_to_thread().ok()?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: `pool` is a valid out-pointer and the device handle comes from a live context.
        let status = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device()) };
        (status == sys::CUresult::CUDA_SUCCESS && !pool.is_null()).then_some(pool)
    }
}

impl MemoryProbe for CudaMemoryProbe {
    fn label(&self) -> String {
        "CUDA memory probe".to_string()
    }

    fn read(&self, device: &DeviceId) -> Result<MemoryReading, ProbeError> {
        match device {
            DeviceId::Cpu => self.host.read(device),
            DeviceId::Cuda(ordinal) => {
                let context = self.context(*ordinal)?;
                let (free, total) = context
                    .mem_get_info()
                    .map_err(|err| self.failed(*ordinal, err))?;
                Ok(MemoryReading {
                    total_bytes: total as u64,
                    free_bytes: free as u64,
                })
            }
        }
    }

    fn reset_peak(&self, device: &DeviceId) -> bool {
        let DeviceId::Cuda(ordinal) = device else {
            return false;
        };
        let Some(pool) = self.default_pool(*ordinal) else {
            return false;
        };
        // The high-water mark can only be reset to zero, which restarts it from current use.
        let mut zero: u64 = 0;
        // SAFETY: USED_MEM_HIGH takes a cuuint64_t, which `zero` is; `pool` is the live default
        // pool of a bound context.
        let status = unsafe {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                (&mut zero as *mut u64).cast(),
            )
        };
        status == sys::CUresult::CUDA_SUCCESS
    }

    fn peak_bytes(&self, device: &DeviceId) -> Option<u64> {
        let DeviceId::Cuda(ordinal) = device else {
            return None;
        };
        let pool = self.default_pool(*ordinal)?;
        let mut high: u64 = 0;
        // SAFETY: as in `reset_peak`; the driver writes one cuuint64_t into `high`.
        let status = unsafe {
            sys::cuMemPoolGetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                (&mut high as *mut u64).cast(),
            )
        };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(high)
    }
}

/// The number of CUDA devices the driver sees (0 when there is no driver or no GPU).
pub fn device_count() -> usize {
    CudaContext::device_count().map_or(0, |count| usize::try_from(count).unwrap_or(0))
}

//! The CUDA memory probe (feature `cuda`): free and total memory per GPU from the driver
//! (`cuMemGetInfo`), and each stage's peak from the device's default memory pool, which is where
//! candle's allocations come from on GPUs that support pools (`cuMemAllocAsync`).
//!
//! The CPU is delegated to [`SystemMemoryProbe`], so one probe serves every stage.
//!
//! Also the real [`CudaDriver`] of the start-up check ([`check_runtime`]): the driver's C API
//! through `libloading`, before cudarc is asked for anything.
//!
//! This file is compiled only with `--features cuda` (scripts/build-cuda.sh) and has no CPU
//! test; the leasing logic that consumes it is tested with [`super::ScriptedProbe`], the
//! start-up check with a scripted driver (`super::runtime`).

use super::memory::{DeviceId, MemoryProbe, MemoryReading, ProbeError, SystemMemoryProbe};
use super::runtime::{
    self, CudaBuild, CudaDeviceInfo, CudaDriver, CudaReport, CudaRuntimeError, DriverInfo,
    WantedDevices,
};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
use libloading::Library;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

/// Checks this machine for the CUDA build ([`super::runtime::startup_report`]) with the real
/// driver, and pre-loads the libraries it found by path, so that cudarc's own lookup by soname
/// (it searches only the loader's path) finds them already loaded. The last report is kept for
/// the manifest.
pub fn check_runtime(wanted: &WantedDevices) -> Result<CudaReport, CudaRuntimeError> {
    let build = CudaBuild::current().ok_or(CudaRuntimeError::Devices(
        "this binary has no CUDA build information".to_string(),
    ))?;
    let exe = std::env::current_exe().ok();
    let env = |name: &str| std::env::var(name).ok();
    let dirs = runtime::search_dirs(&env, exe.as_deref());
    let report = runtime::startup_report(&build, &SystemDriver, &dirs, wanted)?;
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    for library in &report.libraries {
        // SAFETY: loading NVIDIA's libraries runs only their initialisers, which take no
        // arguments from us.
        match unsafe { Library::new(&library.path) } {
            Ok(handle) => loaded.push(handle),
            Err(err) => {
                return Err(CudaRuntimeError::Devices(format!(
                    "{} ({}) was found but does not load: {}",
                    library.name,
                    library.path.display(),
                    load_error(&err)
                )))
            }
        }
    }
    *LAST_REPORT.lock().unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
    for line in runtime::describe(&report) {
        tracing::info!("{line}");
    }
    Ok(report)
}

/// A loading error with the loader's own words (libloading keeps `dlerror()`'s text in the
/// source, behind a bare "dlopen failed").
fn load_error(err: &libloading::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The report of the last successful [`check_runtime`].
pub fn last_report() -> Option<CudaReport> {
    LAST_REPORT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

static LAST_REPORT: Mutex<Option<CudaReport>> = Mutex::new(None);
/// The libraries pre-loaded for cudarc: kept loaded for the process's life.
static LOADED: Mutex<Vec<Library>> = Mutex::new(Vec::new());
/// The driver library, once opened.
static DRIVER: OnceLock<Result<(String, Library), String>> = OnceLock::new();

/// The NVIDIA driver through its C API, loaded at run time.
struct SystemDriver;

type CuResult = std::os::raw::c_int;

impl SystemDriver {
    fn library(&self, dirs: &[PathBuf]) -> Result<&'static Library, String> {
        let opened = DRIVER.get_or_init(|| {
            let mut tried = vec!["libcuda.so.1 (system search)".to_string()];
            // SAFETY: as in `check_runtime`.
            let system = unsafe { Library::new("libcuda.so.1") };
            let first_error = match system {
                Ok(library) => return Ok(("libcuda.so.1".to_string(), library)),
                Err(err) => load_error(&err),
            };
            for dir in dirs {
                let path = dir.join("libcuda.so.1");
                if path.exists() {
                    // SAFETY: as above.
                    if let Ok(library) = unsafe { Library::new(&path) } {
                        return Ok((path.display().to_string(), library));
                    }
                    tried.push(path.display().to_string());
                }
            }
            Err(format!("{first_error}; tried {}", tried.join(", ")))
        });
        opened
            .as_ref()
            .map(|(_, library)| library)
            .map_err(Clone::clone)
    }

    fn symbol<T: Copy>(&self, name: &str) -> Result<T, String> {
        let library = self.library(&[])?;
        // SAFETY: each caller names a driver API function with the signature `T` it declares,
        // as in cuda.h.
        unsafe { library.get::<T>(name.as_bytes()) }
            .map(|symbol| *symbol)
            .map_err(|err| format!("{name}: {err}"))
    }

    fn call(name: &str, status: CuResult) -> Result<(), String> {
        if status == 0 {
            Ok(())
        } else {
            Err(format!("{name} failed with CUDA error {status}"))
        }
    }
}

impl CudaDriver for SystemDriver {
    fn open(&self, dirs: &[PathBuf]) -> Result<DriverInfo, String> {
        self.library(dirs)?;
        let library = match DRIVER.get() {
            Some(Ok((name, _))) => name.clone(),
            _ => "libcuda.so.1".to_string(),
        };
        let get_version: unsafe extern "C" fn(*mut i32) -> CuResult =
            self.symbol("cuDriverGetVersion")?;
        let mut version = 0i32;
        // SAFETY: cuDriverGetVersion writes one int; it needs no cuInit.
        Self::call("cuDriverGetVersion", unsafe { get_version(&mut version) })?;
        Ok(DriverInfo {
            library,
            version: u32::try_from(version).unwrap_or(0),
        })
    }

    fn devices(&self) -> Result<Vec<CudaDeviceInfo>, String> {
        type Init = unsafe extern "C" fn(u32) -> CuResult;
        type Count = unsafe extern "C" fn(*mut i32) -> CuResult;
        type Get = unsafe extern "C" fn(*mut i32, i32) -> CuResult;
        type Name = unsafe extern "C" fn(*mut std::os::raw::c_char, i32, i32) -> CuResult;
        type Attribute = unsafe extern "C" fn(*mut i32, i32, i32) -> CuResult;
        type TotalMem = unsafe extern "C" fn(*mut usize, i32) -> CuResult;
        // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR in cuda.h.
        const CC_MAJOR: i32 = 75;
        const CC_MINOR: i32 = 76;
        let init: Init = self.symbol("cuInit")?;
        let count: Count = self.symbol("cuDeviceGetCount")?;
        let get: Get = self.symbol("cuDeviceGet")?;
        let name: Name = self.symbol("cuDeviceGetName")?;
        let attribute: Attribute = self.symbol("cuDeviceGetAttribute")?;
        let total_mem: TotalMem = self.symbol("cuDeviceTotalMem_v2")?;
        // SAFETY (all calls below): each writes into the out-pointers it is given, which are
        // valid locals of the declared types; the name buffer's length is passed.
        Self::call("cuInit", unsafe { init(0) })?;
        let mut devices = 0i32;
        Self::call("cuDeviceGetCount", unsafe { count(&mut devices) })?;
        let mut found = Vec::new();
        for ordinal in 0..devices {
            let mut device = 0i32;
            Self::call("cuDeviceGet", unsafe { get(&mut device, ordinal) })?;
            let mut buffer = [0 as std::os::raw::c_char; 256];
            Self::call("cuDeviceGetName", unsafe {
                name(buffer.as_mut_ptr(), buffer.len() as i32, device)
            })?;
            // SAFETY: the driver NUL-terminates the name within the buffer.
            let device_name = unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            let (mut major, mut minor) = (0i32, 0i32);
            Self::call("cuDeviceGetAttribute", unsafe {
                attribute(&mut major, CC_MAJOR, device)
            })?;
            Self::call("cuDeviceGetAttribute", unsafe {
                attribute(&mut minor, CC_MINOR, device)
            })?;
            let mut bytes = 0usize;
            Self::call("cuDeviceTotalMem", unsafe { total_mem(&mut bytes, device) })?;
            found.push(CudaDeviceInfo {
                ordinal: ordinal as usize,
                name: device_name,
                compute_capability: format!("{major}.{minor}"),
                total_bytes: bytes as u64,
            });
        }
        Ok(found)
    }
}

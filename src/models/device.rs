//! Device and precision choice for a stage. CPU is first-class; CUDA needs the `cuda` feature.

use super::bert_family::EncoderBackend;
use super::packed::Threads;
use super::ModelError;
use crate::config::{CpuPrecision, DeviceSpec, Precision};
use candle_core::{DType, Device};

/// The device a model runs on and the dtype it runs in.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    pub device: Device,
    pub dtype: DType,
    /// `cpu` or `cuda:N`, for logs and the manifest.
    pub label: String,
    /// Which encoder implementation runs on it (packed on CPU f32, candle otherwise).
    pub backend: EncoderBackend,
    /// Concurrent batch workers sharing one model on this device: with the packed encoder one
    /// per CPU thread, each pass single-threaded (no synchronisation inside a pass; measured
    /// faster than one pass over all threads, BENCHMARKS.md); 1 otherwise.
    pub workers: usize,
}

impl SelectedDevice {
    /// The dtype weights are read in: f32 for the packed encoder (which keeps f32 weights and,
    /// in bf16 mode, converts its matrix products' operands itself), the run dtype otherwise.
    pub fn weights_dtype(&self) -> DType {
        match self.backend {
            EncoderBackend::Packed => DType::F32,
            EncoderBackend::Candle => self.dtype,
        }
    }

    /// The packed encoder's products for a stage whose own setting is `stage` (`None`: as the
    /// run's precision says: bf16 or f32). `None` where the encoder is not the packed one (a
    /// GPU runs the run's dtype; a stage setting is then logged as not applying).
    pub fn packed_products(
        &self,
        stage: Option<CpuPrecision>,
    ) -> Result<Option<CpuPrecision>, ModelError> {
        if self.backend != EncoderBackend::Packed {
            if let Some(precision) = stage {
                tracing::info!(device = %self.label, precision = precision.as_str(),
                    "a stage precision applies to the CPU encoder only; this device runs the run's precision");
            }
            return Ok(None);
        }
        let products = stage.unwrap_or(if self.dtype == DType::BF16 {
            CpuPrecision::Bf16
        } else {
            CpuPrecision::F32
        });
        if products == CpuPrecision::Bf16 && !super::packed::bf16::supported() {
            return Err(ModelError::Device {
                device: self.label.clone(),
                message: "bf16 products need AVX512-BF16, which this CPU lacks; use precision \"f32\" or \"int8\"".to_string(),
            });
        }
        Ok(Some(products))
    }

    /// Threads for one forward pass given the workers.
    pub fn threads_per_pass(&self) -> Threads {
        if self.workers > 1 {
            Threads::Single
        } else {
            Threads::Pool(rayon::current_num_threads())
        }
    }
}

/// The first device of `spec` (see [`select_devices`]).
pub fn select_device(
    spec: &DeviceSpec,
    precision: Precision,
) -> Result<SelectedDevice, ModelError> {
    let mut devices = select_devices(spec, precision)?;
    Ok(devices.swap_remove(0))
}

/// Every device of `spec`, each with the dtype for `precision` on it (`auto`: f16 on CUDA, f32
/// on CPU): `cpu`; `cuda:0,1` those GPUs (a stage runs one model replica per GPU); `auto`
/// every GPU the driver sees, else the CPU. Never empty.
pub fn select_devices(
    spec: &DeviceSpec,
    precision: Precision,
) -> Result<Vec<SelectedDevice>, ModelError> {
    let placed: Vec<(Device, String)> = match spec {
        DeviceSpec::Cpu => vec![(Device::Cpu, "cpu".to_string())],
        DeviceSpec::Auto => auto_devices(),
        DeviceSpec::Cuda(ordinals) => {
            let mut unique = ordinals.clone();
            unique.sort_unstable();
            unique.dedup();
            if unique.is_empty() {
                unique.push(0);
            }
            check_cuda_runtime(&unique)?;
            unique
                .into_iter()
                .map(|ordinal| {
                    let label = format!("cuda:{ordinal}");
                    cuda_device(ordinal)
                        .map(|device| (device, label.clone()))
                        .map_err(|message| ModelError::Device {
                            device: label,
                            message,
                        })
                })
                .collect::<Result<_, _>>()?
        }
    };
    placed
        .into_iter()
        .map(|(device, label)| on_device(device, label, precision))
        .collect()
}

fn on_device(
    device: Device,
    label: String,
    precision: Precision,
) -> Result<SelectedDevice, ModelError> {
    let dtype = match (precision, device.is_cuda()) {
        (Precision::Auto, true) => DType::F16,
        (Precision::Auto, false) | (Precision::F32, _) => DType::F32,
        (Precision::F16, _) => DType::F16,
        (Precision::Bf16, _) => DType::BF16,
    };
    let backend = EncoderBackend::for_device(&device, dtype);
    if device.is_cpu() && dtype == DType::BF16 && !super::packed::bf16::supported() {
        return Err(ModelError::Device {
            device: label,
            message: "bf16 on the CPU needs AVX512-BF16, which this CPU lacks; use precision \"f32\" (or \"auto\")".to_string(),
        });
    }
    let workers = match backend {
        EncoderBackend::Packed => std::thread::available_parallelism().map_or(1, |n| n.get()),
        EncoderBackend::Candle => 1,
    };
    Ok(SelectedDevice {
        backend,
        workers,
        device,
        dtype,
        label,
    })
}

/// Before candle touches CUDA: the driver, the GPUs and the libraries this build needs, as one
/// clear error (cudarc would panic on a missing library).
#[cfg(feature = "cuda")]
fn check_cuda_runtime(ordinals: &[usize]) -> Result<(), ModelError> {
    let wanted = crate::gpu::runtime::WantedDevices::Ordinals(ordinals.to_vec());
    crate::gpu::cuda::check_runtime(&wanted)?;
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn check_cuda_runtime(_ordinals: &[usize]) -> Result<(), ModelError> {
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device, String> {
    Device::new_cuda(ordinal).map_err(|err| err.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device, String> {
    Err("this binary was built without the `cuda` feature; rebuild with `--features cuda` or use --device cpu".to_string())
}

/// Every GPU the driver reports that opens, else the CPU.
fn auto_devices() -> Vec<(Device, String)> {
    let gpus: Vec<(Device, String)> = (0..cuda_device_count())
        .filter_map(|ordinal| {
            cuda_device(ordinal)
                .ok()
                .map(|device| (device, format!("cuda:{ordinal}")))
        })
        .collect();
    if gpus.is_empty() {
        vec![(Device::Cpu, "cpu".to_string())]
    } else {
        gpus
    }
}

/// The GPUs `auto` uses: every one the driver sees, when this machine can run the CUDA build
/// (why not is logged, and the run stays on the CPU).
#[cfg(feature = "cuda")]
fn cuda_device_count() -> usize {
    match crate::gpu::cuda::check_runtime(&crate::gpu::runtime::WantedDevices::All) {
        Ok(report) => report.devices.len(),
        Err(err) => {
            tracing::info!(reason = %err, "devices = auto: no usable GPU, running on the CPU");
            0
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_count() -> usize {
    0
}

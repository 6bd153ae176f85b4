//! Devices and their memory: what a device is called, how much memory it has free, and the
//! probes that find out. Probes are a trait so leasing and budgeting are tested with scripted
//! readings, without a GPU and without depending on the test machine's memory.

use serde::{Serialize, Serializer};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

/// A device a stage can run on. Ordered (`cpu` first, then CUDA ordinals) so that every job
/// locks devices in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceId {
    Cpu,
    Cuda(usize),
}

impl DeviceId {
    /// A name safe in file names on every platform (`cpu`, `cuda-0`): the display form's colon is
    /// not allowed in Windows file names and is awkward in shells.
    pub fn file_stem(&self) -> String {
        match self {
            DeviceId::Cpu => "cpu".to_string(),
            DeviceId::Cuda(ordinal) => format!("cuda-{ordinal}"),
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Cpu => f.write_str("cpu"),
            DeviceId::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// Serialized as its display form (`"cpu"`, `"cuda:1"`), as users write it in configs.
impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A device name that is neither `cpu` nor `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device {0:?}: expected `cpu` or `cuda:N` (N a GPU ordinal such as 0)")]
pub struct ParseDeviceIdError(pub String);

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("cpu") {
            return Ok(DeviceId::Cpu);
        }
        trimmed
            .strip_prefix("cuda:")
            .and_then(|ordinal| ordinal.parse().ok())
            .map(DeviceId::Cuda)
            .ok_or_else(|| ParseDeviceIdError(text.to_string()))
    }
}

/// One reading of a device's memory, in bytes.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    pub total_bytes: u64,
    /// Memory a new allocation can use now (on CPU, `MemAvailable`: free plus reclaimable cache).
    pub free_bytes: u64,
}

/// Why a memory reading could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{probe} cannot read the memory of {device}")]
    Unsupported { probe: String, device: DeviceId },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{probe} failed to read {device}: {message}")]
    Failed {
        probe: String,
        device: DeviceId,
        message: String,
    },
}

/// Reads a device's memory. `Send + Sync` because a lease (and its probe) is shared by the
/// worker threads of a data-parallel stage.
///
/// Implementations: [`SystemMemoryProbe`] for the CPU; `CudaMemoryProbe` (feature `cuda`:
/// `cuMemGetInfo` per ordinal, delegating the CPU to [`SystemMemoryProbe`]); [`ScriptedProbe`]
/// for tests.
pub trait MemoryProbe: Send + Sync {
    /// What the probe is, for error messages and logs.
    fn label(&self) -> String;
    /// The device's memory now.
    fn read(&self, device: &DeviceId) -> Result<MemoryReading, ProbeError>;
    /// Starts measuring the device's peak use afresh (a lease does this when it takes the
    /// device); `false` when this probe cannot measure peaks there.
    fn reset_peak(&self, _device: &DeviceId) -> bool {
        false
    }
    /// The most memory in use on the device since [`Self::reset_peak`], when measurable. Free
    /// memory read now and then misses short spikes inside a batch; a peak counter does not.
    fn peak_bytes(&self, _device: &DeviceId) -> Option<u64> {
        None
    }
}

/// The host's memory from `/proc/meminfo` (Linux). Elsewhere, and for CUDA devices, every read
/// is an error rather than a made-up number: a wrong budget is worse than none.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemMemoryProbe;

const MEMINFO_PATH: &str = "/proc/meminfo";

impl MemoryProbe for SystemMemoryProbe {
    fn label(&self) -> String {
        "system memory probe".to_string()
    }

    fn read(&self, device: &DeviceId) -> Result<MemoryReading, ProbeError> {
        if *device != DeviceId::Cpu || !cfg!(target_os = "linux") {
            return Err(ProbeError::Unsupported {
                probe: self.label(),
                device: device.clone(),
            });
        }
        let text = std::fs::read_to_string(MEMINFO_PATH).map_err(|source| ProbeError::Read {
            path: MEMINFO_PATH.to_string(),
            source,
        })?;
        parse_meminfo(&text)
    }
}

/// Parses `/proc/meminfo`: `MemTotal` and `MemAvailable` (kibibytes). Kernels before 3.14 have
/// no `MemAvailable`; there `MemFree` is used, which undercounts (it ignores reclaimable cache)
/// and so errs on the safe side.
pub fn parse_meminfo(text: &str) -> Result<MemoryReading, ProbeError> {
    let field = |name: &str| -> Result<Option<u64>, ProbeError> {
        let Some(line) = text
            .lines()
            .find(|line| line.split(':').next() == Some(name))
        else {
            return Ok(None);
        };
        let mut words = line.split(':').nth(1).unwrap_or("").split_whitespace();
        let value: u64 = words
            .next()
            .and_then(|number| number.parse().ok())
            .ok_or_else(|| ProbeError::Parse {
                path: MEMINFO_PATH.to_string(),
                message: format!("bad {name} line {line:?}"),
            })?;
        let multiplier = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(unit) => {
                return Err(ProbeError::Parse {
                    path: MEMINFO_PATH.to_string(),
                    message: format!("unknown unit {unit:?} in {name}"),
                })
            }
        };
        Ok(Some(value.saturating_mul(multiplier)))
    };
    let missing = |name: &str| ProbeError::Parse {
        path: MEMINFO_PATH.to_string(),
        message: format!("no {name} line"),
    };
    let total_bytes = field("MemTotal")?.ok_or_else(|| missing("MemTotal"))?;
    let free_bytes = match field("MemAvailable")? {
        Some(available) => available,
        None => field("MemFree")?.ok_or_else(|| missing("MemAvailable or MemFree"))?,
    };
    Ok(MemoryReading {
        total_bytes,
        free_bytes,
    })
}

/// A probe that replays scripted readings, for tests here and in other modules: each device
/// has a queue of readings consumed one per read, the last one repeating forever; a device
/// without a script, or one told to fail, gives an error.
#[derive(Debug, Default)]
pub struct ScriptedProbe {
    scripts: Mutex<HashMap<DeviceId, DeviceScript>>,
}

#[derive(Debug, Default)]
struct DeviceScript {
    readings: VecDeque<MemoryReading>,
    failing: bool,
    reads: usize,
    /// The peak a peak read reports, when scripted.
    peak_bytes: Option<u64>,
    peak_resets: usize,
}

impl ScriptedProbe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device`'s readings (replacing earlier ones), consumed in order.
    pub fn with_readings(self, device: DeviceId, readings: Vec<MemoryReading>) -> Self {
        self.set_readings(device, readings);
        self
    }

    /// The same reading, forever.
    pub fn with_constant(self, device: DeviceId, total_bytes: u64, free_bytes: u64) -> Self {
        self.with_readings(
            device,
            vec![MemoryReading {
                total_bytes,
                free_bytes,
            }],
        )
    }

    /// Replaces `device`'s remaining readings.
    pub fn set_readings(&self, device: DeviceId, readings: Vec<MemoryReading>) {
        let mut scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.entry(device).or_default().readings = readings.into();
    }

    /// Makes reads of `device` fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, device: DeviceId, failing: bool) {
        let mut scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.entry(device).or_default().failing = failing;
    }

    /// Makes `device` report `bytes` as its peak use.
    pub fn with_peak(self, device: DeviceId, bytes: u64) -> Self {
        let mut scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.entry(device).or_default().peak_bytes = Some(bytes);
        drop(scripts);
        self
    }

    /// How many times `device`'s peak was reset.
    pub fn peak_resets(&self, device: &DeviceId) -> usize {
        let scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.get(device).map_or(0, |script| script.peak_resets)
    }

    /// How many reads of `device` were attempted.
    pub fn reads(&self, device: &DeviceId) -> usize {
        let scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.get(device).map_or(0, |script| script.reads)
    }
}

impl MemoryProbe for ScriptedProbe {
    fn label(&self) -> String {
        "scripted memory probe".to_string()
    }

    fn read(&self, device: &DeviceId) -> Result<MemoryReading, ProbeError> {
        let mut scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        let failure = |message: &str| ProbeError::Failed {
            probe: self.label(),
            device: device.clone(),
            message: message.to_string(),
        };
        let Some(script) = scripts.get_mut(device) else {
            return Err(failure("no readings scripted for this device"));
        };
        script.reads += 1;
        if script.failing {
            return Err(failure("told to fail"));
        }
        let reading = if script.readings.len() > 1 {
            script.readings.pop_front()
        } else {
            script.readings.front().copied()
        };
        reading.ok_or_else(|| failure("no readings scripted for this device"))
    }

    fn reset_peak(&self, device: &DeviceId) -> bool {
        let mut scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        match scripts.get_mut(device) {
            Some(script) if script.peak_bytes.is_some() => {
                script.peak_resets += 1;
                true
            }
            _ => false,
        }
    }

    fn peak_bytes(&self, device: &DeviceId) -> Option<u64> {
        let scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.get(device).and_then(|script| script.peak_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16318412 kB\n\
                           MemFree:          512000 kB\n\
                           MemAvailable:    8000000 kB\n\
                           Buffers:          100000 kB\n\
                           HugePages_Total:       0\n";

    #[test]
    fn meminfo_gives_total_and_available_in_bytes() {
        let reading = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(reading.total_bytes, 16318412 * 1024);
        assert_eq!(reading.free_bytes, 8000000 * 1024);
    }

    #[test]
    fn meminfo_without_available_falls_back_to_free() {
        let text = "MemTotal: 1000 kB\nMemFree: 300 kB\n";
        let reading = parse_meminfo(text).unwrap();
        assert_eq!(reading.free_bytes, 300 * 1024);
    }

    #[test]
    fn meminfo_without_total_or_with_garbage_is_an_error() {
        assert!(matches!(
            parse_meminfo("MemFree: 300 kB\n"),
            Err(ProbeError::Parse { .. })
        ));
        assert!(matches!(
            parse_meminfo("MemTotal: lots kB\nMemFree: 1 kB\n"),
            Err(ProbeError::Parse { .. })
        ));
    }

    #[test]
    fn system_probe_refuses_cuda_and_reads_the_host_on_linux() {
        assert!(matches!(
            SystemMemoryProbe.read(&DeviceId::Cuda(0)),
            Err(ProbeError::Unsupported { .. })
        ));
        if cfg!(target_os = "linux") {
            let reading = SystemMemoryProbe.read(&DeviceId::Cpu).unwrap();
            assert!(reading.total_bytes > 0 && reading.free_bytes <= reading.total_bytes);
        }
    }

    #[test]
    fn device_ids_display_parse_serialize_and_sort() {
        assert_eq!(DeviceId::Cuda(3).to_string(), "cuda:3");
        assert_eq!("cuda:3".parse::<DeviceId>().unwrap(), DeviceId::Cuda(3));
        assert_eq!("CPU".parse::<DeviceId>().unwrap(), DeviceId::Cpu);
        assert!("gpu0".parse::<DeviceId>().is_err());
        assert_eq!(
            serde_json::to_string(&DeviceId::Cuda(1)).unwrap(),
            "\"cuda:1\""
        );
        assert_eq!(DeviceId::Cuda(0).file_stem(), "cuda-0");
        let mut ids = vec![DeviceId::Cuda(2), DeviceId::Cpu, DeviceId::Cuda(0)];
        ids.sort();
        assert_eq!(
            ids,
            vec![DeviceId::Cpu, DeviceId::Cuda(0), DeviceId::Cuda(2)]
        );
    }

    #[test]
    fn scripted_probe_replays_then_repeats_the_last_reading_and_can_fail() {
        let reading = |free| MemoryReading {
            total_bytes: 100,
            free_bytes: free,
        };
        let device = DeviceId::Cuda(0);
        let probe =
            ScriptedProbe::new().with_readings(device.clone(), vec![reading(90), reading(40)]);
        assert_eq!(probe.read(&device).unwrap(), reading(90));
        assert_eq!(probe.read(&device).unwrap(), reading(40));
        assert_eq!(probe.read(&device).unwrap(), reading(40));
        probe.set_failing(device.clone(), true);
        assert!(probe.read(&device).is_err());
        probe.set_failing(device.clone(), false);
        assert_eq!(probe.read(&device).unwrap(), reading(40));
        assert_eq!(probe.reads(&device), 5);
        assert!(probe.read(&DeviceId::Cpu).is_err(), "no script, no reading");
    }
}

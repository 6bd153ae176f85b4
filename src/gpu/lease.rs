//! Exclusive device leases: a stage holds its devices through a [`DeviceLease`] guard so two
//! embed-collections jobs on one machine never share a GPU (their models and batches would not
//! both fit), and every stage knows how many bytes it may use on each device.
//!
//! The lock is a pid-file lock ([`crate::pid_lock`]: an OS advisory lock) on
//! `<lock_dir>/<device>.lock`. The OS drops it when the process dies, even on `kill -9`, so a
//! crashed job never leaves a device locked; the file itself stays (deleting lock files races
//! with other jobs opening them) and holds the last holder's pid, for people only.

use super::memory::{DeviceId, MemoryProbe, MemoryReading, ProbeError};
use crate::pid_lock::{lock_file, read_holder_pid, write_holder_pid, Deadline, LockFailure};
use serde::Serialize;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default per-device ceiling: 12 GiB, below a T4's 16 GiB.
pub const DEFAULT_CEILING_BYTES: u64 = 12 << 30;

/// What to do when a device is leased by another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseWait {
    /// Fail at once with [`LeaseError::Busy`] (interactive runs: tell the user now).
    Fail,
    /// Retry until this much time has passed since the lease began, for the whole device set
    /// (cron jobs queueing behind each other).
    Wait(Duration),
}

/// How to lease devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Where the lock files live; created if missing. Every job that should exclude the others
    /// must use the same directory.
    pub lock_dir: PathBuf,
    pub wait: LeaseWait,
    /// Per-device memory ceiling: the budget is min(ceiling, free memory at lease).
    pub ceiling_bytes: u64,
    /// A budget below this is [`LeaseError::NoMemory`]: the stage could not run even one batch.
    pub min_budget_bytes: u64,
    /// The stage leasing the devices, recorded in every event (`dense`, `sparse`, `rerank`).
    pub stage: String,
    /// Whether the CPU is locked too. Off by default: the CPU is budgeted and its memory
    /// recorded like a GPU, but two CPU jobs on one machine may run side by side.
    pub lock_cpu: bool,
    /// When the probe cannot read a device at all (`ProbeError::Unsupported`, e.g. a GPU in a
    /// build without its probe): budget the ceiling, record the lease without a reading, and
    /// keep going (true); or fail with [`LeaseError::Probe`] (false). A failed read of a device
    /// the probe does support is always an error.
    pub ceiling_when_unprobed: bool,
}

impl LeaseOptions {
    /// `std::env::temp_dir()/embed-collections-locks`: shared by every job of every user that
    /// sees the same temporary directory.
    pub fn default_lock_dir() -> PathBuf {
        std::env::temp_dir().join("embed-collections-locks")
    }

    /// The same options for another stage.
    pub fn for_stage(&self, stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
            ..self.clone()
        }
    }
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            lock_dir: Self::default_lock_dir(),
            wait: LeaseWait::Fail,
            ceiling_bytes: DEFAULT_CEILING_BYTES,
            min_budget_bytes: 64 << 20,
            stage: String::new(),
            lock_cpu: false,
            ceiling_when_unprobed: false,
        }
    }
}

/// Why devices could not be leased. Locks taken before the failure are released.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A device name that is neither `cpu` nor `cuda:N`.
    #[error("unknown device {0:?} (expected cpu or cuda:N)")]
    UnknownDevice(String),
    #[error(
        "{device} is leased by another embed-collections process{holder} (lock {}); {}wait for it or pass a different device",
        lock_path.display(),
        waited_note(waited)
    )]
    Busy {
        device: DeviceId,
        lock_path: PathBuf,
        waited: Duration,
        /// The holder's pid as its lock file says, when readable.
        holder: HolderPid,
    },
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the memory of {device}: {source}")]
    Probe {
        device: DeviceId,
        #[source]
        source: ProbeError,
    },
    #[error(
        "{device} has {free} bytes free (ceiling {ceiling}); a stage needs at least {minimum}: \
         free memory on the device or lower the batch size"
    )]
    NoMemory {
        device: DeviceId,
        ceiling: u64,
        free: u64,
        minimum: u64,
    },
}

fn waited_note(waited: &Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(
            "gave up after waiting {}; ",
            humantime::format_duration(*waited)
        )
    }
}

/// The pid found in a busy lock file, displayed as ` (pid N)` or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HolderPid(pub Option<u32>);

impl std::fmt::Display for HolderPid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, " (pid {pid})"),
            None => Ok(()),
        }
    }
}

/// What happened to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEventKind {
    Leased,
    Released,
    Snapshot,
    /// The lease gave up on a device another process holds.
    Busy,
}

/// One entry of the lease log, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseEvent {
    pub device: DeviceId,
    pub kind: LeaseEventKind,
    /// Milliseconds since the log was created (the run's start, when created there).
    pub elapsed_ms: u64,
    /// The device's memory at the event; `None` when the probe failed (or for `busy`).
    pub memory: Option<MemoryReading>,
    /// Time spent waiting for the lock (`leased`, `busy`).
    pub waited_ms: u64,
    pub stage: String,
    /// The caller's note of a `snapshot` (e.g. `after weights`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// On `released`: the most memory in use on the device while leased, when the probe can
    /// measure peaks (CUDA: the allocator pool's high-water mark, weights included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
}

/// A shared, thread-safe recorder of lease events; clones record into the same log.
#[derive(Clone, Debug)]
pub struct LeaseLog {
    started: Instant,
    events: Arc<Mutex<Vec<LeaseEvent>>>,
}

impl Default for LeaseLog {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseLog {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A copy of the events so far, in the order they were recorded.
    pub fn events(&self) -> Vec<LeaseEvent> {
        // A poisoned log still holds valid events (pushes cannot half-happen): keep using it,
        // since releasing locks during a panic records events too.
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, event: PendingEvent<'_>) {
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let event = LeaseEvent {
            device: event.device.clone(),
            kind: event.kind,
            elapsed_ms,
            memory: event.memory,
            waited_ms: u64::try_from(event.waited.as_millis()).unwrap_or(u64::MAX),
            stage: event.stage.to_string(),
            note: event.note.map(str::to_string),
            peak_bytes: event.peak_bytes,
        };
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}

struct PendingEvent<'a> {
    device: &'a DeviceId,
    kind: LeaseEventKind,
    memory: Option<MemoryReading>,
    waited: Duration,
    stage: &'a str,
    note: Option<&'a str>,
    peak_bytes: Option<u64>,
}

/// A device held by a lease, with its memory budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeasedDevice {
    pub id: DeviceId,
    /// min(ceiling, free memory at lease): what the stage may use, weights included.
    pub budget_bytes: u64,
    /// The reading at lease; `None` when the probe cannot read this device (see
    /// [`LeaseOptions::ceiling_when_unprobed`]).
    pub at_lease: Option<MemoryReading>,
}

/// The guard over leased devices. Dropping it — at the end of the stage, on an early `?`
/// return, or while unwinding from a panic — unlocks every device and records `released`
/// events with a memory reading.
#[must_use = "the devices are released as soon as the lease is dropped"]
pub struct DeviceLease<'probe> {
    devices: Vec<LeasedDevice>,
    /// Lock files held, in lock order (may be longer than `devices` while leasing).
    locks: Vec<(DeviceId, Option<File>)>,
    probe: &'probe dyn MemoryProbe,
    log: LeaseLog,
    stage: String,
}

impl std::fmt::Debug for DeviceLease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLease")
            .field("devices", &self.devices)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl DeviceLease<'_> {
    /// The leased devices in lock order (sorted, duplicates removed).
    pub fn devices(&self) -> &[LeasedDevice] {
        &self.devices
    }

    /// The budget left for activations once a model's weights (`resident_weights_bytes`) are
    /// on `device`; 0 for a device this lease does not hold, so a mistake plans nothing rather
    /// than too much.
    pub fn budget_after_weights(&self, device: &DeviceId, resident_weights_bytes: u64) -> u64 {
        self.devices
            .iter()
            .find(|leased| leased.id == *device)
            .map_or(0, |leased| {
                leased.budget_bytes.saturating_sub(resident_weights_bytes)
            })
    }

    /// Records a memory reading of every leased device, e.g. after loading weights or at the
    /// peak of a stage. A failed reading is recorded without memory rather than failing the
    /// stage.
    pub fn snapshot(&self, note: &str) {
        for leased in &self.devices {
            self.log.record(PendingEvent {
                device: &leased.id,
                kind: LeaseEventKind::Snapshot,
                memory: self.probe.read(&leased.id).ok(),
                waited: Duration::ZERO,
                stage: &self.stage,
                note: Some(note),
                peak_bytes: None,
            });
        }
    }
}

impl Drop for DeviceLease<'_> {
    fn drop(&mut self) {
        // Reverse lock order; errors are ignored: closing the file releases the lock anyway, and
        // a drop (possibly during unwinding) must not panic.
        while let Some((device, file)) = self.locks.pop() {
            if let Some(file) = file {
                let _ = file.set_len(0);
                let _ = file.unlock();
                drop(file);
            }
            let leased = self.devices.iter().any(|leased| leased.id == device);
            self.log.record(PendingEvent {
                device: &device,
                kind: LeaseEventKind::Released,
                memory: self.probe.read(&device).ok(),
                waited: Duration::ZERO,
                stage: &self.stage,
                note: None,
                // Only a device whose peak this lease reset has a peak of its own.
                peak_bytes: leased.then(|| self.probe.peak_bytes(&device)).flatten(),
            });
        }
    }
}

/// Leases `devices` exclusively (in sorted order, so two jobs leasing overlapping sets cannot
/// deadlock; duplicates are leased once) and sizes each device's budget as min(ceiling, free
/// memory at lease). On any error the locks already taken are released before returning.
pub fn lease_gpus<'probe>(
    devices: &[DeviceId],
    options: &LeaseOptions,
    probe: &'probe dyn MemoryProbe,
    log: &LeaseLog,
) -> Result<DeviceLease<'probe>, LeaseError> {
    let mut ordered = devices.to_vec();
    ordered.sort();
    ordered.dedup();
    std::fs::create_dir_all(&options.lock_dir).map_err(|source| LeaseError::Io {
        path: options.lock_dir.clone(),
        source,
    })?;
    let deadline = match options.wait {
        LeaseWait::Fail => Deadline::Now,
        // A timeout too large for the clock means waiting as long as it takes.
        LeaseWait::Wait(timeout) => Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Never, Deadline::At),
    };
    // Built up as locks are taken, so an error below drops it and releases them.
    let mut lease = DeviceLease {
        devices: Vec::with_capacity(ordered.len()),
        locks: Vec::with_capacity(ordered.len()),
        probe,
        log: log.clone(),
        stage: options.stage.clone(),
    };
    for device in ordered {
        let lock_path = options
            .lock_dir
            .join(format!("{}.lock", device.file_stem()));
        let device_started = Instant::now();
        let locked = if device == DeviceId::Cpu && !options.lock_cpu {
            Ok(None)
        } else {
            lock_file(&lock_path, deadline).map(Some)
        };
        let file = match locked {
            Ok(file) => file,
            Err(LockFailure::Busy) => {
                let waited = device_started.elapsed();
                log.record(PendingEvent {
                    device: &device,
                    kind: LeaseEventKind::Busy,
                    memory: None,
                    waited,
                    stage: &options.stage,
                    note: None,
                    peak_bytes: None,
                });
                return Err(LeaseError::Busy {
                    holder: HolderPid(read_holder_pid(&lock_path)),
                    device,
                    lock_path,
                    waited,
                });
            }
            Err(LockFailure::Io(source)) => {
                return Err(LeaseError::Io {
                    path: lock_path,
                    source,
                })
            }
        };
        let waited = device_started.elapsed();
        lease.locks.push((device.clone(), file));
        if let Some((_, Some(file))) = lease.locks.last_mut() {
            write_holder_pid(file).map_err(|source| LeaseError::Io {
                path: lock_path.clone(),
                source,
            })?;
        }
        let at_lease = match probe.read(&device) {
            Ok(reading) => Some(reading),
            Err(ProbeError::Unsupported { .. }) if options.ceiling_when_unprobed => None,
            Err(source) => {
                return Err(LeaseError::Probe {
                    device: device.clone(),
                    source,
                })
            }
        };
        let free = at_lease.map_or(options.ceiling_bytes, |reading| reading.free_bytes);
        let budget_bytes = options.ceiling_bytes.min(free);
        log.record(PendingEvent {
            device: &device,
            kind: LeaseEventKind::Leased,
            memory: at_lease,
            waited,
            stage: &options.stage,
            note: at_lease
                .is_none()
                .then_some("no memory probe for this device: the ceiling is the budget"),
            peak_bytes: None,
        });
        if budget_bytes < options.min_budget_bytes {
            return Err(LeaseError::NoMemory {
                device,
                ceiling: options.ceiling_bytes,
                free,
                minimum: options.min_budget_bytes,
            });
        }
        // The stage's peak starts here: what earlier stages used does not count.
        probe.reset_peak(&device);
        lease.devices.push(LeasedDevice {
            id: device,
            budget_bytes,
            at_lease,
        });
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::memory::ScriptedProbe;
    use std::path::Path;

    const GIB: u64 = 1 << 30;

    fn probe() -> ScriptedProbe {
        ScriptedProbe::new()
            .with_constant(DeviceId::Cpu, 64 * GIB, 40 * GIB)
            .with_constant(DeviceId::Cuda(0), 16 * GIB, 15 * GIB)
            .with_constant(DeviceId::Cuda(1), 16 * GIB, 3 * GIB)
    }

    fn options(dir: &Path, wait: LeaseWait) -> LeaseOptions {
        LeaseOptions {
            lock_dir: dir.join("locks"),
            wait,
            ceiling_bytes: 12 * GIB,
            min_budget_bytes: 0,
            stage: "dense".to_string(),
            lock_cpu: true,
            ceiling_when_unprobed: false,
        }
    }

    #[test]
    fn the_release_event_carries_the_peak_measured_since_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe().with_peak(DeviceId::Cuda(0), 5 * GIB);
        let log = LeaseLog::new();
        let opts = options(dir.path(), LeaseWait::Fail);
        {
            let _lease =
                lease_gpus(&[DeviceId::Cuda(0), DeviceId::Cuda(1)], &opts, &probe, &log).unwrap();
            assert_eq!(probe.peak_resets(&DeviceId::Cuda(0)), 1, "reset at lease");
        }
        let peaks: Vec<(DeviceId, Option<u64>)> = log
            .events()
            .into_iter()
            .filter(|e| e.kind == LeaseEventKind::Released)
            .map(|e| (e.device, e.peak_bytes))
            .collect();
        // cuda:1's probe measures no peak: none is made up.
        assert_eq!(
            peaks,
            vec![
                (DeviceId::Cuda(1), None),
                (DeviceId::Cuda(0), Some(5 * GIB))
            ]
        );
    }

    #[test]
    fn an_unprobed_device_gets_the_ceiling_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        // The host probe cannot read GPUs: every CUDA read is `Unsupported`.
        let probe = crate::gpu::SystemMemoryProbe;
        let log = LeaseLog::new();
        let strict = options(dir.path(), LeaseWait::Fail);
        assert!(matches!(
            lease_gpus(&[DeviceId::Cuda(0)], &strict, &probe, &log),
            Err(LeaseError::Probe { .. })
        ));
        let lenient = LeaseOptions {
            ceiling_when_unprobed: true,
            ..strict
        };
        let lease = lease_gpus(&[DeviceId::Cuda(0)], &lenient, &probe, &log).unwrap();
        assert_eq!(lease.devices()[0].budget_bytes, 12 * GIB);
        assert_eq!(lease.devices()[0].at_lease, None);
        let leased = log
            .events()
            .into_iter()
            .find(|e| e.kind == LeaseEventKind::Leased)
            .unwrap();
        assert!(leased.memory.is_none() && leased.note.is_some());
    }

    #[test]
    fn the_cpu_is_budgeted_but_not_locked_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let probe = ScriptedProbe::new().with_constant(DeviceId::Cpu, 64 * GIB, 40 * GIB);
        let opts = LeaseOptions {
            lock_cpu: false,
            ..options(dir.path(), LeaseWait::Fail)
        };
        let log = LeaseLog::new();
        let first = lease_gpus(&[DeviceId::Cpu], &opts, &probe, &log).unwrap();
        let second = lease_gpus(&[DeviceId::Cpu], &opts, &probe, &log).unwrap();
        assert_eq!(first.devices()[0].budget_bytes, 12 * GIB);
        assert_eq!(second.devices()[0].budget_bytes, 12 * GIB);
        assert!(!dir.path().join("locks/cpu.lock").exists());
    }

    fn kinds(log: &LeaseLog, device: &DeviceId) -> Vec<LeaseEventKind> {
        log.events()
            .into_iter()
            .filter(|event| event.device == *device)
            .map(|event| event.kind)
            .collect()
    }

    #[test]
    fn budget_is_min_of_ceiling_and_free_and_devices_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let devices = [DeviceId::Cuda(1), DeviceId::Cuda(0), DeviceId::Cuda(1)];
        let lease = lease_gpus(
            &devices,
            &options(dir.path(), LeaseWait::Fail),
            &probe,
            &log,
        )
        .unwrap();
        let leased: Vec<(DeviceId, u64)> = lease
            .devices()
            .iter()
            .map(|d| (d.id.clone(), d.budget_bytes))
            .collect();
        assert_eq!(
            leased,
            vec![(DeviceId::Cuda(0), 12 * GIB), (DeviceId::Cuda(1), 3 * GIB)]
        );
        assert_eq!(lease.devices()[1].at_lease.unwrap().free_bytes, 3 * GIB);
        assert_eq!(
            lease.budget_after_weights(&DeviceId::Cuda(0), 2 * GIB),
            10 * GIB
        );
        assert_eq!(lease.budget_after_weights(&DeviceId::Cuda(1), 5 * GIB), 0);
        assert_eq!(lease.budget_after_weights(&DeviceId::Cpu, 0), 0);
        let pid = std::fs::read_to_string(dir.path().join("locks/cuda-0.lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }

    #[test]
    fn second_lease_fails_busy_naming_device_and_lock_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let opts = options(dir.path(), LeaseWait::Fail);
        let first = lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).unwrap();
        // A second lease of an overlapping set fails and releases what it had taken (cpu).
        let err = lease_gpus(&[DeviceId::Cpu, DeviceId::Cuda(0)], &opts, &probe, &log).unwrap_err();
        let lock_path = opts.lock_dir.join("cuda-0.lock");
        match &err {
            LeaseError::Busy {
                device,
                lock_path: path,
                ..
            } => {
                assert_eq!(*device, DeviceId::Cuda(0));
                assert_eq!(*path, lock_path);
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("cuda:0 is leased by another"), "{message}");
        assert!(
            message.contains(&lock_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("pass a different device"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert_eq!(
            kinds(&log, &DeviceId::Cpu),
            vec![LeaseEventKind::Leased, LeaseEventKind::Released]
        );
        let cpu_only = lease_gpus(&[DeviceId::Cpu], &opts, &probe, &log);
        assert!(cpu_only.is_ok(), "the failed lease released cpu");
        drop(cpu_only);
        drop(first);
        assert!(lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).is_ok());
    }

    #[test]
    fn waiting_lease_succeeds_once_the_holder_releases() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let fail = options(dir.path(), LeaseWait::Fail);
        let first = lease_gpus(&[DeviceId::Cuda(0)], &fail, &probe, &log).unwrap();
        std::thread::scope(|scope| {
            let releaser = scope.spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let releasing_at = Instant::now();
                drop(first);
                releasing_at
            });
            let wait = options(dir.path(), LeaseWait::Wait(Duration::from_secs(10)));
            let second = lease_gpus(&[DeviceId::Cuda(0)], &wait, &probe, &log).unwrap();
            let leased_at = Instant::now();
            let releasing_at = releaser.join().unwrap();
            assert!(leased_at >= releasing_at, "leased only after the release");
            drop(second);
        });
        let events = log.events();
        let second_leased = events
            .iter()
            .filter(|e| e.kind == LeaseEventKind::Leased)
            .nth(1)
            .unwrap();
        assert!(second_leased.waited_ms >= 100, "{second_leased:?}");
    }

    #[test]
    fn waiting_lease_gives_up_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let first = lease_gpus(
            &[DeviceId::Cuda(1)],
            &options(dir.path(), LeaseWait::Fail),
            &probe,
            &log,
        )
        .unwrap();
        let wait = options(dir.path(), LeaseWait::Wait(Duration::from_millis(150)));
        let err = lease_gpus(&[DeviceId::Cuda(1)], &wait, &probe, &log).unwrap_err();
        match &err {
            LeaseError::Busy { waited, .. } => assert!(*waited >= Duration::from_millis(150)),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(err.to_string().contains("gave up after waiting"), "{err}");
        let busy = log
            .events()
            .into_iter()
            .find(|e| e.kind == LeaseEventKind::Busy)
            .unwrap();
        assert!(busy.waited_ms >= 150);
        drop(first);
    }

    #[test]
    fn lock_is_released_after_a_panic_inside_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let opts = options(dir.path(), LeaseWait::Fail);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lease = lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).unwrap();
            panic!("model exploded");
        }));
        assert!(outcome.is_err());
        assert_eq!(
            kinds(&log, &DeviceId::Cuda(0)),
            vec![LeaseEventKind::Leased, LeaseEventKind::Released]
        );
        assert!(lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).is_ok());
    }

    #[test]
    fn lock_is_released_on_an_early_error_return() {
        #[derive(Debug)]
        struct StageFailed;
        fn stage(
            opts: &LeaseOptions,
            probe: &ScriptedProbe,
            log: &LeaseLog,
        ) -> Result<(), StageFailed> {
            let lease =
                lease_gpus(&[DeviceId::Cuda(0)], opts, probe, log).map_err(|_| StageFailed)?;
            lease.snapshot("after weights");
            Err(StageFailed)?;
            Ok(())
        }
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let opts = options(dir.path(), LeaseWait::Fail);
        assert!(stage(&opts, &probe, &log).is_err());
        assert!(lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).is_ok());
    }

    #[test]
    fn events_carry_memory_stage_and_serialize_snake_case() {
        let dir = tempfile::tempdir().unwrap();
        let device = DeviceId::Cuda(0);
        let reading = |free| MemoryReading {
            total_bytes: 16 * GIB,
            free_bytes: free,
        };
        let probe = ScriptedProbe::new().with_readings(
            device.clone(),
            vec![reading(15 * GIB), reading(10 * GIB), reading(14 * GIB)],
        );
        let log = LeaseLog::new();
        {
            let lease = lease_gpus(
                std::slice::from_ref(&device),
                &options(dir.path(), LeaseWait::Fail),
                &probe,
                &log,
            )
            .unwrap();
            lease.snapshot("after weights");
        }
        let events = log.events();
        let summary: Vec<(LeaseEventKind, Option<u64>)> = events
            .iter()
            .map(|e| (e.kind, e.memory.map(|m| m.free_bytes)))
            .collect();
        assert_eq!(
            summary,
            vec![
                (LeaseEventKind::Leased, Some(15 * GIB)),
                (LeaseEventKind::Snapshot, Some(10 * GIB)),
                (LeaseEventKind::Released, Some(14 * GIB)),
            ]
        );
        assert!(events.iter().all(|e| e.stage == "dense"));
        assert_eq!(events[1].note.as_deref(), Some("after weights"));
        let json = serde_json::to_value(&events[2]).unwrap();
        assert_eq!(json["kind"], "released");
        assert_eq!(json["device"], "cuda:0");
        assert_eq!(json["memory"]["free_bytes"], 14 * GIB);
        assert!(json.get("note").is_none());
    }

    #[test]
    fn probe_failure_and_too_little_memory_are_errors_that_release_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe();
        let log = LeaseLog::new();
        let mut opts = options(dir.path(), LeaseWait::Fail);
        probe.set_failing(DeviceId::Cuda(0), true);
        let err = lease_gpus(&[DeviceId::Cuda(0)], &opts, &probe, &log).unwrap_err();
        assert!(matches!(err, LeaseError::Probe { .. }), "{err:?}");
        probe.set_failing(DeviceId::Cuda(0), false);
        opts.min_budget_bytes = 4 * GIB;
        let err = lease_gpus(&[DeviceId::Cuda(1)], &opts, &probe, &log).unwrap_err();
        match err {
            LeaseError::NoMemory { device, free, .. } => {
                assert_eq!((device, free), (DeviceId::Cuda(1), 3 * GIB));
            }
            other => panic!("expected NoMemory, got {other:?}"),
        }
        opts.min_budget_bytes = 0;
        assert!(lease_gpus(&[DeviceId::Cuda(0), DeviceId::Cuda(1)], &opts, &probe, &log).is_ok());
    }

    #[test]
    fn unusable_lock_dir_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "file").unwrap();
        let mut opts = options(dir.path(), LeaseWait::Fail);
        opts.lock_dir = blocker.clone();
        let err = lease_gpus(&[DeviceId::Cpu], &opts, &probe(), &LeaseLog::new()).unwrap_err();
        assert!(
            matches!(&err, LeaseError::Io { path, .. } if *path == blocker),
            "{err:?}"
        );
    }
}

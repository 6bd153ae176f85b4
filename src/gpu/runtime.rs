//! The CUDA runtime a GPU run needs, found and checked before anything touches a GPU.
//!
//! The CUDA binary links none of the driver, cuBLAS or cuRAND (cudarc loads them at run time),
//! so it starts on any machine; this module decides whether this machine can run it, and says
//! so in one error when it cannot:
//!
//! 1. the driver (`libcuda.so.1`) opens and supports the CUDA version the binary's kernels were
//!    compiled with (the driver JIT-compiles their PTX, and only PTX of its own CUDA version or
//!    older);
//! 2. every GPU asked for exists and has at least the compute capability of the kernels;
//! 3. each library is found — by the exact soname this build's bindings need — in
//!    `EMBED_COLLECTIONS_CUDA_LIBRARY_PATH`, `LD_LIBRARY_PATH`, the `nvidia/*/lib` folders of
//!    the Python installs pip puts NVIDIA's wheels in (PyTorch's CUDA wheels bring them), or
//!    the usual system folders. A library of another CUDA major version is named in the error:
//!    its ABI is not the one this build was compiled against.
//!
//! What was found becomes the [`CudaReport`] the run logs and records in its manifest. The
//! driver is reached through the [`CudaDriver`] trait, so every path here is tested on CPU with
//! a scripted driver; the real one (`super::cuda`, feature `cuda`) also pre-loads the found
//! libraries by path so that cudarc's own lookup by soname finds them.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the CUDA binary was compiled with (build.rs records it from nvcc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaBuild {
    /// The toolkit's CUDA version, `(12, 4)`.
    pub toolkit: (u32, u32),
    /// The compute capability the kernels' PTX targets, `(7, 5)` for the T4.
    pub compute_capability: (u32, u32),
}

impl CudaBuild {
    /// This binary's, when it is the CUDA build.
    pub fn current() -> Option<Self> {
        #[cfg(feature = "cuda")]
        {
            let toolkit = parse_version(env!("EMBED_COLLECTIONS_CUDA_TOOLKIT"))?;
            let cap: u32 = env!("EMBED_COLLECTIONS_CUDA_COMPUTE_CAP").parse().ok()?;
            Some(Self {
                toolkit,
                compute_capability: (cap / 10, cap % 10),
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }

    /// The oldest driver version (as `cuDriverGetVersion` reports it: 1000 × major + 10 ×
    /// minor) that loads this build's kernels.
    pub fn min_driver_version(&self) -> u32 {
        self.toolkit.0 * 1000 + self.toolkit.1 * 10
    }

    /// The libraries this build loads, by the soname its bindings were generated for.
    pub fn libraries(&self) -> Vec<LibrarySpec> {
        let major = self.toolkit.0;
        vec![
            LibrarySpec {
                name: "cuBLAS",
                file: format!("libcublas.so.{major}"),
                pip: format!("nvidia-cublas-cu{major}"),
            },
            LibrarySpec {
                name: "cuBLASLt",
                file: format!("libcublasLt.so.{major}"),
                pip: format!("nvidia-cublas-cu{major}"),
            },
            LibrarySpec {
                // cuRAND keeps its own major version (10) across CUDA 11, 12 and 13.
                name: "cuRAND",
                file: "libcurand.so.10".to_string(),
                pip: format!("nvidia-curand-cu{major}"),
            },
        ]
    }
}

/// `"12.4"` → `(12, 4)`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A driver version as `cuDriverGetVersion` encodes it, `12040` → `"12.4"`.
pub fn driver_cuda_version(encoded: u32) -> String {
    format!("{}.{}", encoded / 1000, (encoded % 1000) / 10)
}

/// The first NVIDIA driver branch that supports a CUDA version (NVIDIA's release notes),
/// for error messages.
pub fn first_driver_branch(toolkit: (u32, u32)) -> Option<u32> {
    Some(match toolkit {
        (12, 0) => 525,
        (12, 1) => 530,
        (12, 2) => 535,
        (12, 3) => 545,
        (12, 4) => 550,
        (12, 5) => 555,
        (12, 6) => 560,
        (12, 8) => 570,
        (12, 9) => 575,
        (13, 0) => 580,
        _ => return None,
    })
}

/// One shared library the CUDA build loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibrarySpec {
    pub name: &'static str,
    /// The soname looked for, `libcublas.so.12`.
    pub file: String,
    /// The pip package that carries it.
    pub pip: String,
}

impl LibrarySpec {
    /// `libcublas.so.12` → `libcublas.so.`: the prefix shared by every version of the library.
    fn stem(&self) -> &str {
        match self.file.find(".so.") {
            Some(at) => &self.file[..at + 4],
            None => &self.file,
        }
    }
}

/// A library found on this machine.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FoundLibrary {
    pub name: String,
    /// Where it was found (the soname's file, usually a symlink).
    pub path: PathBuf,
    /// The file's full version, from the name the soname resolves to (`12.4.5.8`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One GPU as the driver reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CudaDeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// `"7.5"`.
    pub compute_capability: String,
    pub total_bytes: u64,
}

impl CudaDeviceInfo {
    fn capability(&self) -> Option<(u32, u32)> {
        parse_version(&self.compute_capability)
    }
}

/// The opened driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    /// The driver library's path (or the name the system loader resolved).
    pub library: String,
    /// `cuDriverGetVersion`: the newest CUDA version the driver supports, 1000 × major + 10 ×
    /// minor.
    pub version: u32,
}

/// The NVIDIA driver, real or scripted.
pub trait CudaDriver {
    /// Opens the driver library (by the system loader's search, then in `dirs`) and reads its
    /// version. The error says what was tried.
    fn open(&self, dirs: &[PathBuf]) -> Result<DriverInfo, String>;
    /// Every GPU the opened driver sees.
    fn devices(&self) -> Result<Vec<CudaDeviceInfo>, String>;
}

/// What a CUDA run found: recorded in the manifest (`cuda`) and logged at start.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CudaReport {
    /// The toolkit the binary was built with, `"12.4"`.
    pub build_cuda: String,
    /// The compute capability its kernels target, `"7.5"`.
    pub build_compute_capability: String,
    pub driver_library: String,
    /// The newest CUDA version the driver supports, `"12.6"`.
    pub driver_cuda: String,
    pub libraries: Vec<FoundLibrary>,
    pub devices: Vec<CudaDeviceInfo>,
}

/// Why this machine cannot run the CUDA build.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CudaRuntimeError {
    #[error(
        "no NVIDIA driver: libcuda.so.1 could not be loaded ({message}); a CUDA run needs an NVIDIA GPU and its driver ({needed})"
    )]
    NoDriver { message: String, needed: String },
    #[error(
        "the NVIDIA driver ({library}) supports CUDA {found}; this build's kernels need CUDA {needed} or newer ({branch}): update the driver, or use --device cpu"
    )]
    DriverTooOld {
        library: String,
        found: String,
        needed: String,
        branch: String,
    },
    #[error("the NVIDIA driver cannot list its GPUs: {0}")]
    Devices(String),
    #[error("the NVIDIA driver sees no GPU")]
    NoDevices,
    #[error("cuda:{ordinal} was asked for; the driver sees {count} GPU(s) (cuda:0 to cuda:{last})", last = count.saturating_sub(1))]
    DeviceMissing { ordinal: usize, count: usize },
    #[error(
        "cuda:{ordinal} ({name}) has compute capability {found}; this build's kernels need {needed} or newer"
    )]
    DeviceTooOld {
        ordinal: usize,
        name: String,
        found: String,
        needed: String,
    },
    #[error("{0}")]
    LibraryMissing(Box<MissingLibrary>),
}

/// A library the CUDA build needs and did not find.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{name} ({file}) not found{other}; searched {searched}. Install it with `pip install {pip}` (PyTorch's CUDA {major} wheels bring it), or put its folder in EMBED_COLLECTIONS_CUDA_LIBRARY_PATH"
)]
pub struct MissingLibrary {
    pub name: String,
    pub file: String,
    pub pip: String,
    pub major: u32,
    /// `"; found /x/libcublas.so.13 (another major version, …)"`, or empty.
    pub other: String,
    pub searched: String,
}

/// Where to look for the CUDA libraries, in order, existing folders only, each once.
///
/// `env` reads an environment variable; `exe` is this binary's path (a wheel installs it in
/// `<prefix>/bin`, beside `<prefix>/lib/pythonX.Y/site-packages`).
pub fn search_dirs(env: &dyn Fn(&str) -> Option<String>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for variable in ["EMBED_COLLECTIONS_CUDA_LIBRARY_PATH", "LD_LIBRARY_PATH"] {
        if let Some(value) = env(variable) {
            dirs.extend(std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()));
        }
    }
    // Python installs: a wheel's own prefix first, then the active environments, then the
    // system's (Kaggle and Colab install into /usr/local/lib/python3.X/dist-packages).
    let mut lib_roots: Vec<PathBuf> = Vec::new();
    if let Some(prefix) = exe.and_then(Path::parent).and_then(Path::parent) {
        lib_roots.push(prefix.join("lib"));
    }
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = env(variable) {
            lib_roots.push(PathBuf::from(prefix).join("lib"));
        }
    }
    if let Some(home) = env("HOME") {
        lib_roots.push(PathBuf::from(home).join(".local/lib"));
    }
    lib_roots.extend(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"].map(PathBuf::from));
    for root in &lib_roots {
        for python in sorted_children(root, |name| name.starts_with("python3")) {
            for packages in ["site-packages", "dist-packages"] {
                let nvidia = python.join(packages).join("nvidia");
                for package in sorted_children(&nvidia, |_| true) {
                    dirs.push(package.join("lib"));
                }
            }
        }
    }
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/local/nvidia/lib64",
            "/usr/lib64-nvidia",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/lib/x86_64-linux-gnu",
        ]
        .map(PathBuf::from),
    );
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| dir.is_dir() && seen.insert(dir.clone()));
    dirs
}

/// The subfolders of `dir` whose names pass `keep`, sorted (none when `dir` is unreadable).
fn sorted_children(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(&keep))
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    children.sort();
    children
}

/// Looks for `spec` in `dirs`: the first folder holding its soname wins. Otherwise the error
/// lists the files of other major versions it saw.
pub fn find_library(spec: &LibrarySpec, dirs: &[PathBuf]) -> Result<FoundLibrary, Vec<PathBuf>> {
    let mut others = Vec::new();
    for dir in dirs {
        let path = dir.join(&spec.file);
        if path.exists() {
            let resolved = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let version = resolved
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_prefix(spec.stem()))
                .map(str::to_string);
            return Ok(FoundLibrary {
                name: spec.name.to_string(),
                path,
                version,
            });
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name().to_str().is_some_and(|name| {
                    name.strip_prefix(spec.stem())
                        .is_some_and(|version| !version.is_empty() && !version.contains('.'))
                })
            })
            .map(|entry| entry.path())
            .collect();
        here.sort();
        others.extend(here);
    }
    Err(others)
}

/// Which GPUs a run asks for: `cuda:0,1` (these must exist) or `auto` (every one the driver
/// sees).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WantedDevices {
    Ordinals(Vec<usize>),
    All,
}

/// Checks this machine against `build` (the order a user fixes things in: driver, GPUs,
/// libraries) and reports what it found.
pub fn startup_report(
    build: &CudaBuild,
    driver: &dyn CudaDriver,
    dirs: &[PathBuf],
    wanted: &WantedDevices,
) -> Result<CudaReport, CudaRuntimeError> {
    let needed = format!("{}.{}", build.toolkit.0, build.toolkit.1);
    let branch = first_driver_branch(build.toolkit).map_or_else(
        || format!("a driver for CUDA {needed}"),
        |branch| format!("driver {branch} or newer"),
    );
    let opened = driver
        .open(dirs)
        .map_err(|message| CudaRuntimeError::NoDriver {
            message,
            needed: format!("CUDA {needed}: {branch}"),
        })?;
    if opened.version < build.min_driver_version() {
        return Err(CudaRuntimeError::DriverTooOld {
            library: opened.library,
            found: driver_cuda_version(opened.version),
            needed,
            branch,
        });
    }

    let devices = driver.devices().map_err(CudaRuntimeError::Devices)?;
    if devices.is_empty() {
        return Err(CudaRuntimeError::NoDevices);
    }
    let checked: Vec<&CudaDeviceInfo> = match wanted {
        WantedDevices::All => devices.iter().collect(),
        WantedDevices::Ordinals(ordinals) => ordinals
            .iter()
            .map(|&ordinal| {
                devices.iter().find(|d| d.ordinal == ordinal).ok_or(
                    CudaRuntimeError::DeviceMissing {
                        ordinal,
                        count: devices.len(),
                    },
                )
            })
            .collect::<Result<_, _>>()?,
    };
    let (major, minor) = build.compute_capability;
    for device in checked {
        if device.capability().is_some_and(|cc| cc < (major, minor)) {
            return Err(CudaRuntimeError::DeviceTooOld {
                ordinal: device.ordinal,
                name: device.name.clone(),
                found: device.compute_capability.clone(),
                needed: format!("{major}.{minor}"),
            });
        }
    }

    let mut libraries = Vec::new();
    for spec in build.libraries() {
        match find_library(&spec, dirs) {
            Ok(found) => libraries.push(found),
            Err(others) => {
                let other = if others.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; found {} (another major version, whose ABI this build was not compiled against)",
                        list(&others, 3)
                    )
                };
                return Err(CudaRuntimeError::LibraryMissing(Box::new(MissingLibrary {
                    name: spec.name.to_string(),
                    file: spec.file.clone(),
                    pip: spec.pip.clone(),
                    major: build.toolkit.0,
                    other,
                    searched: if dirs.is_empty() {
                        "no existing folder".to_string()
                    } else {
                        list(dirs, 6)
                    },
                })));
            }
        }
    }
    Ok(CudaReport {
        build_cuda: needed,
        build_compute_capability: format!("{major}.{minor}"),
        driver_library: opened.library,
        driver_cuda: driver_cuda_version(opened.version),
        libraries,
        devices,
    })
}

/// At most `shown` paths, then how many more.
fn list(paths: &[PathBuf], shown: usize) -> String {
    let mut text = paths
        .iter()
        .take(shown)
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > shown {
        text.push_str(&format!(" and {} more", paths.len() - shown));
    }
    text
}

/// A human summary of a report, one line per item (the `devices` command, the run's log).
pub fn describe(report: &CudaReport) -> Vec<String> {
    let mut lines = vec![format!(
        "CUDA build {} (kernels for compute capability {}), driver supports CUDA {} ({})",
        report.build_cuda,
        report.build_compute_capability,
        report.driver_cuda,
        report.driver_library
    )];
    for library in &report.libraries {
        lines.push(format!(
            "{} {} at {}",
            library.name,
            library.version.as_deref().unwrap_or("(version unknown)"),
            library.path.display()
        ));
    }
    for device in &report.devices {
        lines.push(format!(
            "cuda:{} {}, compute capability {}, {:.1} GiB",
            device.ordinal,
            device.name,
            device.compute_capability,
            device.total_bytes as f64 / (1u64 << 30) as f64
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const BUILD: CudaBuild = CudaBuild {
        toolkit: (12, 4),
        compute_capability: (7, 5),
    };

    struct ScriptedDriver {
        open: Result<DriverInfo, String>,
        devices: Vec<CudaDeviceInfo>,
    }

    impl CudaDriver for ScriptedDriver {
        fn open(&self, _dirs: &[PathBuf]) -> Result<DriverInfo, String> {
            self.open.clone()
        }
        fn devices(&self) -> Result<Vec<CudaDeviceInfo>, String> {
            Ok(self.devices.clone())
        }
    }

    fn t4(ordinal: usize) -> CudaDeviceInfo {
        CudaDeviceInfo {
            ordinal,
            name: "Tesla T4".to_string(),
            compute_capability: "7.5".to_string(),
            total_bytes: 15 << 30,
        }
    }

    fn driver(version: u32) -> ScriptedDriver {
        ScriptedDriver {
            open: Ok(DriverInfo {
                library: "libcuda.so.1".to_string(),
                version,
            }),
            devices: vec![t4(0), t4(1)],
        }
    }

    /// A pip layout under `root`: `<root>/bin/embed-collections` and the given files under
    /// `<root>/lib/python3.11/site-packages/nvidia/`, each a symlink `soname -> full version`.
    fn pip_prefix(root: &Path, libraries: &[(&str, &str, &str)]) -> PathBuf {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let exe = root.join("bin/embed-collections");
        std::fs::write(&exe, b"").unwrap();
        for (package, soname, full) in libraries {
            let lib = root
                .join("lib/python3.11/site-packages/nvidia")
                .join(package)
                .join("lib");
            std::fs::create_dir_all(&lib).unwrap();
            std::fs::write(lib.join(full), b"").unwrap();
            if soname != full {
                std::os::unix::fs::symlink(full, lib.join(soname)).unwrap();
            }
        }
        exe
    }

    fn cuda12_libraries() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("cublas", "libcublas.so.12", "libcublas.so.12.4.5.8"),
            ("cublas", "libcublasLt.so.12", "libcublasLt.so.12.4.5.8"),
            ("curand", "libcurand.so.10", "libcurand.so.10.3.5.147"),
        ]
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn pip_installed_libraries_beside_the_binary_are_found_with_their_versions() {
        let dir = tempfile::tempdir().unwrap();
        let exe = pip_prefix(dir.path(), &cuda12_libraries());
        let dirs = search_dirs(&no_env, Some(&exe));
        let report = startup_report(&BUILD, &driver(12060), &dirs, &WantedDevices::All).unwrap();
        assert_eq!(report.driver_cuda, "12.6");
        assert_eq!(report.build_cuda, "12.4");
        let found: Vec<(&str, Option<&str>)> = report
            .libraries
            .iter()
            .map(|l| (l.name.as_str(), l.version.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("cuBLAS", Some("12.4.5.8")),
                ("cuBLASLt", Some("12.4.5.8")),
                ("cuRAND", Some("10.3.5.147")),
            ]
        );
        assert!(report.libraries[0].path.starts_with(
            dir.path()
                .join("lib/python3.11/site-packages/nvidia/cublas/lib")
        ));
        assert_eq!(report.devices.len(), 2);
        let text = describe(&report).join("\n");
        assert!(
            text.contains("cuda:1 Tesla T4, compute capability 7.5, 15.0 GiB"),
            "{text}"
        );
    }

    #[test]
    fn the_library_path_variable_comes_first_and_empty_entries_are_ignored() {
        let pip = tempfile::tempdir().unwrap();
        let exe = pip_prefix(pip.path(), &cuda12_libraries());
        let own = tempfile::tempdir().unwrap();
        std::fs::write(own.path().join("libcublas.so.12"), b"").unwrap();
        let env_dirs = format!("::{}", own.path().display());
        let env = move |name: &str| {
            (name == "EMBED_COLLECTIONS_CUDA_LIBRARY_PATH").then(|| env_dirs.clone())
        };
        let dirs = search_dirs(&env, Some(&exe));
        assert_eq!(dirs[0], own.path());
        let report = startup_report(&BUILD, &driver(12040), &dirs, &WantedDevices::All).unwrap();
        assert_eq!(report.libraries[0].path, own.path().join("libcublas.so.12"));
        assert_eq!(report.libraries[0].version.as_deref(), Some("12"));
        // The next library still comes from the pip folders.
        assert!(report.libraries[1].path.starts_with(pip.path()));
    }

    #[test]
    fn a_driver_older_than_the_kernels_is_one_error_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let exe = pip_prefix(dir.path(), &cuda12_libraries());
        let dirs = search_dirs(&no_env, Some(&exe));
        let err = startup_report(&BUILD, &driver(12020), &dirs, &WantedDevices::All).unwrap_err();
        assert!(
            matches!(err, CudaRuntimeError::DriverTooOld { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("supports CUDA 12.2"), "{message}");
        assert!(message.contains("need CUDA 12.4 or newer"), "{message}");
        assert!(message.contains("driver 550 or newer"), "{message}");
        // A newer major version is fine.
        assert!(startup_report(&BUILD, &driver(13000), &dirs, &WantedDevices::All).is_ok());
    }

    #[test]
    fn no_driver_says_what_failed_and_what_is_needed() {
        let no_driver = ScriptedDriver {
            open: Err("libcuda.so.1: cannot open shared object file".to_string()),
            devices: Vec::new(),
        };
        let err = startup_report(&BUILD, &no_driver, &[], &WantedDevices::All).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("no NVIDIA driver"), "{message}");
        assert!(
            message.contains("cannot open shared object file"),
            "{message}"
        );
        assert!(
            message.contains("CUDA 12.4: driver 550 or newer"),
            "{message}"
        );
    }

    #[test]
    fn only_cuda_13_libraries_are_named_but_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let exe = pip_prefix(
            dir.path(),
            &[
                ("cu13", "libcublas.so.13", "libcublas.so.13.0.2.14"),
                ("cu13", "libcublasLt.so.13", "libcublasLt.so.13.0.2.14"),
                ("cu13", "libcurand.so.10", "libcurand.so.10.4.0.35"),
            ],
        );
        let dirs = search_dirs(&no_env, Some(&exe));
        let err = startup_report(&BUILD, &driver(13000), &dirs, &WantedDevices::All).unwrap_err();
        let CudaRuntimeError::LibraryMissing(ref missing) = err else {
            panic!("{err:?}");
        };
        let MissingLibrary {
            file, other, pip, ..
        } = missing.as_ref();
        assert_eq!(file, "libcublas.so.12");
        assert_eq!(pip, "nvidia-cublas-cu12");
        assert!(other.contains("nvidia/cu13/lib/libcublas.so.13"), "{other}");
        // The full-version file is not "another major version".
        assert!(!other.contains("13.0.2.14"), "{other}");
        let message = err.to_string();
        assert!(
            message.contains("pip install nvidia-cublas-cu12"),
            "{message}"
        );
        assert!(message.contains("searched"), "{message}");
    }

    #[test]
    fn a_missing_library_lists_where_it_was_looked_for() {
        let empty = tempfile::tempdir().unwrap();
        let dirs = vec![empty.path().to_path_buf()];
        let err = startup_report(&BUILD, &driver(12040), &dirs, &WantedDevices::All).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cuBLAS (libcublas.so.12) not found; searched"),
            "{message}"
        );
        assert!(
            message.contains(&empty.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn devices_must_exist_and_be_new_enough() {
        let dir = tempfile::tempdir().unwrap();
        let exe = pip_prefix(dir.path(), &cuda12_libraries());
        let dirs = search_dirs(&no_env, Some(&exe));
        let err = startup_report(
            &BUILD,
            &driver(12040),
            &dirs,
            &WantedDevices::Ordinals(vec![0, 2]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cuda:2 was asked for; the driver sees 2 GPU(s) (cuda:0 to cuda:1)"
        );

        let mut old = driver(12040);
        old.devices = vec![
            t4(0),
            CudaDeviceInfo {
                ordinal: 1,
                name: "Tesla P100-PCIE-16GB".to_string(),
                compute_capability: "6.0".to_string(),
                total_bytes: 16 << 30,
            },
        ];
        // Asking only for the T4 is fine; auto (every GPU) is not.
        assert!(startup_report(&BUILD, &old, &dirs, &WantedDevices::Ordinals(vec![0])).is_ok());
        let err = startup_report(&BUILD, &old, &dirs, &WantedDevices::All).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cuda:1 (Tesla P100-PCIE-16GB) has compute capability 6.0; this build's kernels need 7.5 or newer"
        );

        let mut none = driver(12040);
        none.devices.clear();
        assert_eq!(
            startup_report(&BUILD, &none, &dirs, &WantedDevices::All).unwrap_err(),
            CudaRuntimeError::NoDevices
        );
    }

    #[test]
    fn search_dirs_cover_virtualenvs_and_skip_missing_folders() {
        let venv = tempfile::tempdir().unwrap();
        let lib = venv
            .path()
            .join("lib/python3.12/site-packages/nvidia/curand/lib");
        std::fs::create_dir_all(&lib).unwrap();
        let vars: HashMap<&str, String> = [
            ("VIRTUAL_ENV", venv.path().display().to_string()),
            ("LD_LIBRARY_PATH", "/no/such/folder".to_string()),
        ]
        .into();
        let env = |name: &str| vars.get(name).cloned();
        let dirs = search_dirs(&env, None);
        assert!(dirs.contains(&lib), "{dirs:?}");
        assert!(!dirs.contains(&PathBuf::from("/no/such/folder")));
    }

    #[test]
    fn versions_parse_and_print() {
        assert_eq!(parse_version("12.4"), Some((12, 4)));
        assert_eq!(parse_version("7.5"), Some((7, 5)));
        assert_eq!(parse_version("12.4.131"), Some((12, 4)));
        assert_eq!(parse_version("twelve"), None);
        assert_eq!(driver_cuda_version(12060), "12.6");
        assert_eq!(driver_cuda_version(13000), "13.0");
        assert_eq!(BUILD.min_driver_version(), 12040);
    }
}

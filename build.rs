//! Records the git commit the binary is built from (`tool.git_commit` in the manifest), when
//! the source is a git checkout and git is installed; nothing otherwise. `--version` prints the
//! version, that commit and the features. With the `cuda`
//! feature, also the CUDA toolkit version (from `nvcc --version`) and the compute capability
//! the kernels are compiled for, which the start-up check compares with the machine's.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=EMBED_COLLECTIONS_GIT_COMMIT");
    let commit = std::env::var("EMBED_COLLECTIONS_GIT_COMMIT")
        .ok()
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|output| output.status.success())
                .and_then(|output| String::from_utf8(output.stdout).ok())
                .map(|commit| commit.trim().to_string())
        });
    let commit = commit.filter(|c| c.len() == 40);
    if let Some(commit) = &commit {
        println!("cargo:rustc-env=EMBED_COLLECTIONS_GIT_COMMIT={commit}");
    }
    let cuda = std::env::var_os("CARGO_FEATURE_CUDA").is_some();
    // `--version`: the version, the commit and the features, as the manifest's `tool` has them.
    println!(
        "cargo:rustc-env=EMBED_COLLECTIONS_VERSION_LINE={} (commit {}, features: {})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        commit.as_deref().unwrap_or("unknown"),
        if cuda { "cuda" } else { "none" }
    );
    if cuda {
        record_cuda_build();
    }
}

/// The toolkit release and compute capability candle-kernels is compiled with (they read the
/// same nvcc and `CUDA_COMPUTE_CAP`; 75 is our default, the T4's).
fn record_cuda_build() {
    for variable in ["CUDA_COMPUTE_CAP", "CUDA_HOME", "NVCC", "PATH"] {
        println!("cargo:rerun-if-env-changed={variable}");
    }
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let output = Command::new(&nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|err| panic!("the cuda feature needs nvcc ({nvcc}): {err}"));
    let text = String::from_utf8_lossy(&output.stdout);
    // "Cuda compilation tools, release 12.4, V12.4.131"
    let release = text
        .split("release ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("cannot read the release from `{nvcc} --version`: {text}"));
    println!(
        "cargo:rustc-env=EMBED_COLLECTIONS_CUDA_TOOLKIT={}",
        release.trim()
    );
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "75".to_string());
    let digits: String = cap.chars().take_while(char::is_ascii_digit).collect();
    println!("cargo:rustc-env=EMBED_COLLECTIONS_CUDA_COMPUTE_CAP={digits}");
}

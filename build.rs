//! Records the git commit the binary is built from (`tool.git_commit` in the manifest), when
//! the source is a git checkout and git is installed; nothing otherwise.

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
    if let Some(commit) = commit.filter(|c| c.len() == 40) {
        println!("cargo:rustc-env=EMBED_COLLECTIONS_GIT_COMMIT={commit}");
    }
}

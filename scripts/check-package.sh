#!/usr/bin/env bash
# CI: the crate as `cargo install embed-collections` would get it. `cargo publish --dry-run`
# packages it (crates.io's checks on the manifest, the 10 MB limit), then the packaged source
# alone is built in release mode and its binary must run. The build shares target/ with CI's
# own (a copy of it), so only this crate compiles again (cargo's own verification builds every
# dependency in the debug profile, minutes more on two cores: --no-verify skips it, this build
# replaces it).
#
#   scripts/check-package.sh [--allow-dirty]   # --allow-dirty: uncommitted changes packaged too
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
version="$(scripts/release/check-version.sh)"
rm -rf target/package
# The tests and benches are left out of the package on purpose (`include`): cargo's notes on
# each are dropped.
cargo publish --dry-run --locked --no-verify "$@" 2>&1 |
  grep -v -e '^warning: aborting upload due to dry run$' -e '^warning: ignoring \(test\|benchmark\) `' >&2
crate="$(find target/package -name "embed-collections-$version.crate" | head -n 1)"
[[ -f "$crate" ]] || { echo "check-package: cargo publish --dry-run left no .crate under target/package" >&2; exit 1; }

bytes="$(stat -c %s "$crate")"
echo "check-package: $(basename "$crate"): $((bytes / 1024)) KiB, $(tar tzf "$crate" | wc -l) files"
(( bytes < 10 * 1024 * 1024 )) || { echo "check-package: over crates.io's 10 MB limit" >&2; exit 1; }
if tar tzf "$crate" | grep -E "^embed-collections-$version/(examples|tests|scripts|deploy)/" >&2; then
  echo "check-package: fixtures or scripts in the package" >&2; exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar xzf "$crate" -C "$work"
# The packaged crate has this checkout's package id, so in the same target directory its build
# would replace the checkout's artifacts: it builds in a copy of target/release instead, where
# only the crate itself compiles again (the dependencies are the same units).
copy="$repo/target/package-check"
rm -rf "$copy"; mkdir -p "$copy"
trap 'rm -rf "$work" "$copy"' EXIT
[[ ! -d "$repo/target/release" ]] || cp -a "$repo/target/release" "$copy/release"
# Outside the repository: build.rs finds no git checkout, as in a user's cargo install.
CARGO_TARGET_DIR="$copy" cargo build --release --locked --quiet \
  --manifest-path "$work/embed-collections-$version/Cargo.toml"
binary="$copy/release/embed-collections"
line="$("$binary" --version)"
echo "check-package: the packaged crate builds; its binary says: $line"
[[ "$line" == "embed-collections $version (commit unknown, features: none)" ]]

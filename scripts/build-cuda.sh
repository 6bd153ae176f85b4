#!/usr/bin/env bash
# Build the CUDA binary (`--features cuda`) on any x86_64 Linux machine, with or without a GPU,
# from Debian's and PyPI's packages alone (scripts/cuda/toolkit.sh pins and verifies them).
#
#   scripts/build-cuda.sh            # -> target/cuda/dist/embed-collections (stripped)
#
# The binary it makes:
#  * is built with CUDA 12.4 (toolkit.sh says why): candle's kernels are PTX for compute
#    capability $CUDA_COMPUTE_CAP (default 75 = T4), which any driver >= 550 JIT-compiles for
#    its GPU (T4 = 7.5 up to H100 = 9.0 and newer) the first time they load;
#  * loads the driver (libcuda.so.1), cuBLAS and cuRAND at run time (cudarc's dynamic loading)
#    instead of linking them, so it starts on a machine without them, and says what is missing
#    (`embed-collections devices`). candle asks cudarc for link-time linking; this script builds
#    against a copy of candle-core 0.11.1 whose manifest asks for dynamic loading instead, the
#    one line that differs, in a scratch copy of the workspace (the repository's Cargo.toml and
#    Cargo.lock are not touched; the CPU build does not use the patch).
# libcudart.so.12 stays a link-time dependency (candle-kernels links it for kernels we never
# launch); the CUDA wheel depends on nvidia-cuda-runtime-cu12 and finds it through its rpath.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=cuda/toolkit.sh
source "$here/cuda/toolkit.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/cuda}"
echo "build-cuda: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), compute capability $compute_cap" >&2

# candle-core with cudarc's dynamic loading.
(cd "$repo" && cargo fetch --locked --quiet)
candle_version="$(sed -n '/^name = "candle-core"$/{n;s/^version = "\(.*\)"$/\1/p}' "$repo/Cargo.lock")"
registry_copy="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"candle-core-$candle_version" | head -n 1)"
patched="$CARGO_TARGET_DIR/patched/candle-core"
# Made once per candle-core version: a fresh copy (new mtimes) would rebuild candle every time.
if [[ "$(cat "$patched/.patched-from" 2>/dev/null)" != "$registry_copy" ]]; then
  rm -rf "$patched"; mkdir -p "$(dirname "$patched")"
  cp -rp "$registry_copy" "$patched"
  sed -i 's/^    "dynamic-linking",$/    "dynamic-loading",/' "$patched/Cargo.toml"
  if [[ "$(grep -c '"dynamic-loading",' "$patched/Cargo.toml")" != 1 ]] || grep -q '"dynamic-linking"' "$patched/Cargo.toml"; then
    echo "build-cuda: candle-core $candle_version's cudarc features are not the ones this script patches" >&2
    exit 1
  fi
  echo "$registry_copy" > "$patched/.patched-from"
fi

# The scratch workspace: the sources by symlink, the manifest with the patch, the lock copied
# (cargo rewrites candle-core's entry there to the path copy; nothing else moves).
workspace="$CARGO_TARGET_DIR/workspace"
rm -rf "$workspace"; mkdir -p "$workspace"
for entry in src benches build.rs; do ln -s "$repo/$entry" "$workspace/$entry"; done
cp "$repo/Cargo.lock" "$workspace/"
{ cat "$repo/Cargo.toml"; printf '\n[patch.crates-io]\ncandle-core = { path = "%s" }\n' "$patched"; } > "$workspace/Cargo.toml"
cp "$repo/rust-toolchain.toml" "$workspace/" 2>/dev/null || true
commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)"
# The rpath lets the binary find libcudart.so.12 where pip puts it beside the wheel's binary:
# <prefix>/bin/embed-collections and <prefix>/lib/pythonX.Y/{site,dist}-packages/nvidia/....
rpath=''
for python in 3.9 3.10 3.11 3.12 3.13 3.14; do
  for packages in site-packages dist-packages; do
    rpath="$rpath${rpath:+:}\$ORIGIN/../lib/python$python/$packages/nvidia/cuda_runtime/lib"
  done
done
rustflags="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath,$rpath"
echo "$rustflags" > "$CARGO_TARGET_DIR/rustflags" # build-wheel.sh --cuda builds with the same flags
# libcudart.so.12 is linked from the toolkit's lib64, a search path cudarc added only when it
# linked the libraries itself: given to the binary's link alone (`cargo rustc -- ...`).
(cd "$workspace" &&
  EMBED_COLLECTIONS_GIT_COMMIT="$commit" RUSTFLAGS="$rustflags" \
    cargo rustc --release --offline --features cuda --bin embed-collections "$@" -- -L "native=$CUDA_HOME/lib64")
# A stripped copy small enough to carry to a GPU machine (the build keeps line tables).
mkdir -p "$CARGO_TARGET_DIR/dist"
strip -o "$CARGO_TARGET_DIR/dist/embed-collections" "$CARGO_TARGET_DIR/release/embed-collections"
echo "$CARGO_TARGET_DIR/dist/embed-collections"

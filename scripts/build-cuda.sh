#!/usr/bin/env bash
# Build the CUDA binary (`--features cuda`) on any x86_64 Linux machine, with or
# without a GPU, from PyPI alone. Reproducible: the CUDA 13.0 toolkit pieces are
# pinned wheels (13.0 because the GPU machines run driver 580 = CUDA 13.0, and
# PTX from a newer nvcc would not load there).
#
#   scripts/build-cuda.sh            # -> target/cuda/dist/embed-collections (stripped)
#
# What it does:
#  1. downloads the pinned nvidia-* wheels (nvcc, crt, nvvm, cccl, runtime,
#     cublas, curand, nvrtc) into a cache and unpacks them into one CUDA root;
#  2. adds the unversioned .so links the linker wants and a link-time stub of the
#     driver library (libcuda.so; the driver ships the real one, PyPI does not);
#  3. runs cargo with CUDA_HOME pointing there. candle's kernels are compiled to
#     PTX for compute capability $CUDA_COMPUTE_CAP (default 75 = T4, Kaggle's
#     GPU); the driver JIT-compiles that PTX for newer GPUs (H100 = 90) at load.
#
# At run time the binary needs libcuda.so.1 (driver) and the CUDA 13 libraries
# libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and libcudart.so.13 on the
# loader path: a PyTorch CUDA 13 install has them (scripts/gpu-check.sh finds
# them), or use this script's cache: $cuda_root/lib.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=cuda/toolkit.sh
source "$here/cuda/toolkit.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/cuda}"
echo "build-cuda: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), compute capability $compute_cap" >&2
(cd "$repo" && cargo build --release --locked --features cuda --bin embed-collections "$@")
# A stripped copy small enough to carry to a GPU machine (the build keeps line tables).
mkdir -p "$CARGO_TARGET_DIR/dist"
strip -o "$CARGO_TARGET_DIR/dist/embed-collections" "$CARGO_TARGET_DIR/release/embed-collections"
echo "$CARGO_TARGET_DIR/dist/embed-collections"

#!/usr/bin/env bash
# The CUDA wheel's start-up on a machine without a GPU: builds it (scripts/build-wheel.sh --cuda,
# ≈ 15 min cold on 2 cores, so not part of CI), installs it into a fresh venv (pip brings
# NVIDIA's cu12 cuBLAS, cuRAND and runtime wheels), and runs the installed binary:
#  1. with no driver: one clear error, exit 2 (and a CPU run still works);
#  2. with a stand-in driver (scripts/cuda/fake-libcuda.c: CUDA 12.6, two T4s): the start-up
#     report finds the libraries pip installed in the venv's site-packages and lists the GPUs;
#  3. with the stand-in driver claiming CUDA 12.2: the "driver too old" error, exit 2.
# What it cannot check without a GPU (kernels, parity, memory) is scripts/gpu-check.sh's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
wheel="${1:-$(scripts/build-wheel.sh --cuda | tail -n 1)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
bin="$work/venv/bin/embed-collections"
"$bin" --version
# The package rides along as in the CPU wheel: the fetcher and the Kaggle config.
"$work/venv/bin/python" -c 'import embed_collections.fetch_models'
cmp "$("$work/venv/bin/python" -c 'import embed_collections, os; print(os.path.join(os.path.dirname(embed_collections.__file__), "configs", "kaggle-t4.toml"))')" configs/kaggle-t4.toml

echo "== 1. no driver"
status=0; "$bin" devices || status=$?
[[ $status -eq 2 ]] || { echo "expected exit 2, got $status" >&2; exit 1; }
"$bin" --input examples/collections --output "$work/cpu" --device cpu --no-sparse --no-rerank \
  --set 'input.collections=["scifact-mini"]' --quiet
echo "a CPU run of the CUDA binary: ok"

echo "== 2. a stand-in driver: CUDA 12.6, two T4s"
mkdir -p "$work/driver"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$work/driver/libcuda.so.1" scripts/cuda/fake-libcuda.c
LD_LIBRARY_PATH="$work/driver" "$bin" devices | tee "$work/devices.txt"
grep -q "cuBLAS 12.*$work/venv/lib/python3.*/site-packages/nvidia/cublas/lib/libcublas.so.12" "$work/devices.txt"
grep -q "cuRAND .*site-packages/nvidia/curand/lib/libcurand.so.10" "$work/devices.txt"
grep -q "cuda:1 Tesla T4 (fake driver), compute capability 7.5" "$work/devices.txt"

echo "== 3. the stand-in driver claiming CUDA 12.2"
status=0; FAKE_CUDA_VERSION=12020 LD_LIBRARY_PATH="$work/driver" "$bin" devices || status=$?
[[ $status -eq 2 ]] || { echo "expected exit 2, got $status" >&2; exit 1; }
echo "check-cuda-wheel: ok"

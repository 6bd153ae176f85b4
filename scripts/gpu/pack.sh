#!/usr/bin/env bash
# Here (any x86_64 Linux machine with PyPI access): build the CUDA binary, fetch the models, and
# pack both into .gpu/part-NN files small enough for the device tool's 64 MiB carry limit.
# Then, on the GPU machine, one `run` per part and a last one that checks (scripts/gpu-check.sh
# prints the exact calls at the end of this script).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bin="$(scripts/build-cuda.sh | tail -n 1)"
models="$(scripts/fetch-models.sh | tail -n 1)"
rm -rf .gpu
mkdir -p .gpu/stage/models
cp "$bin" .gpu/stage/embed-collections
# The CUDA 12 libraries the binary loads (and libcudart, which it links), from the toolkit
# cache: a GPU machine's PyTorch may carry CUDA 13's only.
# shellcheck source=../cuda/toolkit.sh
source scripts/cuda/toolkit.sh
mkdir -p .gpu/stage/cuda-lib .gpu/stage/cuda-runtime
for lib in libcublas.so.12 libcublasLt.so.12 libcurand.so.10; do
  cp -L "$CUDA_HOME/lib64/$lib" .gpu/stage/cuda-lib/
done
cp -L "$CUDA_HOME/lib64/libcudart.so.12" .gpu/stage/cuda-runtime/
for model in sentence-transformers/all-MiniLM-L6-v2 splade-tiny cross-encoder/ms-marco-MiniLM-L-12-v2; do
  mkdir -p ".gpu/stage/models/$(dirname "$model")"
  cp -r "$models/$model" ".gpu/stage/models/$model"
done
(cd .gpu/stage && find . -type f ! -name SHA256SUMS -print0 | xargs -0 sha256sum > SHA256SUMS)
tar -C .gpu/stage -cf - . | gzip -1 | split -b 56m -d - .gpu/part-
rm -rf .gpu/stage
ls -l .gpu >&2
echo "On the GPU machine, one device run per part (carry names the part), then the check:" >&2
for part in .gpu/part-*; do
  echo "  run carry=[\"$part\"]  command: bash scripts/gpu-check.sh receive $part" >&2
done
echo "  run  command: bash scripts/gpu-check.sh run" >&2

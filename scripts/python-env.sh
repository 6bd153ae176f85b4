#!/usr/bin/env bash
# Shared Python tool environment for the helper scripts (model fetch/convert,
# golden-file generation). Creates or reuses a venv with pinned packages.
#
#   source scripts/python-env.sh   -> sets $EMBED_COLLECTIONS_PYTHON
#   scripts/python-env.sh          -> prints the venv's python path
#
# Venv location: ${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/venv
# (override with EMBED_COLLECTIONS_VENV). Packages are installed only when the
# pin list differs from the one recorded in the venv (idempotent, fast re-run).
# Needs only python3 (with the venv module) and access to PyPI.

_ec_python_env() {
    local venv="${EMBED_COLLECTIONS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/venv}"
    # Exact pins; bump deliberately. Only wheels are accepted (no source builds).
    local pins="numpy==2.2.6 onnx==1.17.0 protobuf==5.29.3 tokenizers==0.21.1 safetensors==0.5.3 qdrant-client==1.20.0 kubernetes-validate==1.37.0 maturin==1.16.0 openai==3.63.0 huggingface_hub==0.36.2 prometheus-client==0.26.0 pyarrow==26.0.1 duckdb==2.0.1 polars==2.2.0 lancedb==0.41.0 datasets==4.8.5"
    local stamp="$venv/.embed-collections-pins"

    if [[ ! -x "$venv/bin/python" ]]; then
        echo "python-env: creating venv at $venv" >&2
        python3 -m venv "$venv" >&2 || return 1
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$pins" ]]; then
        echo "python-env: installing $pins" >&2
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --only-binary=:all: $pins >&2 || return 1
        printf '%s' "$pins" > "$stamp"
    fi
    EMBED_COLLECTIONS_PYTHON="$venv/bin/python"
    export EMBED_COLLECTIONS_PYTHON
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    # Executed: fail hard and print the interpreter path.
    set -euo pipefail
    _ec_python_env
    echo "$EMBED_COLLECTIONS_PYTHON"
else
    # Sourced: don't change the caller's shell options; report failure via status.
    _ec_python_env
fi

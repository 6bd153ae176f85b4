#!/usr/bin/env bash
# The test command: fetch the real models (cached, verified by sha256), then run every test in
# release mode (model forward passes are ~50x slower in a debug build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-models.sh >/dev/null
cargo test --release --locked "$@"

#!/usr/bin/env bash
# The main job on the bundled example: fetch the models, build, embed the SciFact slice on CPU.
# Output: out/quickstart/ (points.jsonl per collection, manifest.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

models_dir="$(scripts/fetch-models.sh)"
echo "models: $models_dir" >&2
cargo build --release --locked
EMBED_COLLECTIONS_MODELS_DIR="$models_dir" ./target/release/embed-collections \
    --config configs/quickstart.toml "$@"

#!/usr/bin/env bash
# Two dense models (all-MiniLM-L6-v2 and bge-small-en-v1.5) + SPLADE-tiny + the CrossEncoder on
# a BEIR collection, evaluated per list. DATA_DIR/COLLECTION is the collection (corpus.jsonl,
# queries.jsonl, qrels/test.tsv); only the queries judged in qrels/test.tsv are run.
#
#   scripts/scifact-two-models.sh DATA_DIR [COLLECTION] [OUTPUT_DIR]
#   scripts/scifact-two-models.sh examples/collections scifact-mini    # the table in docs/ranking.md
set -euo pipefail
data="$(cd "${1:?usage: $0 DATA_DIR [COLLECTION] [OUTPUT_DIR]}" && pwd)"
collection="${2:-scifact}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${3:-out/two-models-$collection}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

scripts/fetch-models.sh >/dev/null
cargo build --release --locked
python3 scripts/judged-queries.py "$data/$collection" "$work/test-queries.jsonl"
cat > "$work/two.toml" <<TOML
[input]
root = "$data"
collections = ["$collection"]
[[dense.models]]
name = "minilm"
model = "all-minilm-l6"
[[dense.models]]
name = "bge-small"
model = "bge-small-en"
[sparse]
model = "splade-tiny"
[rerank]
model = "ms-marco-minilm-l12"
queries = "$work/test-queries.jsonl"
candidates = 10
top_k = 10
[eval]
qrels = "$data/$collection/qrels/test.tsv"
[gpu]
devices = "cpu"
[telemetry]
progress = "never"
TOML
target/release/embed-collections --config "$work/two.toml" --output "$out"

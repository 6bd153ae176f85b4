#!/usr/bin/env bash
# The retrieval effect of each CPU product precision: the same run (MiniLM + SPLADE-tiny + the
# CrossEncoder, rerank of the fused top CANDIDATES) with f32, bf16 (where the CPU has
# AVX512-BF16), INT8 for the rerank stage only, and INT8 for every stage; nDCG@10 of every list
# from each run's manifest, and the rerank stage's time. Only the queries judged in
# qrels/test.tsv are run.
#
#   scripts/precision-quality.sh DATA_DIR COLLECTION [CANDIDATES] [VARIANTS]
#   scripts/precision-quality.sh examples/collections scifact-2k 10   # the bundled example
#   scripts/precision-quality.sh DATA scifact 10 f32,int8-rerank       # some variants only
set -euo pipefail
data="$(cd "${1:?usage: $0 DATA_DIR COLLECTION [CANDIDATES]}" && pwd)"
collection="${2:?usage: $0 DATA_DIR COLLECTION [CANDIDATES]}"
candidates="${3:-10}"
only="${4:-}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

scripts/fetch-models.sh >/dev/null
cargo build --release --locked
python3 scripts/judged-queries.py "$data/$collection" "$work/test-queries.jsonl"

# name|rerank precision|sparse precision|dense precision|gpu.precision
variants=("f32|f32|f32|f32|f32" "int8-rerank|int8|f32|f32|f32" "int8-all|int8|int8|int8|f32")
if grep -q avx512_bf16 /proc/cpuinfo 2>/dev/null; then
  variants+=("bf16|bf16|bf16|bf16|bf16")
fi
if [[ -n "$only" ]]; then
  chosen=()
  for variant in "${variants[@]}"; do
    [[ ",$only," == *",${variant%%|*},"* ]] && chosen+=("$variant")
  done
  variants=("${chosen[@]}")
fi
for variant in "${variants[@]}"; do
  IFS='|' read -r name rerank sparse dense gpu <<<"$variant"
  cat > "$work/$name.toml" <<TOML
[input]
root = "$data"
collections = ["$collection"]
[[dense.models]]
name = "minilm"
model = "sentence-transformers/all-MiniLM-L6-v2"
precision = "$dense"
[sparse]
model = "splade-tiny"
precision = "$sparse"
[rerank]
queries = "$work/test-queries.jsonl"
candidates = $candidates
top_k = $candidates
max_length = 256
precision = "$rerank"
[eval]
qrels = "$data/$collection/qrels/test.tsv"
[gpu]
devices = "cpu"
precision = "$gpu"
[telemetry]
progress = "never"
TOML
  target/release/embed-collections --config "$work/$name.toml" --output "$work/$name" \
    >/dev/null 2>"$work/$name.log" || { cat "$work/$name.log" >&2; exit 1; }
done
python3 - "$work" "$collection" "$candidates" "${variants[@]%%|*}" <<'PY'
import json, sys
work, collection, candidates, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = []
for name in names:
    c = json.load(open(f"{work}/{name}/manifest.json"))["collections"][0]
    lists = c["evaluation"]["lists"]
    rows.append((name, lists, c["overhead"]["rerank_s"], c["overhead"]["rerank_pairs"]))
order = [k for k in ("dense", "sparse", "fused", "reranked") if k in rows[0][1]]
print(f"{collection}, rerank of the fused top {candidates}, nDCG@10 (Δ vs f32):")
print("| precision | " + " | ".join(order) + " | rerank s | pairs |")
print("|---|" + "---|" * (len(order) + 2))
base = rows[0][1]
for name, lists, seconds, pairs in rows:
    cells = []
    for k in order:
        v = lists[k]["ndcg_at_10"]
        cells.append(f"{v:.4f}" if name == "f32" else f"{v:.4f} ({v - base[k]['ndcg_at_10']:+.4f})")
    print(f"| {name} | " + " | ".join(cells) + f" | {seconds:.1f} | {pairs} |")
PY

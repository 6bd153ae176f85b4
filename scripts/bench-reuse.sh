#!/usr/bin/env bash
# Wall time of a run over an edited corpus with and without --reuse (docs/nightly.md).
#
#   scripts/bench-reuse.sh [COLLECTION] [FRACTIONS...] [-- RUN FLAGS...]
#   scripts/bench-reuse.sh scifact-2k 0.01 0.10 -- --no-rerank
#   scripts/bench-reuse.sh scifact-mini 0.10   # a quicker check (300 abstracts)
#   scripts/bench-reuse.sh scifact-20k          # 20,000 chunks (scripts/make-scifact-20k.py)
#
# Builds version 1 of the collection (examples/collections/COLLECTION, default scifact-2k) and,
# per fraction, a version 2 in which that fraction of the chunks has an edited text; runs the
# quickstart configuration on version 1 once (A), then on each version 2 fresh and with
# `--reuse A`, one after the other on the same machine, and prints a table of wall seconds with
# the reused/embedded counts from each manifest. The outputs of the two version-2 runs are
# compared (cmp) so that a faster run is never a different one. The goal column is the issue's
# 1.2 × (changed fraction × the full run A), leaving out the time to read the input once.
#
# BENCH_FRESH=0 skips the fresh version-2 runs (and their comparison; tests/reuse.rs holds it):
# the full run A is the reference then. For large collections, where a fresh run costs minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

collection="scifact-2k"
if [[ $# -gt 0 && "$1" != "--" && ! "$1" =~ ^[0-9.]+$ ]]; then collection="$1"; shift; fi
fractions=()
while [[ $# -gt 0 && "$1" != "--" ]]; do fractions+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
extra=("$@")
[[ ${#fractions[@]} -gt 0 ]] || fractions=(0.01 0.10)

bin="${EMBED_COLLECTIONS_BIN:-$repo/target/release/embed-collections}"
[[ -x "$bin" ]] || cargo build --release --locked >&2
models="$(scripts/fetch-models.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

source_dir="$repo/examples/collections/$collection"
if [[ ! -d "$source_dir" && -x "scripts/make-$collection.py" ]]; then
  # A generated collection (scifact-20k: the bundled slice cut into 20,000 chunks).
  source_dir="$work/source/$collection"
  "scripts/make-$collection.py" "$source_dir"
fi
make_version() { # destination fraction
  mkdir -p "$1/$collection"
  python3 - "$source_dir/corpus.jsonl" "$1/$collection/corpus.jsonl" "$2" <<'PY'
import json, sys
source, target, fraction = sys.argv[1], sys.argv[2], float(sys.argv[3])
records = [json.loads(line) for line in open(source)]
step = round(1 / fraction) if fraction > 0 else 0
edited = 0
for i, record in enumerate(records):
    if step and i % step == 0:
        record["text"] = record["text"] + " (revised)"
        edited += 1
with open(target, "w") as out:
    for record in records:
        out.write(json.dumps(record) + "\n")
print(f"{target}: {edited} of {len(records)} chunks edited", file=sys.stderr)
PY
  for file in queries.jsonl qrels; do
    [[ -e "$source_dir/$file" ]] && cp -r "$source_dir/$file" "$1/$collection/"
  done
}

run() { # input output [flags...]
  local input="$1" output="$2"; shift 2
  local start end
  start=$(date +%s.%N)
  "$bin" --config configs/quickstart.toml --input "$input" --output "$output" --models-dir "$models" \
    --collections "$collection" --queries "$input/$collection/queries.jsonl" \
    --qrels "$input/$collection/qrels/test.tsv" --quiet "${extra[@]}" "$@" >/dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.1f}')"
}

counts() { # output
  python3 - "$1/manifest.json" <<'PY'
import json, sys
collection = json.load(open(sys.argv[1]))["collections"][0]
reuse = collection.get("reuse") or {}
pairs = reuse.get("rerank_pairs")
scores = f", {pairs['reused']} rerank scores reused, {pairs['computed']} computed" if pairs else ""
print(f"{reuse.get('reused', '-')} reused, {reuse.get('embedded', collection['chunks'])} embedded{scores}")
PY
}

make_version "$work/v1" 0
full=$(run "$work/v1" "$work/a")
echo "A (version 1, full run): $full s ($(wc -l < "$work/v1/$collection/corpus.jsonl") chunks)"
printf '| changed | fresh run s | with --reuse s | ratio | goal s | reuse counts |\n|---|---|---|---|---|---|\n'
for fraction in "${fractions[@]}"; do
  make_version "$work/v2-$fraction" "$fraction" 2>/dev/null
  if [[ "${BENCH_FRESH:-1}" == 0 ]]; then
    fresh="$full (A)"
  else
    fresh=$(run "$work/v2-$fraction" "$work/fresh-$fraction")
  fi
  reused=$(run "$work/v2-$fraction" "$work/reuse-$fraction" --reuse "$work/a")
  for file in points.jsonl rerank.jsonl query_vectors.jsonl; do
    if [[ -f "$work/fresh-$fraction/$collection/$file" ]]; then
      cmp -s "$work/fresh-$fraction/$collection/$file" "$work/reuse-$fraction/$collection/$file" ||
        { echo "bench-reuse: $file differs between the fresh and the reusing run" >&2; exit 1; }
    fi
  done
  ratio=$(python3 -c "print(f'{$reused / ${fresh%% *}:.2f}')")
  goal=$(python3 -c "print(f'{1.2 * $fraction * $full:.1f}')")
  echo "| $fraction | $fresh | $reused | $ratio | $goal | $(counts "$work/reuse-$fraction") |"
done

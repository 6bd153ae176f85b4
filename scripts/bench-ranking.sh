#!/usr/bin/env bash
# Ranking memory and time, the streaming scan against the in-memory index, at collection sizes
# no test embeds: the vectors of a real run's output repeated to each size (benches/ranking.rs).
# One process per measurement, so each peak RSS is that search's own. Prints JSON lines, then
# the table of BENCHMARKS.md ("Ranking memory"); fails if the two methods' hits ever differ.
#
#   scripts/bench-ranking.sh OUTPUT/COLLECTION [SIZES] [QUERY_COUNTS]
#   scripts/bench-ranking.sh out/quickstart/scifact-2k "20000 60000 200000" "8 50 1000"
#
# OUTPUT/COLLECTION: a run's collection output directory (points.jsonl, query_vectors.jsonl).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source_dir="${1:?usage: $0 OUTPUT/COLLECTION [SIZES] [QUERY_COUNTS]}"
sizes="${2:-20000 60000 200000}"
counts="${3:-8 50 1000}"
for file in points.jsonl query_vectors.jsonl; do
    [[ -f "$source_dir/$file" ]] || { echo "no $source_dir/$file" >&2; exit 2; }
done

bench="$(cargo bench --bench ranking --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*ranking-[^"]*"' | tail -1 | cut -d'"' -f4)"
[[ -x "$bench" ]] || { echo "could not build benches/ranking.rs" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
for n in $sizes; do
    "$bench" build "$source_dir/points.jsonl" "$n" "$work/store"
    for q in $counts; do
        for method in scan index; do
            "$bench" search "$work/store" "$source_dir/query_vectors.jsonl" "$q" "$method" | tee -a "$results"
        done
    done
    rm -rf "$work/store"
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["points"], r["queries"]), {})[r["method"]] = r
mib = lambda b: f"{b / 2**20:.0f}" if b is not None else "—"
print()
print("| points | queries | scan s | index s | scan peak RSS MiB | index peak RSS MiB | index estimate MiB | same hits |")
print("|---:|---:|---:|---:|---:|---:|---:|:--:|")
bad = 0
for (n, q), m in sorted(by.items()):
    s, i = m["scan"], m["index"]
    same = s["hits_sha256"] == i["hits_sha256"]
    bad += not same
    print(f"| {n:,} | {q:,} | {s['seconds']:.3f} | {i['seconds']:.3f} | {mib(s['peak_rss_bytes'])} | "
          f"{mib(i['peak_rss_bytes'])} | {mib(i['index_bytes'])} | {'yes' if same else 'NO'} |")
sys.exit(1 if bad else 0)
PY

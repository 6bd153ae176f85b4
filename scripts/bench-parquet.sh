#!/usr/bin/env bash
# Parquet vs JSONL points: bytes per point, Parquet write throughput (`convert --to parquet`,
# which writes the same parts a run does, from the same lines) and the time to load the points
# into memory (pyarrow's read_table of the parts vs json.loads of every line).
#
#   scripts/bench-parquet.sh [RUN_OUTPUT_DIR] [COPIES...]
#
# RUN_OUTPUT_DIR: a finished run that wrote JSONL (default out/quickstart, the quickstart's);
# each COPIES (default "1 50") makes a collection of that many copies of its points (new chunk
# ids and point ids, same vectors; 50 × the bundled 2,000 = 100,000 points), recorded in a copy
# of its manifest so that convert accepts it. Prints one Markdown row per size.
# BENCH_RUNS=1 first runs the quickstart configuration (models fetched) three times into
# temporary directories, alternating the formats — JSONL, JSONL + Parquet, Parquet only — and
# prints each run's wall time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/python-env.sh
src="${1:-out/quickstart}"
shift || true
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(1 50)
cargo build --release --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ "${BENCH_RUNS:-0}" == 1 ]]; then
    models_dir="$(scripts/fetch-models.sh)"
    echo "| output.formats | wall time of the quickstart run |"
    echo "|---|---:|"
    for formats in '["jsonl"]' '["jsonl","parquet"]' '["parquet"]'; do
        start=$(date +%s.%N)
        EMBED_COLLECTIONS_MODELS_DIR="$models_dir" ./target/release/embed-collections \
            --config configs/quickstart.toml --output "$work/run" --quiet \
            --set "output.formats=$formats" >/dev/null 2>&1
        end=$(date +%s.%N)
        echo "| \`$formats\` | $(echo "$end - $start" | bc) s |"
        rm -rf "$work/run"
    done
    echo
fi
echo "| points | JSONL bytes/point | Parquet bytes/point | Parquet/JSONL | convert --to parquet | points/s | load: json.loads | load: pyarrow | speed-up |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for copies in "${sizes[@]}"; do
    dir="$work/x$copies"
    "$EMBED_COLLECTIONS_PYTHON" - "$src" "$dir" "$copies" <<'PY'
import hashlib, json, os, shutil, sys, uuid
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
manifest = json.load(open(os.path.join(src, "manifest.json")))
os.makedirs(dst)
namespace = uuid.UUID("03832116-a7ce-42f0-8170-58863da6b133")
for c in manifest["collections"]:
    name = c["name"]
    os.makedirs(os.path.join(dst, name))
    lines = open(os.path.join(src, name, "points.jsonl"), "rb").read().splitlines(keepends=True)
    out = open(os.path.join(dst, name, "points.jsonl"), "wb")
    for k in range(copies):
        for line in lines:
            if k:
                point = json.loads(line)
                point["payload"]["chunk_id"] += f"#{k}"
                point["id"] = str(uuid.uuid5(namespace, f"{name}/{point['payload']['chunk_id']}"))
                line = (json.dumps(point, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            out.write(line)
    out.close()
    c["outputs"] = [f"{name}/points.jsonl"]
files = []
for c in manifest["collections"]:
    rel = f"{c['name']}/points.jsonl"
    data = open(os.path.join(dst, rel), "rb").read()
    files.append({"path": rel, "bytes": len(data), "lines": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()})
manifest["files"] = files
json.dump(manifest, open(os.path.join(dst, "manifest.json"), "w"), indent=2)
PY
    start=$(date +%s.%N)
    ./target/release/embed-collections convert "$dir" --to parquet >/dev/null
    end=$(date +%s.%N)
    "$EMBED_COLLECTIONS_PYTHON" - "$dir" "$start" "$end" <<'PY'
import glob, json, os, sys, time
import pyarrow.parquet as pq
dir, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
jsonl = glob.glob(os.path.join(dir, "*", "points.jsonl"))[0]
parts = sorted(glob.glob(os.path.join(os.path.dirname(jsonl), "points", "*.parquet")))
n = sum(1 for _ in open(jsonl, "rb"))
jb = os.path.getsize(jsonl)
pb = sum(os.path.getsize(p) for p in parts)
# Warm: the modules' first use (pyarrow's dataset discovery) is not counted against either.
json.loads(open(jsonl, "rb").readline()); pq.read_table(parts[0])
t = time.perf_counter(); points = [json.loads(l) for l in open(jsonl, "rb")]; tj = time.perf_counter() - t
del points
t = time.perf_counter(); table = pq.ParquetDataset(os.path.dirname(parts[0])).read(); tp = time.perf_counter() - t
assert table.num_rows == n
w = end - start
print(f"| {n:,} | {jb / n:,.0f} | {pb / n:,.0f} | {pb / jb:.1%} | {w:.1f} s | {n / w:,.0f} | {tj:.2f} s | {tp:.3f} s | {tj / tp:.0f}× |")
PY
    rm -rf "$dir"
done

#!/usr/bin/env bash
# CI: the CPU wheel as a user gets it (README "Kaggle and pip"). Builds it, installs it into a
# fresh venv, and checks, with the installed files only:
#  1. `embed-collections` is on the venv's PATH and runs the bundled example (manifest "ok");
#  2. `embed-collections fetch-models` runs the installed fetcher (outside any checkout);
#  3. the same binary on a CPU without AVX-512 (qemu-x86_64 -cpu Haswell: AVX2 + FMA): its
#     AVX2 kernels run and give the native run's query vectors (cosine >= 0.9999, same top
#     sparse terms);
#  4. configs/kaggle-t4.toml, installed with the package, passes `check` with --device cpu;
#  5. examples/kaggle/embed-collections.ipynb executes top to bottom on CPU against the bundled
#     example (jupyter nbconvert --execute, the EC_* parameters), including a simulated session
#     cut and the --resume that finishes the run.
#  6. the one version: the installed wheel's metadata, `--version` and the run's manifest agree.
# Needs qemu-user (Debian's or Ubuntu's qemu-user package; installed here when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
if ! command -v qemu-x86_64 >/dev/null; then
  echo "== installing qemu-user"
  apt() { if [[ $(id -u) -eq 0 ]]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
  apt install -y -q qemu-user >/dev/null || { apt update -q >/dev/null && apt install -y -q qemu-user >/dev/null; }
fi

wheel="$(scripts/build-wheel.sh | tail -n 1)"
models="$(scripts/fetch-models.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== check-wheel: $(basename "$wheel") into a fresh venv"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" \
  nbconvert==7.17.2 ipykernel==7.4.0
export PATH="$work/venv/bin:$PATH"
bin="$(command -v embed-collections)"
[[ "$bin" == "$work/venv/bin/embed-collections" ]] || { echo "embed-collections on PATH is $bin" >&2; exit 1; }
embed-collections --version
embed-collections devices

manifest_ok() { # output dir
  "$work/venv/bin/python" - "$1/manifest.json" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
points = sum(c["points"] for c in manifest["collections"])
print(f"{sys.argv[1]}: status {manifest['status']}, {points} points")
sys.exit(manifest["status"] != "ok")
PY
}

echo "== 1. the bundled example, by the installed binary"
# The 300-abstract slice without rerank: the notebook below runs the whole quickstart.
embed-collections --config configs/quickstart.toml --models-dir "$models" --output "$work/quickstart" --quiet \
  --collections scifact-mini --no-rerank
manifest_ok "$work/quickstart"
"$work/venv/bin/python" - "$work/quickstart/manifest.json" "$(embed-collections --version)" <<'PY'
import importlib.metadata, json, sys
tool = json.load(open(sys.argv[1]))["tool"]
wheel = importlib.metadata.version("embed-collections")
line = sys.argv[2]
if not (tool["version"] == wheel and line.startswith(f"embed-collections {wheel} ")):
    sys.exit(f"versions disagree: wheel {wheel}, manifest {tool['version']}, --version {line!r}")
print(f"one version: wheel {wheel} = manifest = --version ({line})")
PY

echo "== 2. fetch-models from the installed package"
(cd "$work" && embed-collections fetch-models --models-dir "$models" 2>&1 | tail -n 2)

echo "== 3. the AVX2 kernels (emulated Haswell) against the native ones"
head -n 8 examples/collections/scifact-mini/queries.jsonl > "$work/queries.jsonl"
embed-queries() { embed-collections embed-queries --queries "$work/queries.jsonl" --models-dir "$models" --quiet "$@"; }
embed-queries --output "$work/native.jsonl"
qemu-x86_64 -cpu Haswell "$bin" devices 2>/dev/null | tee "$work/haswell.txt"
grep -q "kernels: avx2" "$work/haswell.txt"
# Without VNNI the INT8 products dispatch to the portable kernel (whose results equal the VNNI
# kernel's: tests/cli.rs forces it natively and compares the scores).
grep -q "int8 kernel: portable" "$work/haswell.txt"
qemu-x86_64 -cpu Haswell "$bin" embed-queries --queries "$work/queries.jsonl" --models-dir "$models" \
  --quiet --output "$work/haswell.jsonl" 2>/dev/null
"$work/venv/bin/python" scripts/wheel/compare_query_vectors.py "$work/native.jsonl" "$work/haswell.jsonl"

echo "== 4. the installed Kaggle config passes check on the CPU"
config="$("$work/venv/bin/python" -c 'import embed_collections, os; print(os.path.join(os.path.dirname(embed_collections.__file__), "configs", "kaggle-t4.toml"))')"
cmp "$config" configs/kaggle-t4.toml
embed-collections check --config "$config" --device cpu --input examples/collections \
  --output "$work/kaggle-check" --models-dir "$models"

echo "== 5. the Kaggle notebook on CPU"
EC_WHEEL="$wheel" EC_INPUT="$repo/examples/collections" EC_OUTPUT="$work/notebook-out" \
  EC_MODELS="$models" EC_DEVICE=cpu EC_SIMULATE_CUT=1 \
  EC_EXTRA='--set input.collections=["scifact-mini"] --set gpu.precision=auto --set rerank.candidates=10 --set rerank.max_length=256 --window-chunks 100' \
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --output-dir "$repo/target/check-wheel" --output executed.ipynb examples/kaggle/embed-collections.ipynb
"$work/venv/bin/python" - "$repo/target/check-wheel/executed.ipynb" <<'PY'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
text = "".join(
    "".join(out.get("text", "")) for cell in cells if cell["cell_type"] == "code" for out in cell["outputs"]
)
for needed in ["cut: exit -9", "status: ok", "resumed from 1 earlier start", "ndcg_at_10", "  scifact-mini/points.jsonl"]:
    if needed not in text:
        sys.exit(f"the executed notebook does not show {needed!r}:\n{text[-3000:]}")
print("notebook: executed; shows the cut, the resume and the evaluation")
PY
echo "check-wheel: ok"

#!/usr/bin/env bash
# The GPU check, in one call on a machine with an NVIDIA GPU (any driver >= 550, no registry
# access). It needs the CUDA 12.4 binary, its CUDA 12 libraries (cuBLAS, cuBLASLt, cuRAND, the
# runtime: the machine's PyTorch may bring CUDA 13's, which a CUDA 12 build cannot use) and the
# models, packed here by scripts/gpu/pack.sh into .gpu/part-NN and received one part per call
# (the device tool carries at most 64 MiB a call):
#
#   bash scripts/gpu-check.sh receive .gpu/part-00     # once per part, in order
#   bash scripts/gpu-check.sh run                      # the check itself
#
# The run, on the bundled SciFact slice (examples/collections):
#   0. the start-up report (`embed-collections devices`: driver, libraries found, each GPU),
#      and the clear error when the libraries are withheld;
#   1. parity: CPU f32 (reference) vs CUDA f32 and CUDA f16 on the real models (dense vectors,
#      SPLADE weights, CrossEncoder logits), tolerances in scripts/gpu/compare.py;
#   2. memory: the measured peak per stage (the CUDA pool's high-water mark, from the lease
#      events) under the 12 GiB ceiling, and under a deliberately tiny ceiling, where the
#      planned batches must shrink and the output must not change;
#   3. recovery: a second process takes most of the GPU's memory after the stage has leased
#      it (torch, when importable), so real CUDA out-of-memory errors hit the batches: the
#      manifest must show OOM events and halvings, and the vectors must still match;
#   4. throughput per stage with GPU-sized rerank settings (100 candidates at 512 tokens), next
#      to sentence-transformers fp16 on the same GPU when it is importable;
#   5. the +10 % rule: full run / dense-only run wall time;
#   6. two concurrent processes leasing one device (the second waits; both finish, same output).
# Summaries and manifests go to $OUT (the device tool brings them back); exit 1 on a parity
# failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
stage_dir="${EC_GPU_STAGE:-/tmp/ec-gpu}"
out="${OUT:-/tmp/ec-gpu-out}"
mkdir -p "$out"

case "${1:-run}" in
  receive)
    shift
    mkdir -p "$stage_dir/parts"
    cp "$@" "$stage_dir/parts/"
    ls -l "$stage_dir/parts"
    exit 0
    ;;
  run) ;;
  *) echo "usage: $0 receive PART... | run" >&2; exit 2 ;;
esac

unpacked="$stage_dir/unpacked"
if [[ ! -x "$unpacked/embed-collections" ]]; then
  mkdir -p "$unpacked"
  cat "$stage_dir"/parts/part-* | gzip -dc | tar -xf - -C "$unpacked"
  (cd "$unpacked" && sha256sum --quiet -c SHA256SUMS)
fi
bin="$unpacked/embed-collections"
export EMBED_COLLECTIONS_MODELS_DIR="$unpacked/models" HF_HUB_OFFLINE=1

# The CUDA 12 libraries carried in the pack: the binary searches EMBED_COLLECTIONS_CUDA_LIBRARY_PATH
# first for those it loads; libcudart.so.12, which it links, comes through LD_LIBRARY_PATH (the
# rpath covers pip's layout only).
export EMBED_COLLECTIONS_CUDA_LIBRARY_PATH="$unpacked/cuda-lib"
export LD_LIBRARY_PATH="$unpacked/cuda-runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$bin" --version
  "$bin" devices || echo "devices: exit $?"
  # Without the carried libraries the check must fail with one clear error, not a crash.
  # (It finds the machine's own CUDA 12 cuBLAS instead, if it has one.)
  env -u EMBED_COLLECTIONS_CUDA_LIBRARY_PATH "$bin" devices 2>&1 | tail -n 3 || true
} | tee "$out/summary.txt"

work="$(mktemp -d)"
# One config per run: the quickstart's job with this run's device, precision and limits.
run() { # name devices precision ceiling rerank_candidates rerank_max_length [extra env]
  local name="$1" devices="$2" precision="$3" ceiling="$4" candidates="$5" max_length="$6"
  cat > "$work/$name.toml" <<TOML
[input]
root = "$repo/examples/collections"
collections = ["scifact-mini"]
[output]
dir = "$work/$name"
[dense]
batch_tokens = 65536
max_batch_size = 512
[[dense.models]]
name = "minilm"
model = "sentence-transformers/all-MiniLM-L6-v2"
[sparse]
enabled = true
model = "splade-tiny"
[rerank]
enabled = true
model = "cross-encoder/ms-marco-MiniLM-L-12-v2"
queries = "$repo/examples/collections/scifact-mini/queries.jsonl"
candidates = $candidates
top_k = 10
max_length = $max_length
[eval]
qrels = "$repo/examples/collections/scifact-mini/qrels/test.tsv"
[gpu]
devices = "$devices"
memory_ceiling = "$ceiling"
precision = "$precision"
[telemetry]
progress = "never"
TOML
  local started=$SECONDS status=0
  "$bin" --quiet --config "$work/$name.toml" 2> "$work/$name.log" || status=$?
  echo "$name: exit $status in $((SECONDS - started)) s" | tee -a "$out/summary.txt"
  cp "$work/$name/manifest.json" "$out/$name.manifest.json" 2>/dev/null || true
  if [[ $status -ne 0 ]]; then tail -n 20 "$work/$name.log" | tee -a "$out/summary.txt"; fi
}

run parity-cpu-f32 cpu f32 12GiB 10 256
run parity-cuda-f32 cuda:0 f32 12GiB 10 256
run parity-cuda-f16 cuda:0 f16 12GiB 10 256
run parity-tiny-ceiling-f16 cuda:0 f16 320MiB 10 256

# Recovery: a second process fills the GPU a few seconds after this run has leased it.
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 - <<'PY' &
import time, torch
time.sleep(4)
free, _ = torch.cuda.mem_get_info(0)
keep = 400 << 20
hog = torch.empty(max(free - keep, 0), dtype=torch.uint8, device="cuda:0")
print(f"hog: took {hog.numel() >> 20} MiB, left {keep >> 20} MiB", flush=True)
time.sleep(60)
PY
  hog=$!
  sleep 1
  run parity-squeezed-f16 cuda:0 f16 12GiB 10 256
  kill "$hog" 2>/dev/null || true
  wait "$hog" 2>/dev/null || true
else
  echo "squeezed: skipped (torch with CUDA not importable here)" | tee -a "$out/summary.txt"
fi

run throughput-f16 cuda:0 f16 12GiB 100 512

# The +10 % rule: the same job dense-only (no SPLADE, no rerank) against the full one.
sed -e 's/^enabled = true$/enabled = false/' -e "s#$work/throughput-f16#$work/dense-only-f16#" \
  "$work/throughput-f16.toml" > "$work/dense-only-f16.toml"
started=$SECONDS
"$bin" --quiet --config "$work/dense-only-f16.toml" 2> "$work/dense-only-f16.log" && dense_s=$((SECONDS - started))
python3 - "$work/throughput-f16/manifest.json" "$work/dense-only-f16/manifest.json" <<'PY' | tee -a "$out/summary.txt"
import json, sys
full, dense = (json.load(open(p))["wall_seconds"] for p in sys.argv[1:3])
print(f"full / dense-only wall time: {full:.1f} s / {dense:.1f} s = {full / dense:.2f}x (rule: <= 1.10x)")
PY

# Two processes, one device: the second waits for the first's lease; both finish.
for i in 1 2; do
  sed "s#$work/parity-cuda-f16#$work/concurrent-$i#" "$work/parity-cuda-f16.toml" > "$work/concurrent-$i.toml"
  "$bin" --quiet --config "$work/concurrent-$i.toml" 2> "$work/concurrent-$i.log" &
  pids[i]=$!
done
for i in 1 2; do
  status=0; wait "${pids[i]}" || status=$?
  echo "concurrent-$i: exit $status" | tee -a "$out/summary.txt"
  cp "$work/concurrent-$i/manifest.json" "$out/concurrent-$i.manifest.json" 2>/dev/null || true
done
python3 - "$work"/concurrent-1/manifest.json "$work"/concurrent-2/manifest.json <<'PY' | tee -a "$out/summary.txt"
import json, sys
for path in sys.argv[1:]:
    leases = json.load(open(path))["leases"]
    kinds = [e.get("kind") for e in leases]
    print(path.split("/")[-2], "lease events:", ", ".join(str(k) for k in kinds))
PY

# sentence-transformers fp16 on the same GPU, same texts, when it is installed here.
if python3 -c 'import sentence_transformers, torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 - "$repo/examples/collections/scifact-mini/corpus.jsonl" <<'PY' | tee -a "$out/summary.txt"
import json, sys, time, torch
from sentence_transformers import SentenceTransformer
texts = [(r.get("title", "") + " " + r["text"]).strip() for r in map(json.loads, open(sys.argv[1]))]
model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cuda").half()
model.encode(texts[:64], batch_size=64)
torch.cuda.synchronize(); started = time.perf_counter()
model.encode(texts, batch_size=256)
torch.cuda.synchronize(); seconds = time.perf_counter() - started
tokens = sum(len(model.tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts)
print(f"sentence-transformers fp16 dense: {tokens / seconds:,.0f} tokens/s ({len(texts)} texts)")
PY
else
  echo "sentence-transformers: not importable here; no side-by-side figure" | tee -a "$out/summary.txt"
fi

runs=()
for dir in "$work"/parity-cuda-f32 "$work"/parity-cuda-f16 "$work"/parity-tiny-ceiling-f16 "$work"/parity-squeezed-f16 "$work"/throughput-f16; do
  [[ -f "$dir/manifest.json" ]] && runs+=("$dir")
done
python3 "$repo/scripts/gpu/compare.py" "$work/parity-cpu-f32" "${runs[@]}" | tee -a "$out/summary.txt"

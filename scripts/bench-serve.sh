#!/usr/bin/env bash
# Serving throughput and latency, side by side on this machine with one load generator (wrk):
# `embed-collections serve` against Infinity (infinity-emb, its ONNX "optimum" engine, the
# fastest it has on a CPU) and a plain sentence-transformers server (scripts/bench/st_server.py),
# all serving the same all-MiniLM-L6-v2 (and ms-marco-MiniLM-L-12-v2 for rerank) from the
# fetched models directory. Every request holds the same 8 short passages (SciFact titles).
#
#   scripts/bench-serve.sh                 # ours only
#   PEERS_VENV=/path/to/venv scripts/bench-serve.sh   # and the peers, installed in that venv:
#       python3 -m venv /tmp/peers && /tmp/peers/bin/pip install \
#           "infinity-emb[server,optimum,torch]==0.0.78" sentence-transformers
#   (PEER_MODELS=DIR keeps the peers' ONNX exports between runs)
#
# Prints one Markdown table row per (server, route, concurrency): inputs/s, tokens/s, p50 and
# p99 latency, non-2xx answers. DURATION (default 20s) per cell; CONCURRENCY (default "1 8 64").
# Not a test: the machine is shared and noisy; compare rows of one run only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v wrk >/dev/null || { echo "bench-serve: needs wrk (apt install wrk)" >&2; exit 2; }
models="${EMBED_COLLECTIONS_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/models}"
minilm="$models/sentence-transformers/all-MiniLM-L6-v2"
reranker="$models/cross-encoder/ms-marco-MiniLM-L-12-v2"
duration="${DURATION:-20s}"
read -r -a concurrency <<< "${CONCURRENCY:-1 8 64}"
bin="${EMBED_COLLECTIONS_BIN:-target/release/embed-collections}"
[[ -x "$bin" ]] || cargo build --release --locked --quiet
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# 8 short passages: the first 8 titles of the bundled SciFact slice.
python3 - "$work" <<'PY'
import json, sys
titles = [json.loads(l)["title"] for l in open("examples/collections/scifact-mini/corpus.jsonl")][:8]
out = sys.argv[1]
bodies = {
    "tei_embed": {"inputs": titles},
    "openai": {"model": "MODEL", "input": titles},
    "tei_rerank": {"query": "vitamin D and bone health", "texts": titles},
    "cohere_rerank": {"model": "MODEL", "query": "vitamin D and bone health", "documents": titles},
}
for name, body in bodies.items():
    open(f"{out}/{name}.json", "w").write(json.dumps(body))
PY

wait_ready() {  # URL
    for _ in $(seq 600); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "bench-serve: $1 never became ready" >&2
    return 1
}

# One wrk cell: SERVER ROUTE URL BODY_FILE INPUTS_PER_REQUEST TOKENS_PER_REQUEST
cell() {
    local server=$1 route=$2 url=$3 body=$4 inputs=$5 tokens=$6
    cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$body", "rb"); wrk.body = f:read("*a"); f:close()
LUA
    for c in "${concurrency[@]}"; do
        wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "$duration" --timeout 60s --latency \
            -s "$work/post.lua" "$url" > "$work/wrk.txt" 2>&1 || true
        python3 - "$work/wrk.txt" "$server" "$route" "$c" "$inputs" "$tokens" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
server, route, c, inputs, tokens = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
print(f"| {server} | {route} | {c} | {rps * inputs:.0f} | {rps * tokens:.0f} | {ms(50):.1f} | {ms(99):.1f} | "
      f"{bad.group(1) if bad else 0}{' / ' + errors.group(0) if errors else ''} |", flush=True)
PY
    done
}

tokens_of() {  # URL BODY: the usage the server reports (OpenAI-style), else 0
    curl -fsS "$1" -H 'content-type: application/json' -d @"$2" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin).get("usage", {}).get("total_tokens", 0))' \
        2>/dev/null || echo 0
}

echo "| server | route | concurrency | inputs/s | tokens/s | p50 ms | p99 ms | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"

# --- ours
port=18300
"$bin" serve --config configs/quickstart.toml --no-sparse --listen "127.0.0.1:$port" -q &
pids+=($!)
wait_ready "http://127.0.0.1:$port/health"
sed "s/MODEL/minilm/" "$work/openai.json" > "$work/ours_openai.json"
sed "s/MODEL/rerank/" "$work/cohere_rerank.json" > "$work/ours_cohere.json"
tokens=$(tokens_of "http://127.0.0.1:$port/v1/embeddings" "$work/ours_openai.json")
rerank_tokens=$(tokens_of "http://127.0.0.1:$port/v1/rerank" "$work/ours_cohere.json")
cell "embed-collections" "/embed" "http://127.0.0.1:$port/embed" "$work/tei_embed.json" 8 "$tokens"
cell "embed-collections" "/v1/embeddings" "http://127.0.0.1:$port/v1/embeddings" "$work/ours_openai.json" 8 "$tokens"
cell "embed-collections" "/rerank" "http://127.0.0.1:$port/rerank" "$work/tei_rerank.json" 8 "$rerank_tokens"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# Bare forward pass of the same 8 texts (no HTTP): the floor for latency at concurrency 1.
python3 -c "
import json
for t in json.load(open('$work/tei_embed.json'))['inputs']:
    print(json.dumps({'text': t}))" > "$work/texts.jsonl"
# One batch of 8 on one worker, and 2 batches of 4 on the two workers (what serve plans).
for batch in 8 4; do
    "$bin" bench --model dense --texts "$work/texts.jsonl" --repeat 20 --batch-size "$batch" 2>/dev/null \
        | python3 -c '
import json, sys, statistics
rows = [json.loads(l) for l in sys.stdin if l.strip()]
times = sorted(r["seconds"] for r in rows[1:])
print(f"| embed-collections bench, no HTTP | forward pass, batches of {sys.argv[1]} | 1 | {8 / statistics.median(times):.0f} | | {statistics.median(times) * 1e3:.1f} | {times[-1] * 1e3:.1f} | |")' "$batch"
done

[[ -n "${PEERS_VENV:-}" ]] || exit 0
export DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# --- Infinity, ONNX engine (its fastest on CPU). Its optimum engine wants an ONNX file beside
# the model: exported here with optimum-cli (transformers outputs, last_hidden_state / logits).
# Infinity 0.0.78 with optimum 2.x finds the file only by a bare name, so each model runs from
# its own directory as `--model-id .`, one process per model (the rows are per route anyway).
peer_models="${PEER_MODELS:-$work/peer-models}"
for pair in "minilm:$minilm:feature-extraction" "reranker:$reranker:text-classification"; do
    IFS=: read -r short source task <<< "$pair"
    if [[ ! -f "$peer_models/$short/model.onnx" ]]; then
        mkdir -p "$peer_models"
        cp -r "$source" "$peer_models/$short"
        "$PEERS_VENV/bin/optimum-cli" export onnx --model "$peer_models/$short" --task "$task" \
            --library-name transformers "$work/onnx-$short" > "$work/export-$short.log" 2>&1
        mv "$work/onnx-$short/model.onnx" "$peer_models/$short/model.onnx"
    fi
done
infinity() {  # SHORT NAME PORT
    (cd "$peer_models/$1" && exec "$PEERS_VENV/bin/infinity_emb" v2 --model-id . --served-model-name "$2" \
        --engine optimum --device cpu --port "$3") > "$work/infinity-$1.log" 2>&1 &
    pids+=($!)
    wait_ready "http://127.0.0.1:$3/health" || { tail -30 "$work/infinity-$1.log" >&2; exit 1; }
}
infinity minilm minilm 18301
cell "infinity 0.0.78 (optimum)" "/embeddings" "http://127.0.0.1:18301/embeddings" "$work/ours_openai.json" 8 "$tokens"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
infinity reranker rerank 18303
cell "infinity 0.0.78 (optimum)" "/rerank" "http://127.0.0.1:18303/rerank" "$work/ours_cohere.json" 8 "$rerank_tokens"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# --- a plain sentence-transformers server (torch).
port=18302
"$PEERS_VENV/bin/python" scripts/bench/st_server.py "$minilm" "$reranker" "$port" > "$work/st.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/health" || { tail -30 "$work/st.log" >&2; exit 1; }
cell "sentence-transformers + uvicorn" "/embed" "http://127.0.0.1:$port/embed" "$work/tei_embed.json" 8 "$tokens"
cell "sentence-transformers + uvicorn" "/rerank" "http://127.0.0.1:$port/rerank" "$work/tei_rerank.json" 8 "$rerank_tokens"

#!/usr/bin/env bash
# Fusion and rerank blend on a BEIR collection (issue: fusion that never hurts). For each
# configuration — the default (all-MiniLM-L6-v2 + SPLADE-tiny) and two dense models
# (+ bge-small-en-v1.5) — one run with fusion.method = "auto" gives nDCG@10 of every list and
# every menu entry against the qrels (the manifest's ranking.auto.entries: labelled for
# comparison, never used to choose), auto's choice and its seconds; reruns with --reuse (every
# vector and pair score reused, so nothing is recomputed) give the reranked list under each
# rerank.blend, over the fused list auto chose and over plain RRF.
#
#   scripts/bench-fusion.sh DATA_DIR COLLECTION [OUT_DIR]
#   scripts/bench-fusion.sh examples/collections scifact-2k
# Only the queries judged in COLLECTION/qrels/test.tsv are ranked; rerank of the top 10 at 256
# tokens.
set -euo pipefail
data="$(cd "${1:?usage: $0 DATA_DIR COLLECTION [OUT_DIR]}" && pwd)"
collection="${2:?usage: $0 DATA_DIR COLLECTION [OUT_DIR]}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${3:-out/bench-fusion-$collection}"
mkdir -p "$out"
models="$(scripts/fetch-models.sh | tail -n 1)"
cargo build --release --locked --quiet
python3 scripts/judged-queries.py "$data/$collection" "$out/queries.jsonl"
run() { # NAME EXTRA_ARGS...
  local name="$1"; shift
  ./target/release/embed-collections --input "$data" --output "$out/$name" --models-dir "$models" \
    --device cpu --quiet --set "input.collections=[\"$collection\"]" \
    --set "rerank.queries=\"$out/queries.jsonl\"" --set "eval.qrels=\"$data/$collection/qrels/test.tsv\"" \
    --set rerank.candidates=10 --set rerank.top_k=10 --set rerank.max_length=256 \
    "$@" >/dev/null
}
two=(--set 'dense.models=[{name = "minilm", model = "all-minilm-l6"}, {name = "bge-small", model = "bge-small-en"}]')
for config in default two; do
  extra=()
  [[ "$config" == two ]] && extra=("${two[@]}")
  run "$config-auto" "${extra[@]}" --set fusion.method=auto
  for blend in rrf convex; do
    run "$config-auto-$blend" "${extra[@]}" --reuse "$out/$config-auto" --set fusion.method=auto \
      --set "rerank.blend=$blend"
  done
  for blend in replace rrf convex; do
    run "$config-rrf-$blend" "${extra[@]}" --reuse "$out/$config-auto" --set "rerank.blend=$blend"
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def collection(run):
    return json.load(open(f"{out}/{run}/manifest.json"))["collections"][0]
for config in ["default", "two"]:
    auto = collection(f"{config}-auto")
    judged = auto["ranking"]["auto"]
    lists = auto["evaluation"]["lists"]
    print(f"\n### {config}: {auto['ranking']['fusion']} — {judged['reason']}")
    print(f"auto: {judged['pairs_scored']} pairs judged in {judged['seconds']:.1f} s "
          f"({judged['queries']} queries); dense stage {auto['overhead']['dense_s']:.1f} s\n")
    print("| list | nDCG@10 (qrels) | judged nDCG@10 (CrossEncoder) | gain over rrf [interval] |")
    print("|---|---|---|---|")
    for name, metrics in sorted(lists.items()):
        if name.startswith("dense") or name == "sparse":
            print(f"| {name} (retrieval) | {metrics['ndcg_at_10']:.4f} | | |")
    for entry in judged["entries"]:
        chosen = " **(chosen)**" if entry["name"] == judged["name"] else ""
        lo, hi = entry["interval"]
        print(f"| fusion {entry['name']}{chosen} | {entry['labelled_ndcg_at_10']:.4f} | "
              f"{entry['judged_ndcg_at_10']:.4f} | {entry['gain']:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    for fused in ["rrf", "auto"]:
        for blend in ["replace", "rrf", "convex"]:
            run = f"{config}-{fused}-{blend}" if (fused, blend) != ("auto", "replace") else f"{config}-auto"
            lists = collection(run)["evaluation"]["lists"]
            print(f"| reranked over {fused}, blend {blend} | {lists['reranked']['ndcg_at_10']:.4f} | | |")
PY

#!/usr/bin/env bash
# rerank.budget against no budget on a BEIR collection: per budget, the candidates per query
# the plan chose, the pairs scored, the overhead ratio (sparse + fusion + rerank over dense),
# whether the budget held, and nDCG@10 of the fused and reranked lists. One run per budget, one
# after another on the same machine (the ratios are measured in the run itself).
#
#   scripts/bench-rerank-budget.sh DATA_DIR COLLECTION [BUDGETS] [CANDIDATES]
#   scripts/bench-rerank-budget.sh examples/collections scifact-2k "0.05 0.10 0.25 off" 30
# Only the queries judged in COLLECTION/qrels/test.tsv are ranked; rerank at 256 tokens,
# top_k 10, the floor rerank.min_candidates 10.
set -euo pipefail
data="$(cd "${1:?usage: $0 DATA_DIR COLLECTION [BUDGETS] [CANDIDATES]}" && pwd)"
collection="${2:?usage: $0 DATA_DIR COLLECTION [BUDGETS] [CANDIDATES]}"
budgets="${3:-0.05 0.10 0.25 off}"
candidates="${4:-30}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
models="$(scripts/fetch-models.sh | tail -n 1)"
cargo build --release --locked --quiet
python3 scripts/judged-queries.py "$data/$collection" "$work/queries.jsonl"
for budget in $budgets; do
  ./target/release/embed-collections --input "$data" --output "$work/$budget" --models-dir "$models" \
    --device cpu --quiet --set "input.collections=[\"$collection\"]" \
    --set "rerank.queries=\"$work/queries.jsonl\"" --set "eval.qrels=\"$data/$collection/qrels/test.tsv\"" \
    --set "rerank.candidates=$candidates" --set rerank.top_k=10 --set rerank.max_length=256 \
    --set "rerank.budget=\"$budget\"" >/dev/null
done
python3 - "$work" "$budgets" <<'PY'
import json, sys
work, budgets = sys.argv[1], sys.argv[2].split()
print("| budget | candidates per query | pairs | overhead (× dense) | planned | held | dense s | sparse s | rerank s | nDCG@10 fused | nDCG@10 reranked |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for budget in budgets:
    c = json.load(open(f"{work}/{budget}/manifest.json"))["collections"][0]
    o, lists = c["overhead"], c["evaluation"]["lists"]
    plan = o.get("rerank_budget")
    depth = plan["depth"] if plan else o["rerank_pairs"] // max(o["queries"], 1)
    outcome = f" ({plan['outcome'].replace('_', ' ')})" if plan else ""
    held = ("yes" if plan["held"] else "no") if plan else "–"
    planned = f"{plan['predicted_ratio']:.3f}" if plan else "–"
    print(f"| {budget} | {depth}{outcome} | {o['rerank_pairs']} | {o['ratio']:.3f} | {planned} | {held} | {o['dense_s']:.1f} | "
          f"{o['sparse_s']:.1f} | {o['rerank_s']:.1f} | {lists['fused']['ndcg_at_10']:.4f} | {lists['reranked']['ndcg_at_10']:.4f} |")
PY

"""Independent pure-Python reference for the retrieval metrics in src/eval.rs.

Writes tests/golden/eval_random.json: a seeded random qrels + rankings case and
the metrics this reference computes for it. Standard library only.

Conventions (BEIR / trec_eval): a ranking is a list of doc ids in rank order
(never re-sorted; a repeated doc id counts only at its first position); a doc
is relevant when its qrels relevance is > 0.
    nDCG@k     = DCG@k / IDCG@k, DCG = sum_{i=1..k} max(rel_i, 0) / log2(i + 1),
                 IDCG from the qrels relevances sorted descending, cut at k;
                 0 when IDCG is 0 (linear gain, as trec_eval ndcg_cut).
    Recall@k   = relevant docs in top k / relevant docs (0 if none).
    MRR@k      = 1 / rank of the first relevant doc in the top k, else 0.
Means are over the qrels' queries: a query without a ranking scores 0,
rankings of queries not in the qrels are ignored.

With --pytrec, also checks nDCG@10 / Recall@100 against pytrec_eval (and MRR@10
as pytrec_eval's recip_rank on rankings cut to 10) and records the largest
absolute difference in the golden file. pytrec_eval only scores queries present
in both qrels and run, so missing queries are filled with 0 before averaging.

Usage:
    python3 scripts/reference/eval_reference.py [--pytrec] [OUT]
"""

import json
import math
import os
import random
import sys

SEED = 20240611
N_QUERIES = 20
N_DOCS = 300
RANKING_LEN = 120

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "eval_random.json")


def dedup(ranking):
    seen = set()
    out = []
    for doc in ranking:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def ndcg_at(k, judgments, ranking):
    ideal = sorted((r for r in judgments.values() if r > 0), reverse=True)[:k]
    idcg = 0.0
    for i, rel in enumerate(ideal):
        idcg += rel / math.log2(i + 2)
    if idcg <= 0.0:
        return 0.0
    dcg = 0.0
    for i, doc in enumerate(dedup(ranking)[:k]):
        rel = judgments.get(doc, 0)
        if rel > 0:
            dcg += rel / math.log2(i + 2)
    return dcg / idcg


def recall_at(k, judgments, ranking):
    relevant = {d for d, r in judgments.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(dedup(ranking)[:k])) / len(relevant)


def mrr_at(k, judgments, ranking):
    for i, doc in enumerate(dedup(ranking)[:k]):
        if judgments.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def per_query(qrels, rankings):
    out = {}
    for q in sorted(qrels):
        ranking = rankings.get(q, [])
        out[q] = [ndcg_at(10, qrels[q], ranking),
                  recall_at(100, qrels[q], ranking),
                  mrr_at(10, qrels[q], ranking)]
    return out


def evaluate(qrels, rankings):
    pq = per_query(qrels, rankings)
    n = len(pq)
    mean = (lambda i: sum(v[i] for v in pq.values()) / n) if n else (lambda i: 0.0)
    return {"ndcg_at_10": mean(0), "recall_at_100": mean(1), "mrr_at_10": mean(2),
            "queries": n}


def make_case(rng):
    docs = ["d%03d" % i for i in range(N_DOCS)]
    qrels = {}
    for qi in range(N_QUERIES):
        q = "q%02d" % qi
        judged = rng.sample(docs, rng.randint(1, 12))
        if qi == 7:
            rels = [0] * len(judged)  # judged, but nothing relevant
        else:
            rels = [rng.choice([0, 1, 1, 2]) for _ in judged]
            rels[0] = max(rels[0], 1)
            if qi % 4 == 1 and len(rels) > 1:
                rels[-1] = -1  # negative judgment: gain 0, not relevant
        qrels[q] = dict(zip(judged, rels))
    rankings = {}
    for qi in range(N_QUERIES):
        q = "q%02d" % qi
        if qi in (3, 15):
            continue  # qrels query without a ranking: scores 0
        judged = list(qrels[q])
        # Put some judged docs near the top so the metrics are not all ~0.
        pool = [d for d in docs if d not in judged]
        ranking = rng.sample(pool, RANKING_LEN)
        for d in judged:
            if rng.random() < 0.7:
                ranking.insert(rng.randrange(0, 15) if rng.random() < 0.5
                               else rng.randrange(0, 130), d)
        rankings[q] = ranking[:RANKING_LEN]
    for extra in ("x01", "x02"):  # rankings for queries not in the qrels
        rankings[extra] = rng.sample(docs, RANKING_LEN)
    return qrels, rankings


def pytrec_check(qrels, rankings, pq):
    import pytrec_eval

    def run_of(cut):
        # Strictly decreasing scores so trec_eval's score sort keeps our order.
        return {q: {d: float(len(r) - i) for i, d in enumerate(dedup(r)[:cut])}
                for q, r in rankings.items() if q in qrels}

    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(
        run_of(None))
    top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run_of(10))
    max_diff = 0.0
    for q, (ndcg, recall, mrr) in pq.items():
        theirs = (full.get(q, {}).get("ndcg_cut_10", 0.0),
                  full.get(q, {}).get("recall_100", 0.0),
                  top10.get(q, {}).get("recip_rank", 0.0))
        for a, b in zip((ndcg, recall, mrr), theirs):
            max_diff = max(max_diff, abs(a - b))
    version = getattr(pytrec_eval, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as pkg_version
            version = pkg_version("pytrec_eval-terrier")
        except Exception:  # noqa: BLE001
            version = "unknown"
    return version, max_diff


def main(argv):
    use_pytrec = "--pytrec" in argv
    args = [a for a in argv if a != "--pytrec"]
    out_path = args[0] if args else DEFAULT_OUT
    qrels, rankings = make_case(random.Random(SEED))
    pq = per_query(qrels, rankings)
    golden = {
        "description": "Seeded random qrels + rankings; expected metrics from "
                       "scripts/reference/eval_reference.py (pure Python). "
                       "Queries q03 and q15 have no ranking, q07 has no relevant doc, q01/q05/q09/q13/q17 may hold a -1 judgment, "
                       "x01 and x02 are rankings for queries not in the qrels.",
        "seed": SEED,
        "qrels": [[q, d, r] for q in sorted(qrels) for d, r in sorted(qrels[q].items())],
        "rankings": rankings,
        "per_query": pq,
        "expected": evaluate(qrels, rankings),
    }
    if use_pytrec:
        version, max_diff = pytrec_check(qrels, rankings, pq)
        ok = max_diff <= 1e-12
        golden["pytrec_eval_check"] = {
            "package": "pytrec_eval-terrier " + str(version),
            "compared": "per-query ndcg_cut_10, recall_100, recip_rank (run cut to 10)",
            "max_abs_diff": max_diff,
            "agrees_to_1e-12": ok,
        }
        print("pytrec_eval %s: max abs diff %.3g" % (version, max_diff), file=sys.stderr)
        if not ok:
            print("pytrec_eval disagrees", file=sys.stderr)
            return 1
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote %s: %s" % (out_path, json.dumps(golden["expected"])), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Independent fusion references for tests/fusion.rs.

    python fusion_reference.py CASES.json > RESULTS.json

CASES.json: a list of {"lists": [[[index, score], ...], ...], "weights": [...], "k": K,
"method": "rrf" | "dbsf" | "convex", "normalization": "min_max" | "z_score" | "none"}. For each
case prints {"reference": [[index, score], ...] sorted best first, "qdrant": same or null}:

- "reference": the published formulas, written here from their definitions (not from the Rust
  code): weighted RRF as Qdrant defines it, 1 / (rank / weight + k) with 1-based ranks (0 for a
  weight <= 0; Cormack et al. with weights 1); DBSF, each list mapped by
  (s - (mean - 3 sd)) / (6 sd) with the sample sd (0.5 for one hit or sd 0), times its weight,
  summed; convex, sum of weight * normalised score (min-max with 1.0 when max == min, z-score
  with the population sd and 0 when sd == 0, or the raw score).
- "qdrant": qdrant-client's own fusion functions, the ones its local mode runs
  (qdrant_client.hybrid.fusion: reciprocal_rank_fusion with ranking_constant_k = k + 1 and the
  weights, distribution_based_score_fusion where every weight is 1); null where Qdrant has no
  such fusion.
"""

import json
import math
import sys

from qdrant_client.http import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion


def rrf(lists, weights, k):
    fused = {}
    for hits, weight in zip(lists, weights):
        for rank, (index, _) in enumerate(hits, start=1):
            fused[index] = fused.get(index, 0.0) + (1.0 / (rank / weight + k) if weight > 0 else 0.0)
    return fused


def dbsf(lists, weights):
    fused = {}
    for hits, weight in zip(lists, weights):
        scores = [s for _, s in hits]
        n = len(scores)
        if n == 0:
            continue
        mean = sum(scores) / n
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else 0.0
        for index, s in hits:
            value = (s - (mean - 3 * sd)) / (6 * sd) if sd > 0 else 0.5
            fused[index] = fused.get(index, 0.0) + weight * value
    return fused


def convex(lists, weights, normalization):
    fused = {}
    for hits, weight in zip(lists, weights):
        scores = [s for _, s in hits]
        n = len(scores)
        if n == 0:
            continue
        low, high = min(scores), max(scores)
        mean = sum(scores) / n
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
        for index, s in hits:
            if normalization == "min_max":
                value = (s - low) / (high - low) if high > low else 1.0
            elif normalization == "z_score":
                value = (s - mean) / sd if sd > 0 else 0.0
            else:
                value = s
            fused[index] = fused.get(index, 0.0) + weight * value
    return fused


def qdrant(case):
    responses = [
        [models.ScoredPoint(id=index, version=0, score=score) for index, score in hits]
        for hits in case["lists"]
    ]
    limit = sum(len(hits) for hits in case["lists"])
    if case["method"] == "rrf" and float(case["k"]).is_integer():
        fused = reciprocal_rank_fusion(
            responses, limit=limit, ranking_constant_k=int(case["k"]) + 1, weights=case["weights"]
        )
    elif case["method"] == "dbsf" and all(w == 1.0 for w in case["weights"]):
        fused = distribution_based_score_fusion(responses, limit=limit)
    else:
        return None
    return [[point.id, point.score] for point in fused]


def main():
    cases = json.load(open(sys.argv[1]))
    results = []
    for case in cases:
        lists, weights = case["lists"], case["weights"]
        if case["method"] == "rrf":
            fused = rrf(lists, weights, case["k"])
        elif case["method"] == "dbsf":
            fused = dbsf(lists, weights)
        else:
            fused = convex(lists, weights, case["normalization"])
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        results.append({"reference": [[i, s] for i, s in ranked], "qdrant": qdrant(case)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

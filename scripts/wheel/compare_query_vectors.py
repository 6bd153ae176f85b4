"""Compare two query_vectors JSONL files (the same queries embedded by two builds or two CPU
kernel variants): every dense vector's cosine >= 0.9999 and every sparse vector's top terms
the same (weights within 1e-3 relative). Exit 1 on a difference, naming the query and vector.

usage: compare_query_vectors.py REFERENCE.jsonl OTHER.jsonl
"""
import json
import math
import sys


def load(path):
    with open(path) as f:
        return {row["query_id"]: row["vector"] for row in map(json.loads, f)}


def main():
    reference, other = load(sys.argv[1]), load(sys.argv[2])
    if reference.keys() != other.keys():
        sys.exit(f"different queries: {sorted(reference.keys() ^ other.keys())[:5]}")
    worst, checked = 1.0, 0
    for qid, vectors in reference.items():
        for name, ref in vectors.items():
            got = other[qid].get(name)
            if isinstance(ref, list):
                dot = sum(a * b for a, b in zip(ref, got))
                norm = math.sqrt(sum(a * a for a in ref)) * math.sqrt(sum(b * b for b in got))
                cosine = dot / norm if norm else 0.0
                worst = min(worst, cosine)
                if len(ref) != len(got) or cosine < 0.9999:
                    sys.exit(f"query {qid}, {name}: cosine {cosine:.6f} < 0.9999")
            else:
                top = lambda v: [i for _, i in sorted(zip(v["values"], v["indices"]), reverse=True)[:10]]
                if top(ref) != top(got):
                    sys.exit(f"query {qid}, {name}: top terms {top(ref)} vs {top(got)}")
                weights = dict(zip(got["indices"], got["values"]))
                for index, value in zip(ref["indices"], ref["values"]):
                    if index in top(ref) and abs(weights[index] - value) > 1e-3 * max(abs(value), 1.0):
                        sys.exit(f"query {qid}, {name}: term {index} weight {weights[index]} vs {value}")
            checked += 1
    print(f"{checked} vectors of {len(reference)} queries agree (worst dense cosine {worst:.7f})")


if __name__ == "__main__":
    main()

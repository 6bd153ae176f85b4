#!/usr/bin/env python3
"""Compare runs of the same job on different devices/precisions, and summarise each run's
stages (throughput, planned batch budget, out-of-memory recoveries, peak device memory).

usage: compare.py REFERENCE_DIR RUN_DIR [RUN_DIR ...]

Each DIR is an output directory (manifest.json, <collection>/points.jsonl, rerank.jsonl).
Plain Python (json only), so it runs wherever python3 does. Exit 1 when a run's vectors or
scores are outside the tolerance for its precision (f32: 1e-4; f16: cosine >= 0.999, rerank
logit within 0.1), so the script that calls it fails loudly.
"""
import json
import math
import os
import sys


def records(out_dir, file_name):
    """(collection, record) for every line of every collection's `file_name`."""
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name, file_name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield name, json.loads(line)


def points(out_dir):
    return {(name, p["chunk_id"]): p["vector"] for name, p in records(out_dir, "points.jsonl")}


def rerank_logits(out_dir):
    return {
        (name, q["query_id"], c["chunk_id"]): c["rerank_logit"]
        for name, q in records(out_dir, "rerank.jsonl")
        for c in q.get("candidates", [])
        if c.get("rerank_logit") is not None
    }


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def sparse_dict(v):
    return dict(zip(v["indices"], v["values"]))


def compare(ref_dir, run_dir, precision):
    ref, run = points(ref_dir), points(run_dir)
    problems = []
    if set(ref) != set(run):
        problems.append(f"different chunks: {len(ref)} vs {len(run)}")
    dense_abs, dense_cos, sparse_abs, sparse_overlap = 0.0, 1.0, 0.0, 1.0
    for key in sorted(set(ref) & set(run)):
        for name, vector in ref[key].items():
            other = run[key].get(name)
            if other is None:
                problems.append(f"{key}: no {name} vector")
                continue
            if isinstance(vector, list):
                dense_abs = max(dense_abs, max(abs(x - y) for x, y in zip(vector, other)))
                dense_cos = min(dense_cos, cosine(vector, other))
            else:
                a, b = sparse_dict(vector), sparse_dict(other)
                for term in set(a) | set(b):
                    sparse_abs = max(sparse_abs, abs(a.get(term, 0.0) - b.get(term, 0.0)))
                top = lambda d: set(sorted(d, key=d.get, reverse=True)[:20])
                if a and b:
                    sparse_overlap = min(sparse_overlap, len(top(a) & top(b)) / len(top(a) | top(b)))
    ref_logits, run_logits = rerank_logits(ref_dir), rerank_logits(run_dir)
    shared = set(ref_logits) & set(run_logits)
    logit_abs = max((abs(ref_logits[k] - run_logits[k]) for k in shared), default=0.0)
    if precision == "f32":
        ok = dense_abs <= 1e-4 and sparse_abs <= 1e-3 and logit_abs <= 1e-3
    else:
        ok = dense_cos >= 0.999 and sparse_overlap >= 0.8 and logit_abs <= 0.1
    print(
        f"  parity vs {os.path.basename(ref_dir)} ({precision}): dense max|d|={dense_abs:.2e} "
        f"min cos={dense_cos:.6f}; sparse max|d|={sparse_abs:.2e} min top-20 overlap="
        f"{sparse_overlap:.3f}; rerank max|dlogit|={logit_abs:.2e} over {len(shared)} pairs "
        f"-> {'OK' if ok and not problems else 'FAIL'}"
    )
    for p in problems[:5]:
        print(f"    {p}")
    return ok and not problems


def summarise(out_dir):
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    peaks = {}
    for event in manifest.get("leases", []):
        if event.get("kind") == "released" and event.get("peak_bytes") is not None:
            key = (event["stage"], event["device"])
            peaks[key] = max(peaks.get(key, 0), event["peak_bytes"])
    print(f"{os.path.basename(out_dir)}: status {manifest.get('status')}")
    for collection in manifest.get("collections", []):
        for stage, report in collection.get("stages", {}).items():
            for run in report.get("runs", []):
                if not run.get("memory"):
                    continue  # fusion and export run on no device
                memory = run["memory"]
                dispatch = run.get("dispatch") or {}
                device = memory.get("device", "?")
                peak = [v for (s, d), v in peaks.items() if s == stage]
                peak_text = f"{max(peak) / 2**20:.0f} MiB" if peak else "n/a"
                print(
                    f"  {collection['name']}/{stage}: {run['tokens_per_s']:.0f} tokens/s, "
                    f"{run['items']} items in {run['latency_s']:.2f}s on {device}; budget "
                    f"{memory.get('budget_bytes', 0) / 2**30:.2f} GiB, planned max_tokens "
                    f"{memory.get('max_tokens')}, largest batch {run['max_batch_tokens']} tokens; "
                    f"OOM {dispatch.get('oom_events', 0)}, halvings {dispatch.get('halvings', 0)}, "
                    f"growths {dispatch.get('growths', 0)}, "
                    f"workers {len(dispatch.get('per_worker', []))}; peak {peak_text}"
                )
    return manifest


def main():
    if len(sys.argv) == 2:
        print("compare.py: no run besides the reference produced a manifest", file=sys.stderr)
        return 1
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ref, runs = sys.argv[1], sys.argv[2:]
    summarise(ref)
    ok = True
    for run in runs:
        summarise(run)
        precision = "f16" if "f16" in os.path.basename(run) else "f32"
        if os.path.basename(run).startswith("parity"):
            ok = compare(ref, run, precision) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

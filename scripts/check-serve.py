#!/usr/bin/env python3
"""`embed-collections serve` as its clients meet it: real HTTP on loopback, the real SDKs.

    "$(scripts/python-env.sh)" scripts/check-serve.py clients URL RUN_DIR COLLECTION_DIR KEY [POISON]
    "$(scripts/python-env.sh)" scripts/check-serve.py load URL PID
    "$(scripts/python-env.sh)" scripts/check-serve.py timeout URL

`clients` (a server started with the run's config and API key KEY; RUN_DIR is that run's
output, COLLECTION_DIR its input collection with corpus.jsonl and queries.jsonl):
- parity: `/v1/query` for every query equals the run's query_vectors.jsonl line; `/embed` and
  `/embed_sparse` equal the run's points for the same chunk texts; `/rerank` logits and scores
  equal rerank.jsonl's for the same (query, passage) pairs;
- the openai SDK's embeddings.create (its default base64 and float), huggingface_hub's
  InferenceClient.feature_extraction, and qdrant-client (local mode) loaded with the run's
  points and queried with `/v1/query`'s body, which must return the run's fused top list;
- every error status with its body (400, 401, 404, 413, 422, 424 with POISON, a text the
  server's model fails on); `/metrics` parsed by prometheus_client.

`load` (a server with serve.max_concurrent_inputs = 64, PID its process): concurrent clients
below the limit get no error, above it clean 429s, RSS stays flat over repeated rounds, and
SIGTERM sent under load lets every accepted request finish with 200.

`timeout` (a server with a tiny serve.request_timeout): a request answers 504.

Prints one JSON summary line; exits 1 on the first problem. Every text sent carries the marker
MARKER_TEXT so the caller can check that none reaches the server's logs or metrics.
"""

import asyncio
import base64
import importlib.util
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import httpx

MARKER = "zqxmarker"
HERE = Path(__file__).resolve().parent


def fail(message):
    print(f"check-serve: {message}", file=sys.stderr)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def max_diff(a, b):
    expect(len(a) == len(b), f"lengths differ: {len(a)} vs {len(b)}")
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def as_f32(values):
    """Python floats rounded to float32, as the server's vectors are."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def embedding_text(chunk):
    """The run's text for a chunk: title + " " + text when the title is not blank."""
    title = chunk.get("title") or ""
    return f"{title} {chunk['text']}" if title.strip() else chunk["text"]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def check_error(response, status, kind, flavor="tei"):
    expect(response.status_code == status,
           f"{response.request.url.path}: status {response.status_code}, expected {status}: {response.text[:300]}")
    body = response.json()
    if flavor == "tei":
        expect(body.get("error_type") == kind and isinstance(body.get("error"), str) and body["error"],
               f"TEI error body {body}, expected error_type {kind}")
    else:
        error = body.get("error", {})
        expect(error.get("type") == kind and error.get("message"),
               f"OpenAI error body {body}, expected type {kind}")


def clients(url, run_dir, collection_dir, key, poison):
    run_dir, collection_dir = Path(run_dir), Path(collection_dir)
    name = collection_dir.name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    dense_name = next(m["name"] for m in manifest["models"] if m["role"] == "dense")
    sparse_name = next(m["name"] for m in manifest["models"] if m["role"] == "sparse")
    auth = {"Authorization": f"Bearer {key}"}
    http = httpx.Client(base_url=url, headers=auth, timeout=300)
    summary = {}

    # --- Authentication: inference routes need the key; /health and /metrics stay open.
    bare = httpx.Client(base_url=url, timeout=60)
    check_error(bare.post("/embed", json={"inputs": "x"}), 401, "unauthorized")
    check_error(bare.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer wrong"}),
                401, "unauthorized")
    check_error(bare.post("/v1/embeddings", json={"input": "x", "model": dense_name}), 401,
                "unauthorized", "openai")
    expect(bare.get("/health").status_code == 200, "/health needs no key")
    expect(bare.get("/metrics").status_code == 200, "/metrics needs no key")
    summary["unauthorized_checked"] = 3

    chunks = {c["_id"]: c for c in read_jsonl(collection_dir / "corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in read_jsonl(collection_dir / "queries.jsonl")}
    points = read_jsonl(run_dir / name / "points.jsonl")

    # --- /v1/query equals query_vectors.jsonl, line for line (same serialiser: same JSON text).
    exact = 0
    worst = 0.0
    bodies = {}
    for line in read_jsonl(run_dir / name / "query_vectors.jsonl"):
        response = http.post("/v1/query", json={"query": queries[line["query_id"]]})
        expect(response.status_code == 200, f"/v1/query: {response.status_code} {response.text[:200]}")
        body = response.json()
        bodies[line["query_id"]] = body
        expect(body["query_sha256"] == line["query_sha256"], "query_sha256 differs")
        expect(set(body["vector"]) == set(line["vector"]), f"vector names {set(body['vector'])}")
        worst = max(worst, max_diff(body["vector"][dense_name], line["vector"][dense_name]))
        ours, theirs = body["vector"][sparse_name], line["vector"][sparse_name]
        expect(ours["indices"] == theirs["indices"], "sparse query indices differ")
        worst = max(worst, max_diff(ours["values"], theirs["values"]))
        exact += body["vector"] == line["vector"]
    summary["query_vectors"] = len(bodies)
    summary["query_vectors_identical"] = exact
    summary["query_vectors_max_abs_diff"] = worst

    # --- /embed and /embed_sparse equal the points for the same chunk texts.
    sample = points[:64]
    texts = [embedding_text(chunks[p["payload"]["chunk_id"]]) for p in sample]
    dense_worst = sparse_worst = 0.0
    for start in range(0, len(sample), 32):
        batch = texts[start:start + 32]
        dense = http.post("/embed", json={"inputs": batch}).json()
        sparse = http.post("/embed_sparse", json={"inputs": batch}).json()
        for point, vector, pairs in zip(sample[start:start + 32], dense, sparse):
            dense_worst = max(dense_worst, max_diff(vector, point["vector"][dense_name]))
            stored = point["vector"][sparse_name]
            expect([p["index"] for p in pairs] == stored["indices"], "sparse indices differ from the point's")
            sparse_worst = max(sparse_worst, max_diff([p["value"] for p in pairs], stored["values"]))
    summary["embed_points_compared"] = len(sample)
    summary["embed_max_abs_diff"] = dense_worst
    summary["embed_sparse_max_abs_diff"] = sparse_worst

    # --- /rerank equals rerank.jsonl's logits and scores for the same pairs.
    pairs = 0
    rerank_worst = 0.0
    # The first 10 queries: 100 pairs at 256 tokens keep the check under a minute on two cores.
    for line in read_jsonl(run_dir / name / "rerank.jsonl")[:10]:
        candidates = [c for c in line["candidates"] if "rerank_logit" in c]
        if not candidates:
            continue
        passages = [embedding_text(chunks[c["chunk_id"]]) for c in candidates]
        query = queries[line["query_id"]]
        raw = http.post("/rerank", json={"query": query, "texts": passages, "raw_scores": True}).json()
        scored = http.post("/rerank", json={"query": query, "texts": passages}).json()
        raw = {r["index"]: r["score"] for r in raw}
        scored = {r["index"]: r["score"] for r in scored}
        for index, candidate in enumerate(candidates):
            rerank_worst = max(rerank_worst, abs(raw[index] - candidate["rerank_logit"]),
                               abs(scored[index] - candidate["rerank_score"]))
            pairs += 1
    summary["rerank_pairs_compared"] = pairs
    summary["rerank_max_abs_diff"] = rerank_worst

    # --- The openai SDK: its default (base64) and float.
    from openai import OpenAI
    client = OpenAI(base_url=f"{url}/v1", api_key=key)
    probe = [f"{MARKER} openai probe one", f"{MARKER} openai probe two"]
    reference = http.post("/embed", json={"inputs": probe}).json()
    default = client.embeddings.create(model=dense_name, input=probe)
    floats = client.embeddings.create(model=dense_name, input=probe, encoding_format="float")
    raw_b64 = http.post("/v1/embeddings", json={"model": dense_name, "input": probe,
                                                "encoding_format": "base64"}).json()
    decoded = [list(struct.unpack(f"<{len(reference[0])}f", base64.b64decode(d["embedding"])))
               for d in raw_b64["data"]]
    for result in (default, floats):
        expect([d.index for d in result.data] == [0, 1], "openai indices")
        for got, want in zip(result.data, reference):
            expect(as_f32(got.embedding) == as_f32(want), "openai embedding differs from /embed")
    expect(decoded == [as_f32(r) for r in reference], "base64 bytes differ from /embed's floats")
    expect(default.usage.prompt_tokens > 0 and default.usage.total_tokens == default.usage.prompt_tokens,
           f"usage {default.usage}")
    summary["openai_sdk"] = ["base64", "float"]

    # --- huggingface_hub's InferenceClient pointed at the server (TEI's POST /).
    from huggingface_hub import InferenceClient
    hf = InferenceClient(model=url, token=key)
    vector = hf.feature_extraction(probe[0])
    expect(max_diff(list(vector.reshape(-1)), reference[0]) < 1e-6, "InferenceClient differs from /embed")
    summary["huggingface_hub"] = "feature_extraction"

    # --- qdrant-client: the run's points, queried with /v1/query's body, give the run's fused list.
    spec = importlib.util.spec_from_file_location("check_qdrant", HERE / "check-qdrant.py")
    check_qdrant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_qdrant)
    from qdrant_client import QdrantClient, models
    qdrant = QdrantClient(":memory:")
    check_qdrant.load_collection(qdrant, run_dir, manifest, name)
    fused_equal = 0
    for line in read_jsonl(run_dir / name / "rerank.jsonl"):
        if line["status"] not in ("ok", "fused"):
            continue
        ours = sorted(((c["fused_rank"], c["chunk_id"], c["fused_score"]) for c in line["candidates"]))
        ours = [(chunk, score) for rank, chunk, score in ours]
        expect(ours and len(ours) == max(c["fused_rank"] for c in line["candidates"]),
               "rerank.jsonl must hold the whole fused top list")
        body = dict(bodies[line["query_id"]]["qdrant"])
        body["limit"] = len(ours)
        request = models.QueryRequest(**body)
        hits = qdrant.query_points(collection_name=name, prefetch=request.prefetch, query=request.query,
                                   limit=request.limit, with_payload=True).points
        check_qdrant.compare_fused(f"query {line['query_id']}", ours, hits)
        fused_equal += 1
    summary["qdrant_fused_equal"] = fused_equal
    summary["fusion_exact"] = next(iter(bodies.values()))["fusion"]["exact"]

    # --- Every documented error, with its body.
    check_error(http.post("/embed", json={"inputs": []}), 400, "empty")
    check_error(http.post("/embed", json={"inputs": ["ok", ""]}), 400, "empty")
    check_error(http.post("/v1/embeddings", json={"input": [], "model": dense_name}), 400, "empty", "openai")
    check_error(http.post("/v1/embeddings", json={"input": "x", "model": "no-such-model"}), 404,
                "not_found", "openai")
    check_error(http.post("/embed", content=b'{"inputs": "' + b"a" * 3_000_000 + b'"}',
                          headers={"content-type": "application/json"}), 413, "payload_too_large")
    check_error(http.post("/embed", json={"inputs": [f"{MARKER} {i}" for i in range(33)]}), 422, "validation")
    check_error(http.post("/embed", content=b"{not json", headers={"content-type": "application/json"}),
                422, "validation")
    long_text = " ".join([MARKER] * 2000)
    check_error(http.post("/embed", json={"inputs": long_text, "truncate": False}), 422, "validation")
    expect(http.post("/embed", json={"inputs": long_text}).status_code == 200, "truncate by default")
    check_error(http.post("/v1/embeddings", json={"input": "x", "model": dense_name, "dimensions": 7}),
                422, "validation", "openai")
    check_error(http.post("/v1/embeddings", json={"input": [1, 2, 3], "model": dense_name}), 422,
                "validation", "openai")
    check_error(http.post("/embed", json={"inputs": "x", "prompt_name": "nope"}), 422, "validation")
    statuses = [400, 404, 413, 422]
    if poison:
        check_error(http.post("/embed", json={"inputs": [f"{MARKER} fine", f"{poison} {MARKER}"]}),
                    424, "backend")
        expect(http.post("/embed", json={"inputs": f"{MARKER} still fine"}).status_code == 200,
               "the model keeps serving after a failed input")
        statuses.append(424)
    summary["error_statuses"] = statuses

    # Markers in every kind of request, for the caller's log check.
    http.post("/rerank", json={"query": MARKER, "texts": [MARKER, f"{MARKER} two"]})
    http.post("/tokenize", json={"inputs": MARKER})
    http.post("/v1/rerank", json={"query": MARKER, "documents": [MARKER], "return_documents": True})
    http.post("/v1/query", json={"query": MARKER})

    # --- /metrics parses, counts what happened, and holds no text.
    from prometheus_client.parser import text_string_to_metric_families
    text = bare.get("/metrics").text
    expect(MARKER not in text, "a request text reached /metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status"]): s.value
                for s in families["embed_collections_serve_requests"].samples
                if s.name.endswith("_total")}
    expect(requests.get(("/v1/query", "200"), 0) >= len(bodies), f"requests_total {requests}")
    expect(requests.get(("/embed", "413"), 0) == 1, f"requests_total {requests}")
    summary["metrics_families"] = len(families)
    print(json.dumps(summary))


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    fail("no VmRSS")


async def round_of(client, clients, requests_each, inputs):
    """`clients` concurrent clients, each sending `requests_each` requests of `inputs` inputs;
    returns (status counts, latencies of 429s)."""
    statuses = {}
    rejected = []

    async def one(worker):
        for n in range(requests_each):
            body = {"inputs": [f"{MARKER} load {worker} {n} {i} some passage text about cells"
                               for i in range(inputs)]}
            started = time.monotonic()
            response = await client.post("/embed", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 429:
                rejected.append(time.monotonic() - started)
                body = response.json()
                expect(body.get("error_type") == "overloaded", f"429 body {body}")

    await asyncio.gather(*(one(w) for w in range(clients)))
    return statuses, rejected


async def load(url, pid):
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    summary = {}
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        info = (await client.get("/info")).json()
        capacity = info["max_concurrent_requests"]
        inputs = 8
        below = capacity // inputs
        statuses, _ = await round_of(client, below, 4, inputs)
        expect(set(statuses) == {200}, f"below the limit ({below} clients × {inputs}): {statuses}")
        summary["below_limit"] = {"clients": below, "statuses": statuses}
        rss = [rss_kib(pid)]
        above = below * 4
        totals = {}
        rejected = []
        for _ in range(3):
            statuses, slow = await round_of(client, above, 4, inputs)
            expect(set(statuses) <= {200, 429}, f"above the limit: {statuses}")
            for status, n in statuses.items():
                totals[status] = totals.get(status, 0) + n
            rejected += slow
            rss.append(rss_kib(pid))
        expect(totals.get(429, 0) > 0 and totals.get(200, 0) > 0, f"above the limit: {totals}")
        rejected.sort()
        summary["above_limit"] = {"clients": above, "statuses": totals,
                                  "p99_429_ms": round(rejected[int(len(rejected) * 0.99)] * 1e3, 1)}
        summary["rss_kib"] = rss
        # Flat: the last rounds hold no more than 10 % + 16 MiB over the first loaded round.
        expect(rss[-1] <= rss[1] * 1.10 + 16 * 1024, f"RSS grows under load: {rss}")

        # SIGTERM under load: every request sent before the signal finishes with 200.
        async def accepted(worker):
            body = {"inputs": [f"{MARKER} drain {worker} {i} " + "word " * 200 for i in range(inputs)]}
            return (await client.post("/embed", json=body)).status_code

        tasks = [asyncio.create_task(accepted(w)) for w in range(below)]
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        expect(all(r == 200 for r in results), f"after SIGTERM: {results}")
        summary["drained_after_sigterm"] = len(results)
    print(json.dumps(summary))


def timeout(url):
    http = httpx.Client(base_url=url, timeout=60)
    response = http.post("/embed", json={"inputs": [f"{MARKER} " + "word " * 200] * 8})
    check_error(response, 504, "timeout")
    print(json.dumps({"timeout": 504}))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "clients" and len(sys.argv) in (6, 7):
        clients(*sys.argv[2:6], sys.argv[6] if len(sys.argv) == 7 else None)
    elif mode == "load" and len(sys.argv) == 4:
        asyncio.run(load(sys.argv[2], int(sys.argv[3])))
    elif mode == "timeout" and len(sys.argv) == 3:
        timeout(sys.argv[2])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()

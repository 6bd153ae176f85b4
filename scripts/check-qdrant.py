#!/usr/bin/env python3
"""Loads a run's points into the real Qdrant client (local mode, in memory) and checks them.

    "$(scripts/python-env.sh)" scripts/check-qdrant.py OUTPUT_DIR

For every collection in OUTPUT_DIR/manifest.json:
- every line of points.jsonl validates as qdrant_client.models.PointStruct(**point) (the
  client's models come from Qdrant's OpenAPI schema and forbid unknown fields);
- each point id equals uuid5(namespace, collection + "/" + payload.chunk_id) with the
  documented namespace, so a consumer can recompute it to update or delete a chunk;
- a collection is created from the manifest (one named dense vector per dense model, with its
  dimension and cosine distance for normalised models, else dot; the sparse vector by its name),
  the points are upserted, the count matches, and searching with a point's own dense vector
  returns that point first (cosine 1 with itself);
- with the exported query vectors (query_vectors.jsonl), Qdrant's hybrid RRF search returns the
  run's fused lists (rerank.jsonl of a run without rerank), see check_fusion.

Prints one JSON summary line per collection; exits 1 on the first problem.
"""

import json
import sys
import uuid
from pathlib import Path

from qdrant_client import QdrantClient, models

# The UUIDv5 namespace of point ids (src/input/ids.rs, docs/outputs.md).
POINT_ID_NAMESPACE = uuid.UUID("03832116-a7ce-42f0-8170-58863da6b133")


def fail(message):
    print(f"check-qdrant: {message}", file=sys.stderr)
    sys.exit(1)


def check_fusion(client, out, name, manifest, vectors, sparse_vectors):
    """Hybrid search in Qdrant with the exported query vectors — a prefetch per list of
    `fusion.depth`, fused by RRF with k = 61 on Qdrant's 0-based positions, which is our k = 60 on
    1-based ranks — must return the run's fused top list (`rerank.jsonl` of a run without rerank)
    with the same scores; chunks tied on score may come in either order. Returns how many
    queries were compared (0 when the run reranked or exported no query vectors)."""
    query_file = out / name / "query_vectors.jsonl"
    ranked_file = out / name / "rerank.jsonl"
    if not (query_file.is_file() and ranked_file.is_file()) or len(vectors) != 1 or not sparse_vectors:
        return 0
    fusion = manifest["config"]["fusion"]
    if fusion["method"] != "rrf" or fusion["dense_weight"] != 1.0 or fusion["sparse_weight"] != 1.0:
        return 0
    depth, k = fusion["depth"], fusion["rrf_k"]
    (dense_name,) = vectors
    (sparse_name,) = sparse_vectors
    queries = {q["query_id"]: q for q in map(json.loads, query_file.read_text().splitlines())}
    compared = 0
    for line in ranked_file.read_text().splitlines():
        ranked = json.loads(line)
        if ranked["status"] != "fused":
            continue
        query = queries.get(ranked["query_id"])
        if query is None:
            fail(f"{name}: query {ranked['query_id']} has no exported vectors")
        ours = [(c["chunk_id"], c["fused_score"]) for c in ranked["candidates"]]
        hits = client.query_points(
            collection_name=name,
            prefetch=[
                models.Prefetch(query=query["vector"][dense_name], using=dense_name, limit=depth),
                models.Prefetch(
                    query=models.SparseVector(**query["vector"][sparse_name]),
                    using=sparse_name,
                    limit=depth,
                ),
            ],
            query=models.RrfQuery(rrf=models.Rrf(k=k + 1)),
            limit=len(ours),
            with_payload=True,
        ).points
        compare_fused(f"{name}: query {ranked['query_id']}", ours, hits)
        compared += 1
    return compared


def compare_fused(label, ours, hits):
    """`hits` (Qdrant's points) must be `ours` ((chunk_id, fused_score) in the run's fused
    order) with the same scores; chunks tied on score may come in either order."""
    theirs = [(h.payload["chunk_id"], h.score) for h in hits]
    if len(theirs) != len(ours):
        fail(f"{label}: Qdrant returned {len(theirs)} of {len(ours)}")
    for (a, sa), (b, sb) in zip(ours, theirs):
        if abs(sa - sb) > 1e-6:
            fail(f"{label}: fused score {sa} ({a}) vs Qdrant {sb} ({b})")
    last = ours[-1][1]
    for score in {s for _, s in ours if s > last + 1e-9}:
        mine = {c for c, s in ours if abs(s - score) <= 1e-9}
        qdrant = {c for c, s in theirs if abs(s - score) <= 1e-6}
        if mine != qdrant:
            fail(f"{label}: at fused score {score} ours {sorted(mine)} vs Qdrant {sorted(qdrant)}")


def load_collection(client, out, manifest, name):
    """Validates `name`'s points, creates its Qdrant collection from the manifest and upserts
    them; returns (points, dense vector params by name, sparse vector params by name)."""
    dense = [m for m in manifest["models"] if m["role"] == "dense"]
    sparse = [m for m in manifest["models"] if m["role"] == "sparse"]
    lines = (out / name / "points.jsonl").read_text().splitlines()
    points = []
    for number, line in enumerate(lines, 1):
        point = json.loads(line)
        try:
            points.append(models.PointStruct(**point))
        except Exception as err:  # pydantic's ValidationError, named in the message
            fail(f"{name}/points.jsonl:{number}: not a valid Qdrant point: {err}")
        chunk_id = point["payload"]["chunk_id"]
        expected = str(uuid.uuid5(POINT_ID_NAMESPACE, f"{name}/{chunk_id}"))
        if point["id"] != expected:
            fail(f"{name}/points.jsonl:{number}: id {point['id']} != uuid5 {expected}")
    vectors = {
        m["name"]: models.VectorParams(
            size=m["dim"],
            distance=models.Distance.COSINE if m.get("normalize") else models.Distance.DOT,
        )
        for m in dense
    }
    sparse_vectors = {m["name"]: models.SparseVectorParams() for m in sparse}
    client.create_collection(
        collection_name=name,
        vectors_config=vectors,
        sparse_vectors_config=sparse_vectors or None,
    )
    client.upsert(collection_name=name, points=points, wait=True)
    return points, vectors, sparse_vectors


def main():
    if len(sys.argv) != 2:
        fail("usage: check-qdrant.py OUTPUT_DIR")
    out = Path(sys.argv[1])
    manifest = json.loads((out / "manifest.json").read_text())
    client = QdrantClient(":memory:")
    for collection in manifest["collections"]:
        name = collection["name"]
        points, vectors, sparse_vectors = load_collection(client, out, manifest, name)
        count = client.count(collection_name=name, exact=True).count
        if count != len(points):
            fail(f"{name}: {count} points in Qdrant, {len(points)} in the file")
        probes = points[:: max(1, len(points) // 5)][:5]
        for probe in probes:
            for vector_name in vectors:
                hits = client.query_points(
                    collection_name=name,
                    query=probe.vector[vector_name],
                    using=vector_name,
                    limit=1,
                ).points
                if not hits or str(hits[0].id) != str(probe.id):
                    fail(f"{name}: searching {vector_name} with point {probe.id}'s own vector "
                         f"returned {hits[0].id if hits else 'nothing'}")
        fused = check_fusion(client, out, name, manifest, vectors, sparse_vectors)
        has_sparse = sum(
            1 for p in points if any(isinstance(v, models.SparseVector) for v in p.vector.values())
        )
        print(json.dumps({
            "collection": name,
            "points": len(points),
            "valid_points": len(points),
            "ids_recomputed": len(points),
            "in_qdrant": count,
            "dense_vectors": sorted(vectors),
            "sparse_vectors": sorted(sparse_vectors),
            "points_with_sparse": has_sparse,
            "self_search_ok": len(probes) * len(vectors),
            "fused_queries_equal_qdrant_rrf": fused,
        }))


if __name__ == "__main__":
    main()

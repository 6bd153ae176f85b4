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
- with the exported query vectors (query_vectors.jsonl), the Qdrant request the manifest gives
  for the run's fusion (ranking.qdrant.request: RRF with k and weights, DBSF, or a plain query)
  returns the run's fused lists (rerank.jsonl of a run without rerank), see check_fusion.

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
    """The manifest's Qdrant request (ranking.qdrant.request, where it says `exact`), with each
    `$query_vectors.<name>` replaced by the query's exported vector, must return the run's fused
    top list (`rerank.jsonl` of a run without rerank) with the same scores; chunks tied on score
    may come in either order. Returns (queries compared, the request's fusion), (0, None) when
    the run reranked, exported no query vectors, or has no exact request."""
    query_file = out / name / "query_vectors.jsonl"
    ranked_file = out / name / "rerank.jsonl"
    collection = next(c for c in manifest["collections"] if c["name"] == name)
    qdrant = (collection.get("ranking") or {}).get("qdrant")
    if not (query_file.is_file() and ranked_file.is_file()) or not qdrant or not qdrant["exact"]:
        return 0, None
    request = qdrant["request"]
    queries = {q["query_id"]: q for q in map(json.loads, query_file.read_text().splitlines())}

    def vector(placeholder, query):
        named = query["vector"][placeholder.removeprefix("$query_vectors.")]
        return models.SparseVector(**named) if isinstance(named, dict) else named

    def fusion(spec):
        if "rrf" in spec:
            return models.RrfQuery(rrf=models.Rrf(**spec["rrf"]))
        return models.FusionQuery(fusion=models.Fusion(spec["fusion"]))

    compared = 0
    for line in ranked_file.read_text().splitlines():
        ranked = json.loads(line)
        if ranked["status"] != "fused":
            continue
        query = queries.get(ranked["query_id"])
        if query is None:
            fail(f"{name}: query {ranked['query_id']} has no exported vectors")
        ours = [(c["chunk_id"], c["fused_score"]) for c in ranked["candidates"]]
        prefetch = [
            models.Prefetch(query=vector(p["query"], query), using=p["using"], limit=p["limit"])
            for p in request.get("prefetch", [])
        ]
        spec = request["query"]
        hits = client.query_points(
            collection_name=name,
            prefetch=prefetch or None,
            query=fusion(spec) if isinstance(spec, dict) and not spec.keys() - {"rrf", "fusion"} else vector(spec, query),
            using=request.get("using"),
            limit=len(ours),
            with_payload=True,
        ).points
        if not prefetch:
            # A plain query: Qdrant's scores are the list's own, the run's the fusion's.
            ours = [(chunk, None) for chunk, _ in ours]
            hits_ids = [h.payload["chunk_id"] for h in hits]
            if hits_ids != [c for c, _ in ours]:
                fail(f"{name}: query {ranked['query_id']}: ours {ours} vs Qdrant {hits_ids}")
        else:
            compare_fused(f"{name}: query {ranked['query_id']}", ours, hits)
        compared += 1
    return compared, json.dumps(spec) if isinstance(spec, dict) else "plain"


def compare_fused(label, ours, hits, tolerance=1e-5):
    """`hits` (Qdrant's points) must be `ours` ((chunk_id, fused_score) in the run's fused
    order) with the same scores (Qdrant computes in f32: within `tolerance`); chunks whose
    scores tie within it may come in either order."""
    theirs = [(h.payload["chunk_id"], h.score) for h in hits]
    if len(theirs) != len(ours):
        fail(f"{label}: Qdrant returned {len(theirs)} of {len(ours)}")
    for (a, sa), (b, sb) in zip(ours, theirs):
        if abs(sa - sb) > tolerance:
            fail(f"{label}: fused score {sa} ({a}) vs Qdrant {sb} ({b})")
    theirs_by_chunk = dict(theirs)
    last = ours[-1][1]
    for chunk, score in ours:
        if chunk in theirs_by_chunk and abs(theirs_by_chunk[chunk] - score) > tolerance:
            fail(f"{label}: {chunk}: fused score {score} vs Qdrant {theirs_by_chunk[chunk]}")
    mine = {c for c, s in ours if s > last + tolerance}
    qdrant = {c for c, s in theirs if s > last + tolerance}
    if mine != qdrant:
        fail(f"{label}: above the last score ours {sorted(mine)} vs Qdrant {sorted(qdrant)}")


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
        fused, fusion = check_fusion(client, out, name, manifest, vectors, sparse_vectors)
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
            "fused_queries_equal_qdrant": fused,
            "qdrant_fusion": fusion,
        }))


if __name__ == "__main__":
    main()

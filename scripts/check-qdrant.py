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
  returns that point first (cosine 1 with itself).

Prints one JSON summary line per collection; exits 1 on the first problem.
"""

import json
import sys
import uuid
from pathlib import Path

from qdrant_client import QdrantClient, models

# The UUIDv5 namespace of point ids (src/input/ids.rs, README "Outputs").
POINT_ID_NAMESPACE = uuid.UUID("03832116-a7ce-42f0-8170-58863da6b133")


def fail(message):
    print(f"check-qdrant: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail("usage: check-qdrant.py OUTPUT_DIR")
    out = Path(sys.argv[1])
    manifest = json.loads((out / "manifest.json").read_text())
    dense = [m for m in manifest["models"] if m["role"] == "dense"]
    sparse = [m for m in manifest["models"] if m["role"] == "sparse"]
    client = QdrantClient(":memory:")
    for collection in manifest["collections"]:
        name = collection["name"]
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
        }))


if __name__ == "__main__":
    main()

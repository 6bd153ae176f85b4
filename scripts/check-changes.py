#!/usr/bin/env python3
"""Applies a `--reuse` run's changes.jsonl to a Qdrant collection loaded from the earlier output,
with the real Qdrant client (local mode, in memory), and checks it then holds exactly the points
of a collection loaded from the new output.

    "$(scripts/python-env.sh)" scripts/check-changes.py EARLIER_OUTPUT NEW_OUTPUT

For every collection of NEW_OUTPUT/manifest.json:
- the earlier output's points are loaded into one client and the new output's into another
  (scripts/check-qdrant.py's load_collection: the collection is created from the manifest);
- the changes are applied to the first as docs/nightly.md's recipe does: upsert the
  new output's points that changes.jsonl lists as added or updated, delete those it lists as
  deleted;
- both collections are scrolled whole (vectors and payloads): they must be equal, point by point
  (payloads and sparse vectors exactly; dense vectors within 1e-6, because the client's local
  mode normalises cosine vectors in a batch upsert and a single one with last-bit differences);
- changes.jsonl is checked against a diff of the two points files computed here: added = ids
  only in the new one, deleted = ids only in the earlier one, updated = ids whose line differs.

Prints one JSON summary line per collection; exits 1 on the first problem.
"""

import importlib.util
import json
import sys
from pathlib import Path

from qdrant_client import QdrantClient, models

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_qdrant", HERE / "check-qdrant.py")
check_qdrant = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_qdrant)


def fail(message):
    print(f"check-changes: {message}", file=sys.stderr)
    sys.exit(1)


def lines_by_id(path):
    return {json.loads(line)["id"]: line for line in path.read_text().splitlines()}


def scroll_all(client, name):
    points, offset = {}, None
    while True:
        batch, offset = client.scroll(
            collection_name=name, limit=256, offset=offset, with_payload=True, with_vectors=True
        )
        for point in batch:
            points[str(point.id)] = (point.payload, point.vector)
        if offset is None:
            return points


def same_point(a, b):
    (payload_a, vectors_a), (payload_b, vectors_b) = a, b
    if payload_a != payload_b or set(vectors_a) != set(vectors_b):
        return False
    for name, vector in vectors_b.items():
        other = vectors_a[name]
        if isinstance(vector, list):
            if len(vector) != len(other) or any(abs(x - y) > 1e-6 for x, y in zip(vector, other)):
                return False
        elif vector != other:
            return False
    return True


def main():
    if len(sys.argv) != 3:
        fail("usage: check-changes.py EARLIER_OUTPUT NEW_OUTPUT")
    earlier, new = Path(sys.argv[1]), Path(sys.argv[2])
    earlier_manifest = json.loads((earlier / "manifest.json").read_text())
    new_manifest = json.loads((new / "manifest.json").read_text())
    for collection in new_manifest["collections"]:
        name = collection["name"]
        changes_file = new / name / "changes.jsonl"
        if not changes_file.is_file():
            fail(f"{name}: no changes.jsonl in {new}")
        changes = [json.loads(line) for line in changes_file.read_text().splitlines()]
        by_kind = {kind: {c["point_id"] for c in changes if c["change"] == kind}
                   for kind in ("added", "updated", "deleted")}

        # The changes, against an independent diff of the two points files.
        old_lines = lines_by_id(earlier / name / "points.jsonl")
        new_lines = lines_by_id(new / name / "points.jsonl")
        expected = {
            "added": set(new_lines) - set(old_lines),
            "deleted": set(old_lines) - set(new_lines),
            "updated": {i for i in set(old_lines) & set(new_lines) if old_lines[i] != new_lines[i]},
        }
        for kind in expected:
            if by_kind[kind] != expected[kind]:
                fail(f"{name}: changes.jsonl lists {len(by_kind[kind])} {kind} points, the diff "
                     f"finds {len(expected[kind])} (only listed: {sorted(by_kind[kind] - expected[kind])[:3]}, "
                     f"only found: {sorted(expected[kind] - by_kind[kind])[:3]})")
        counts = collection["reuse"]["changes"]
        for kind in expected:
            if counts[kind] != len(expected[kind]):
                fail(f"{name}: the manifest counts {counts[kind]} {kind}, changes.jsonl has {len(expected[kind])}")

        # The recipe, on the real client.
        patched = QdrantClient(":memory:")
        check_qdrant.load_collection(patched, earlier, earlier_manifest, name)
        upserts = [models.PointStruct(**json.loads(new_lines[i]))
                   for i in sorted(by_kind["added"] | by_kind["updated"])]
        if upserts:
            patched.upsert(collection_name=name, points=upserts, wait=True)
        if by_kind["deleted"]:
            patched.delete(
                collection_name=name,
                points_selector=models.PointIdsList(points=sorted(by_kind["deleted"])),
                wait=True,
            )
        fresh = QdrantClient(":memory:")
        check_qdrant.load_collection(fresh, new, new_manifest, name)
        got, want = scroll_all(patched, name), scroll_all(fresh, name)
        if set(got) != set(want):
            fail(f"{name}: the patched collection has {len(got)} points, the new output's {len(want)}")
        differing = [i for i in want if not same_point(got[i], want[i])]
        if differing:
            fail(f"{name}: {len(differing)} points differ after the patch, e.g. {differing[0]}")
        print(json.dumps({
            "collection": name,
            "points": len(want),
            "added": len(by_kind["added"]),
            "updated": len(by_kind["updated"]),
            "deleted": len(by_kind["deleted"]),
            "patched_equals_new": True,
        }))


if __name__ == "__main__":
    main()

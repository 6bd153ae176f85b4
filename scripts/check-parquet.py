#!/usr/bin/env python3
"""Reads a run's Parquet outputs with the real readers and checks them against its JSONL.

    check-parquet.py OUTPUT_DIR COLLECTION

The run must have written both formats (output.formats = ["jsonl", "parquet"]). Checks:
- pyarrow: the schema is exactly the documented one (types, nullability, footer keys);
- every row equals the JSONL point of the same position: id, chunk id, collection, dense
  vectors bit for bit (as float32), sparse indices and values, sparse source, metadata;
  the same for query_vectors.parquet against query_vectors.jsonl;
- DuckDB: read_parquet over the parts, the vectors cast to FLOAT[dim], array_cosine_similarity
  top 10 for each query vector equals a brute-force numpy top 10 over the JSONL vectors, and
  every candidate of rerank.jsonl with a dense rank <= 10 is at that rank;
- Polars: the dense column is Array(Float32, dim), the sparse one a struct of two lists;
- LanceDB: a table made from the parts, its vector search top 10 equals the same ranking;
- Hugging Face datasets: load_dataset("parquet") gives List(float32, length=dim) and the
  sparse struct.
Prints one JSON summary line; exits 1 on the first failed check (naming it).
"""
import glob
import json
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def fail(message):
    print(f"check-parquet: {message}", file=sys.stderr)
    sys.exit(1)


def same_ranking(got, want, scores, what):
    """Top-k ids equal, allowing a swap of neighbours whose scores tie within 1e-6."""
    if got == want:
        return
    if sorted(got) == sorted(want) and all(
        abs(scores[a] - scores[b]) < 1e-6 for a, b in zip(got, want) if a != b
    ):
        return
    fail(f"{what}: {got} != {want}")


def main():
    out, collection = sys.argv[1], sys.argv[2]
    base = os.path.join(out, collection)
    parts = sorted(glob.glob(os.path.join(base, "points", "part-*.parquet")))
    if not parts:
        fail("no parts")
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    vectors = manifest["vectors"]
    dense = [v for v in vectors if v["kind"] == "dense"]
    sparse = [v for v in vectors if v["kind"] == "sparse"]
    include_text = manifest["config"]["output"]["include_text"]

    # pyarrow: the documented schema.
    item = lambda t: pa.field("item", t, nullable=False)
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("collection", pa.string(), nullable=False),
    ]
    for v in dense:
        fields.append(pa.field(v["name"], pa.list_(item(pa.float32()), v["dim"]), nullable=False))
    for v in sparse:
        fields.append(
            pa.field(
                v["name"],
                pa.struct(
                    [
                        pa.field("indices", pa.list_(item(pa.uint32())), nullable=False),
                        pa.field("values", pa.list_(item(pa.float32())), nullable=False),
                    ]
                ),
                nullable=True,
            )
        )
        fields.append(pa.field("sparse_source", pa.string()))
    if include_text:
        fields += [pa.field("title", pa.string()), pa.field("text", pa.string(), nullable=False)]
    fields.append(pa.field("metadata", pa.string()))
    expected = pa.schema(fields)
    footer_keys = None
    for part in parts:
        f = pq.ParquetFile(part)
        if not f.schema_arrow.equals(expected):
            fail(f"{part}: schema\n{f.schema_arrow}\n!=\n{expected}")
        meta = {k.decode(): v.decode() for k, v in f.metadata.metadata.items()}
        footer_keys = sorted(k for k in meta if k.startswith("embed_collections."))
        if json.loads(meta["embed_collections.vectors"])[0]["dim"] != dense[0]["dim"]:
            fail("footer vectors")
        if meta["embed_collections.collection"] != collection:
            fail("footer collection")
    table = pa.concat_tables([pq.read_table(p) for p in parts])

    # Every value against the JSONL.
    lines = [json.loads(l) for l in open(os.path.join(base, "points.jsonl"))]
    if table.num_rows != len(lines):
        fail(f"{table.num_rows} rows, {len(lines)} JSONL points")
    rows = table.to_pylist()
    for row, line in zip(rows, lines):
        payload = line["payload"]
        if (row["id"], row["chunk_id"], row["collection"]) != (line["id"], payload["chunk_id"], payload["collection"]):
            fail(f"ids of {line['id']}")
        for v in dense:
            a = np.array(row[v["name"]], dtype=np.float32)
            b = np.array(line["vector"][v["name"]], dtype=np.float32)
            if a.tobytes() != b.tobytes():
                fail(f"dense {v['name']} of {line['id']}")
        for v in sparse:
            want = line["vector"].get(v["name"])
            got = row[v["name"]]
            if want is None:
                if got is not None:
                    fail(f"sparse of {line['id']} should be null")
            elif got["indices"] != want["indices"] or np.array(got["values"], np.float32).tobytes() != np.array(want["values"], np.float32).tobytes():
                fail(f"sparse of {line['id']}")
            if row["sparse_source"] != payload.get("sparse_source"):
                fail(f"sparse_source of {line['id']}")
        meta = json.loads(row["metadata"]) if row["metadata"] is not None else None
        if meta != payload.get("metadata"):
            fail(f"metadata of {line['id']}")
    queries = [json.loads(l) for l in open(os.path.join(base, "query_vectors.jsonl"))]
    qtable = pq.read_table(os.path.join(base, "query_vectors.parquet")).to_pylist()
    if len(qtable) != len(queries):
        fail("query rows")
    for row, q in zip(qtable, queries):
        if (row["query_id"], row["query_sha256"], row["source"]) != (q["query_id"], q["query_sha256"], q["source"]):
            fail("query ids")
        for v in dense:
            want = q["vector"].get(v["name"])
            if want is None:
                if row[v["name"]] is not None:
                    fail("query vector should be null")
            elif np.array(row[v["name"]], np.float32).tobytes() != np.array(want, np.float32).tobytes():
                fail(f"query vector {q['query_id']}")

    # The dense ranking, brute force over the JSONL vectors.
    name, dim = dense[0]["name"], dense[0]["dim"]
    matrix = np.array([l["vector"][name] for l in lines], dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    chunk_ids = [l["payload"]["chunk_id"] for l in lines]
    ranked = {}
    for q in queries:
        vector = np.array(q["vector"][name], dtype=np.float32)
        scores = matrix @ vector / (norms * np.linalg.norm(vector))
        order = np.argsort(-scores, kind="stable")[:10]
        ranked[q["query_id"]] = ([chunk_ids[i] for i in order], {chunk_ids[i]: float(scores[i]) for i in range(len(lines))})

    # DuckDB.
    import duckdb

    con = duckdb.connect()
    glob_path = os.path.join(base, "points", "*.parquet")
    con.execute(f"CREATE VIEW points AS SELECT chunk_id, \"{name}\"::FLOAT[{dim}] AS v FROM read_parquet('{glob_path}')")
    dtype = con.execute("SELECT typeof(v) FROM points LIMIT 1").fetchone()[0]
    if dtype != f"FLOAT[{dim}]":
        fail(f"duckdb type {dtype}")
    ranks = {}
    for q in queries:
        top = con.execute(
            f"SELECT chunk_id FROM points ORDER BY array_cosine_similarity(v, ?::FLOAT[{dim}]) DESC LIMIT 10",
            [q["vector"][name]],
        ).fetchall()
        got = [r[0] for r in top]
        same_ranking(got, ranked[q["query_id"]][0], ranked[q["query_id"]][1], f"duckdb top 10 of query {q['query_id']}")
        ranks[q["query_id"]] = got
    checked_ranks = 0
    rerank = os.path.join(base, "rerank.jsonl")
    if os.path.exists(rerank):
        for line in open(rerank):
            r = json.loads(line)
            for c in r["candidates"]:
                rank = c.get("dense_rank")
                if rank is not None and rank <= 10:
                    got = ranks[r["query_id"]]
                    scores = ranked[r["query_id"]][1]
                    if got[rank - 1] != c["chunk_id"] and abs(scores[got[rank - 1]] - scores[c["chunk_id"]]) > 1e-6:
                        fail(f"query {r['query_id']}: the run's dense rank {rank} is {c['chunk_id']}, duckdb's {got[rank - 1]}")
                    checked_ranks += 1

    # Polars.
    import polars as pl

    frame = pl.read_parquet(glob_path)
    if frame.schema[name] != pl.Array(pl.Float32, dim):
        fail(f"polars dtype {frame.schema[name]}")
    polars_sparse = str(frame.schema[sparse[0]["name"]]) if sparse else None
    if sparse and not isinstance(frame.schema[sparse[0]["name"]], pl.Struct):
        fail(f"polars sparse dtype {polars_sparse}")
    if frame.height != len(lines):
        fail("polars rows")

    # LanceDB: a table from the parts, vector search.
    import lancedb

    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        data = pa.concat_tables([pq.read_table(p, columns=["chunk_id", name]) for p in parts])
        tbl = db.create_table("points", data=data)
        for q in queries:
            hits = tbl.search(np.array(q["vector"][name], dtype=np.float32), vector_column_name=name).distance_type("cosine").limit(10).to_list()
            got = [h["chunk_id"] for h in hits]
            same_ranking(got, ranked[q["query_id"]][0], ranked[q["query_id"]][1], f"lancedb top 10 of query {q['query_id']}")

    # Hugging Face datasets.
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    with tempfile.TemporaryDirectory() as cache:
        ds = datasets.load_dataset("parquet", data_files=parts, split="train", cache_dir=cache)
        feature = ds.features[name]
        ok = isinstance(feature, datasets.List) and feature.length == dim and feature.feature.dtype == "float32"
        if not ok:
            fail(f"datasets feature {feature!r}")
        if sparse:
            sf = ds.features[sparse[0]["name"]]
            if sf["indices"].feature.dtype != "uint32" or sf["values"].feature.dtype != "float32":
                fail(f"datasets sparse feature {sf!r}")
        if len(ds) != len(lines):
            fail("datasets rows")
        datasets_feature = repr(feature)

    print(json.dumps({
        "parts": len(parts),
        "rows": table.num_rows,
        "schema": str(expected).splitlines()[:4],
        "footer_keys": footer_keys,
        "values_equal_jsonl": True,
        "queries": len(queries),
        "duckdb_type": dtype,
        "duckdb_top10_equal": True,
        "rerank_dense_ranks_checked": checked_ranks,
        "polars_dtype": str(frame.schema[name]),
        "polars_sparse_dtype": polars_sparse,
        "lancedb_top10_equal": True,
        "datasets_feature": datasets_feature,
    }))


if __name__ == "__main__":
    main()

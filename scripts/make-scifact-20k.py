#!/usr/bin/env python3
"""Writes scifact-20k: the bundled SciFact slice cut into 20,000 overlapping chunks.

    scripts/make-scifact-20k.py OUT_DIR      (writes OUT_DIR/{corpus.jsonl,queries.jsonl,qrels/test.tsv})

A larger collection for benchmarks (scripts/bench-reuse.sh scifact-20k), made from the data in
the repository so that it needs no download: each abstract of examples/collections/scifact-2k is
cut into windows of 38 words that start every 19 words (the overlapping chunks a RAG splitter
makes), in corpus order, until there are 20,000. A chunk's id is `<abstract id>-<window>` and
its title the abstract's. The queries are the slice's; a query's judged chunks are all the
windows of its judged abstracts (grade unchanged), so the evaluation still runs.
"""
import json
import sys
from pathlib import Path

CHUNKS = 20_000
WINDOW, STRIDE = 38, 19

source = Path(__file__).resolve().parent.parent / "examples" / "collections" / "scifact-2k"
target = Path(sys.argv[1])
(target / "qrels").mkdir(parents=True, exist_ok=True)

windows_of = {}
chunks = []
for line in open(source / "corpus.jsonl", encoding="utf-8"):
    record = json.loads(line)
    words = record["text"].split()
    starts = range(0, max(len(words) - STRIDE, 1), STRIDE)
    for k, start in enumerate(starts):
        if len(chunks) == CHUNKS:
            break
        chunk_id = f"{record['_id']}-{k}"
        text = " ".join(words[start : start + WINDOW])
        chunks.append({"_id": chunk_id, "title": record.get("title", ""), "text": text})
        windows_of.setdefault(record["_id"], []).append(chunk_id)
if len(chunks) < CHUNKS:
    sys.exit(f"make-scifact-20k: only {len(chunks)} chunks from {source}")

with open(target / "corpus.jsonl", "w", encoding="utf-8") as out:
    for chunk in chunks:
        out.write(json.dumps(chunk) + "\n")
(target / "queries.jsonl").write_bytes((source / "queries.jsonl").read_bytes())
with open(source / "qrels" / "test.tsv", encoding="utf-8") as qrels, open(
    target / "qrels" / "test.tsv", "w", encoding="utf-8"
) as out:
    out.write(next(qrels))
    for line in qrels:
        query, doc, grade = line.rstrip("\n").split("\t")
        for chunk_id in windows_of.get(doc, []):
            out.write(f"{query}\t{chunk_id}\t{grade}\n")
print(f"make-scifact-20k: {len(chunks)} chunks in {target}", file=sys.stderr)

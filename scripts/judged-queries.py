#!/usr/bin/env python3
"""Writes the queries of a BEIR collection that its qrels/test.tsv judges, so an evaluation run
scores only those (BEIR's convention).

    python3 scripts/judged-queries.py COLLECTION_DIR OUT.jsonl
"""
import json
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(f"{src}/qrels/test.tsv", encoding="utf-8") as f:
        next(f)  # header
        judged = {line.split("\t")[0].strip() for line in f if line.strip()}
    with open(f"{src}/queries.jsonl", encoding="utf-8") as f, \
            open(dst, "w", encoding="utf-8") as out:
        for line in f:
            if line.strip() and json.loads(line)["_id"] in judged:
                out.write(line)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Slice BEIR SciFact into the bundled example collections:
examples/collections/scifact-mini/ (300 documents: the test fixture) and
examples/collections/scifact-2k/ (2,000 documents: the quickstart).

Deterministic (fixed seed, stdlib only). Selection:
  * queries: the first N_QUERIES distinct query ids of qrels/test.tsv, in file order;
  * corpus:  every document judged relevant for those queries, plus documents drawn
             with random.Random(SEED) from the rest until N_DOCS in total;
  * qrels:   the rows of qrels/test.tsv for those queries.
Lines are copied byte-for-byte (corpus/queries keep their original order; qrels keep
the header and the original CRLF line endings).

Usage: scripts/make-example.py SCIFACT_DIR [OUT_DIR] [N_DOCS]
    scripts/make-example.py SCIFACT_DIR                                    # scifact-mini, 300
    scripts/make-example.py SCIFACT_DIR examples/collections/scifact-2k 2000
"""

import json
import os
import random
import sys

N_QUERIES = 50
N_DOCS = 300
SEED = 20240101

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if len(sys.argv) < 2:
    sys.exit("usage: scripts/make-example.py SCIFACT_DIR [OUT_DIR] [N_DOCS]\n"
             "SCIFACT_DIR: the BEIR SciFact files (corpus.jsonl, queries.jsonl, qrels/test.tsv), e.g.\n"
             "unzipped from https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip")
SRC = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "examples", "collections", "scifact-mini")
if len(sys.argv) > 3:
    N_DOCS = int(sys.argv[3])
NAME = os.path.basename(os.path.normpath(OUT))


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def main():
    # qrels: header + CRLF rows "qid\tdocid\tscore"
    qrels = read_lines(os.path.join(SRC, "qrels", "test.tsv"))
    header, rows = qrels[0], qrels[1:]
    qids, relevant = [], set()
    for row in rows:
        qid, did, _ = row.decode().rstrip("\r\n").split("\t")
        if qid not in qids:
            if len(qids) == N_QUERIES:
                continue
            qids.append(qid)
        relevant.add(did)
    qid_set = set(qids)
    kept_rows = [r for r in rows if r.split(b"\t", 1)[0].decode() in qid_set]

    corpus = read_lines(os.path.join(SRC, "corpus.jsonl"))
    doc_ids = [json.loads(line)["_id"] for line in corpus]
    missing = relevant - set(doc_ids)
    if missing:
        sys.exit(f"judged documents missing from corpus: {sorted(missing)}")
    others = [d for d in doc_ids if d not in relevant]
    chosen = relevant | set(random.Random(SEED).sample(others, N_DOCS - len(relevant)))
    kept_docs = [line for line, d in zip(corpus, doc_ids) if d in chosen]

    queries = read_lines(os.path.join(SRC, "queries.jsonl"))
    kept_queries = [line for line in queries if json.loads(line)["_id"] in qid_set]
    assert len(kept_queries) == len(qids), "every judged query must be in queries.jsonl"

    os.makedirs(os.path.join(OUT, "qrels"), exist_ok=True)
    for name, lines in [("corpus.jsonl", kept_docs), ("queries.jsonl", kept_queries),
                        (os.path.join("qrels", "test.tsv"), [header] + kept_rows)]:
        with open(os.path.join(OUT, name), "wb") as f:
            f.writelines(lines)

    with open(os.path.join(OUT, "ATTRIBUTION.md"), "w", encoding="utf-8") as f:
        f.write(ATTRIBUTION.format(name=NAME, role=ROLE.get(NAME, "an example collection"),
                                   nq=len(qids), nr=len(relevant), nd=len(kept_docs),
                                   nrows=len(kept_rows), seed=SEED,
                                   nother=len(kept_docs) - len(relevant)))
    print(f"wrote {OUT}: {len(kept_docs)} documents ({len(relevant)} judged relevant), "
          f"{len(kept_queries)} queries, {len(kept_rows)} qrels rows")


ROLE = {
    "scifact-mini": "the test fixture (and the example of the benchmarks)",
    "scifact-2k": "the quickstart's example collection",
}

ATTRIBUTION = """\
# {name} — attribution

A slice of **BEIR SciFact** (test split), used as {role}.

## Source

- SciFact: David Wadden, Shanchuan Lin, Kyle Lo, Lucy Lu Wang, Madeleine van Zuylen,
  Arman Cohan, Hannaneh Hajishirzi. *Fact or Fiction: Verifying Scientific Claims.*
  EMNLP 2020. https://github.com/allenai/scifact
- BEIR: Nandan Thakur, Nils Reimers, Andreas Rücklé, Abhishek Srivastava, Iryna Gurevych.
  *BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information Retrieval
  Models.* NeurIPS 2021 Datasets and Benchmarks. https://github.com/beir-cellar/beir
  (BEIR redistributes SciFact unchanged.)

## License

- Claims (`queries.jsonl`, `qrels/test.tsv`): **CC BY 4.0**.
- Corpus abstracts (`corpus.jsonl`): **ODC-By 1.0** (part of Semantic Scholar S2ORC).

As stated in upstream allenai/scifact LICENSE.md.

## What was sliced

Made by `scripts/make-example.py` (deterministic, seed {seed}) from the BEIR SciFact files
`corpus.jsonl`, `queries.jsonl` and `qrels/test.tsv`:

- `queries.jsonl`: the first {nq} distinct query ids of `qrels/test.tsv` ({nq} queries);
- `qrels/test.tsv`: the header row and the {nrows} judgement rows of those queries;
- `corpus.jsonl`: {nd} documents: the {nr} documents judged relevant for those queries plus
  {nother} other documents drawn at random (seeded).

Lines are copied byte-for-byte and kept in their original order: JSON objects are
unmodified (ASCII with `\\uXXXX` escapes; some titles keep trailing spaces; query
`metadata` holds SciFact evidence labels and should be ignored), and `qrels/test.tsv`
keeps BEIR's **CRLF** line endings and its `query-id\\tcorpus-id\\tscore` header row.
"""


if __name__ == "__main__":
    main()

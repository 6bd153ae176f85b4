#!/usr/bin/env python3
"""A plain sentence-transformers HTTP server, the peer most users write themselves: one
SentenceTransformer and one CrossEncoder, TEI-shaped /embed and /rerank, run by uvicorn.
Used only by scripts/bench-serve.sh.

    python scripts/bench/st_server.py MODEL_DIR RERANKER_DIR PORT
"""

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sentence_transformers import CrossEncoder, SentenceTransformer

embedder = SentenceTransformer(sys.argv[1], device="cpu")
reranker = CrossEncoder(sys.argv[2], device="cpu")
app = FastAPI()


class Embed(BaseModel):
    inputs: list[str]


class Rerank(BaseModel):
    query: str
    texts: list[str]


@app.get("/health")
def health():
    return {}


@app.post("/embed")
async def embed(body: Embed):
    vectors = await run_in_threadpool(embedder.encode, body.inputs, normalize_embeddings=True)
    return vectors.tolist()


@app.post("/rerank")
async def rerank(body: Rerank):
    scores = await run_in_threadpool(reranker.predict, [(body.query, t) for t in body.texts])
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [{"index": i, "score": float(scores[i])} for i in order]


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")

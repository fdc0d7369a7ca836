"""Per-sentence vectors of a chunk, stored with it at ingest so that search highlights need no model call.

The web app highlights, in each hit, the sentence closest to the query (embedding similarity, so it works across
languages). Embedding those sentences per search was the cost of a search under load: 50 concurrent searches
asked for ~870 distinct sentences, ~13 s of multilingual-e5-small on 2 cores however they were batched
(bench/ui_load.py). Embedded once at ingest, a search only takes dot products.

Stored in the point's payload under ``sentence_vectors`` (next to LangChain's ``page_content``/``metadata``, so
LangChain readers never see it): the sentences' character spans and their vectors as int8 rows with one float32
scale per row (row ≈ int8 · scale) and the embedder's fingerprint: 1 byte per dimension, ~3 KB per chunk with
e5-small. Ranking sentences by int8 dot products picks the same sentence as float32 does but for near-ties
(tests/test_sentence_vectors.py).

Why not "late chunking" (pooling the chunk's own token states per sentence, at no extra model cost): measured on
120 handbook chunks with one of their sentences as the query, it found that sentence 68% of the time, against
100% for sentences embedded on their own.
"""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

from .chunking import sentence_spans

PAYLOAD_KEY = "sentence_vectors"
MAX_SENTENCES = 48  # per chunk: a highlight candidate list, not an index; bounds the payload


def sentence_vectors(embedder, texts: Sequence[str]) -> list[dict]:
    """One payload entry per text (see the module docstring); every sentence of every text in one bulk
    ``embed_documents`` call (token-budget batches, the embedder's document template). Texts of one sentence get
    their span and no vectors (that sentence is the highlight)."""
    spans = [sentence_spans(t)[:MAX_SENTENCES] for t in texts]
    pieces = [t[a:b] for t, sp in zip(texts, spans) if len(sp) > 1 for a, b in sp]
    vecs = embedder.embed_documents(pieces, direct=True) if pieces else None  # (n_sentences, dim)
    out, row = [], 0
    for sp in spans:
        entry: dict = {"spans": [[a, b] for a, b in sp]}
        if len(sp) > 1:
            entry.update(encode(vecs[row:row + len(sp)]), embedder=embedder.fingerprint)
            row += len(sp)
        out.append(entry)
    return out


def encode(vecs: np.ndarray) -> dict:
    """(n, dim) float vectors → int8 rows + per-row scales, base64 (JSON payload friendly)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    scale = np.abs(vecs).max(axis=1) / 127.0  # (n,)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(vecs / scale[:, None]), -127, 127).astype(np.int8)  # (n, dim)
    return {"dim": int(vecs.shape[1]), "int8": base64.b64encode(q.tobytes()).decode("ascii"),
            "scale": base64.b64encode(scale.astype(np.float32).tobytes()).decode("ascii")}


def decode(entry: dict | None, embedder) -> tuple[list[tuple[int, int]], np.ndarray | None] | None:
    """(spans, vectors (n, dim) float32 or None for a one-sentence text) of a payload entry; None when there is
    no usable entry (chunks ingested without one, or vectors of another embedder than the serving one)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("spans"), list):
        return None
    spans = [(int(a), int(b)) for a, b in entry["spans"]]
    if "int8" not in entry:
        return (spans, None) if len(spans) == 1 else None
    dim = embedder.dim
    if entry.get("embedder") != embedder.fingerprint or int(entry.get("dim", -1)) != dim:
        return None
    try:
        q = np.frombuffer(base64.b64decode(entry["int8"]), dtype=np.int8).reshape(len(spans), dim)
        scale = np.frombuffer(base64.b64decode(entry["scale"]), dtype=np.float32)  # (n,)
    except (ValueError, TypeError):
        return None  # damaged entry: the caller embeds the sentences instead
    if scale.shape != (len(spans),):
        return None
    return spans, q.astype(np.float32) * scale[:, None]

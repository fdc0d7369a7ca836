"""Retrieval over a collection: dense, sparse or hybrid; filters; score threshold; MMR; language-bias correction.

Language-bias correction ("centering"): multilingual embedders add a per-language direction to every vector, so
documents in the query's own language score too high on a mixed-language collection. Each language's mean vector
is estimated from the collection itself; the query is centred on its language's mean for the ANN search, and the
candidates are re-scored exactly as cos(q − μ_q, d − μ_lang(d)). See bench/eval figures for when it helps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lusifer_rag.errors import ConfigError, RagError
from lusifer_rag.store import Filter

from .types import RetrievedChunk

MODES = ("dense", "sparse", "hybrid")
DEBIAS = ("auto", "on", "off")


@dataclass
class SearchFilters:
    """What a search may return. Lists match any of their values."""

    languages: Sequence[str] | None = None
    sources: Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    page_range: tuple[int | None, int | None] | None = None

    def to_store(self) -> Filter | None:
        must = {}
        for key, values in (("metadata.language", self.languages), ("metadata.source", self.sources),
                            ("metadata.doc_id", self.doc_ids)):
            if values:
                must[key] = [values] if isinstance(values, str) else list(values)
        ranges = {"metadata.page": tuple(self.page_range)} if self.page_range else {}
        return Filter(must=must, ranges=ranges) if (must or ranges) else None


class LanguageMeans:
    """Per-language mean vectors of a collection, re-estimated when its point count changes."""

    def __init__(self, store, collection: str, sample_per_language: int = 2000):
        self.store, self.collection, self.sample = store, collection, sample_per_language
        self._lock = threading.Lock()
        self._count = -1
        self.means: dict[str, np.ndarray] = {}
        self.shares: dict[str, float] = {}

    def refresh(self) -> None:
        with self._lock:
            count = self.store.count(self.collection)
            if count == self._count:
                return
            counts = self.store.facet(self.collection, "metadata.language")
            means = {}
            for lang, n in counts.items():
                vecs = []
                for p in self.store.iter_points(self.collection, Filter(must={"metadata.language": lang}),
                                                page=min(self.sample, 1024), with_vectors=True):
                    vecs.append(p.vector)
                    if len(vecs) >= self.sample:
                        break
                if vecs:
                    means[lang] = np.mean(np.stack(vecs), axis=0).astype(np.float32)  # (dim,)
            total = sum(counts.values()) or 1
            self.means, self.shares = means, {k: v / total for k, v in counts.items()}
            self._count = count

    def languages(self) -> int:
        """Languages holding at least 5% of the collection."""
        return sum(1 for s in self.shares.values() if s >= 0.05)


class Retriever:
    """Searches one collection with the embedder that built it."""

    def __init__(self, store, collection: str, embedder, *, instruction: str | None = None, mode: str = "hybrid",
                 debias: str = "auto", sparse_weight: float = 1.0, rrf_k: int = 60, fetch_k: int = 100):
        from lusifer_rag.embedder.sparse import BM25SparseEncoder

        if mode not in MODES:
            raise ConfigError(f"search mode {mode!r} is not valid; allowed: {MODES}")
        if debias not in DEBIAS:
            raise ConfigError(f"debias {debias!r} is not valid; allowed: {DEBIAS}")
        self.store, self.collection, self.embedder = store, collection, embedder
        self.instruction, self.mode, self.debias = instruction, mode, debias
        self.sparse_weight, self.rrf_k, self.fetch_k = sparse_weight, rrf_k, fetch_k
        self.sparse = BM25SparseEncoder(embedder.tokenizer)
        self.means = LanguageMeans(store, collection)
        self._query_cache: dict[str, np.ndarray] = {}  # repeated queries (UI, sweeps) skip the model
        self._cache_lock = threading.Lock()

    def embed_query(self, query: str) -> np.ndarray:
        with self._cache_lock:
            hit = self._query_cache.get(query)
        if hit is not None:
            return hit
        vec = self.embedder.embed_queries([query], instruction=self.instruction)[0]  # (dim,)
        with self._cache_lock:
            if len(self._query_cache) >= 1024:
                self._query_cache.pop(next(iter(self._query_cache)))
            self._query_cache[query] = vec
        return vec

    def _debias_on(self, debias: str | None, filters: SearchFilters | None = None) -> bool:
        choice = debias or self.debias
        if choice == "auto":
            if filters is not None and filters.languages and len(set(filters.languages)) == 1:
                return False  # candidates all share one language: nothing to correct between languages
            self.means.refresh()
            return self.means.languages() >= 2  # one language: no cross-language bias to correct
        if choice == "on":
            self.means.refresh()
        return choice == "on"

    def search(self, query: str, k: int = 10, filters: SearchFilters | None = None, *, mode: str | None = None,
               score_threshold: float | None = None, mmr: bool = False, mmr_lambda: float = 0.5,
               debias: str | None = None, query_language: str | None = None) -> list[RetrievedChunk]:
        if not isinstance(query, str) or not query.strip():
            raise RagError(f"the search query must be a non-empty string; got {query!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise RagError(f"k must be a positive integer; got {k!r}")
        mode = mode or self.mode
        if mode not in MODES:
            raise ConfigError(f"search mode {mode!r} is not valid; allowed: {MODES}")
        flt = filters.to_store() if filters else None
        q = self.embed_query(query)  # (dim,)
        centred = self._debias_on(debias, filters) and mode != "sparse"
        want_vectors = centred or mmr
        pool = max(self.fetch_k, 4 * k) if (centred or mmr or mode == "hybrid") else k

        dense_hits = []
        qv = q
        if mode in ("dense", "hybrid"):
            qv = self._centre_query(q, query, query_language) if centred else q
            dense_hits = self.store.query(self.collection, dense=qv, filter=flt, k=pool, with_vectors=want_vectors)
            if centred:
                dense_hits = self._rescore_centred(qv, dense_hits)
        if mode == "dense":
            ranked = [(h, h.score) for h in dense_hits]
        else:
            from lusifer_rag.store import SparseVector

            sv = self.sparse.encode_queries([query])[0]
            sparse_hits = self.store.query(self.collection, sparse=SparseVector(sv.indices, sv.values), filter=flt,
                                           k=pool, mode="sparse", with_vectors=True)
            if mode == "sparse":
                ranked = [(h, h.score) for h in sparse_hits]
            else:
                lang = query_language or self._query_language(query)
                ranked = self._fuse(dense_hits, sparse_hits, lang, qv, centred)
        if score_threshold is not None:
            ranked = [(h, s) for h, s in ranked if s >= score_threshold]
        if mmr:
            ranked = mmr_select(q, ranked, k, mmr_lambda)
        return [RetrievedChunk.from_payload(h.id, s, h.payload) for h, s in ranked[:k]]

    # ---- pieces ----------------------------------------------------------------------------------
    @staticmethod
    def _query_language(text: str) -> str:
        from lusifer_rag.rag.language import detect_query_language

        return detect_query_language(text)

    def _centre_query(self, q: np.ndarray, text: str, lang: str | None) -> np.ndarray:
        lang = lang or self._query_language(text)
        mu = self.means.means.get(lang)
        if mu is None:  # the query's language is not in the collection: nothing of its own to favour
            return q
        out = q - mu
        return out / max(float(np.linalg.norm(out)), 1e-12)

    def _rescore_centred(self, qv: np.ndarray, hits) -> list:
        if not hits:
            return hits
        docs = np.stack([h.vector for h in hits])  # (n, dim)
        mus = np.stack([self.means.means.get(h.payload.get("metadata", {}).get("language"), np.zeros_like(qv))
                        for h in hits])  # (n, dim)
        centred = docs - mus
        centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
        scores = centred @ qv  # (n,)
        for h, s, v in zip(hits, scores, centred):
            h.score, h.vector = float(s), v  # MMR then measures diversity in the same (centred) space
        return sorted(hits, key=lambda h: -h.score)

    def _fuse(self, dense_hits, sparse_hits, query_lang: str, qv: np.ndarray, centred: bool) -> list:
        """Language-slot-preserving fusion: lexical evidence only means something within the query's language,
        so the sparse leg re-orders the query-language documents among the ranks they already hold in the dense
        ranking (weighted reciprocal-rank fusion of their dense and sparse ranks; sparse-only matches may take
        such a rank). Documents in other languages keep their dense ranks, so cross-lingual results are never worse
        than dense alone, and the fusion cannot add same-language bias. Reported scores stay dense cosines."""
        def lang_of(h) -> str:
            return h.payload.get("metadata", {}).get("language", "und")

        dense_ids = {h.id for h in dense_hits}
        own_dense = [h for h in dense_hits if lang_of(h) == query_lang]
        own_sparse = [h for h in sparse_hits if lang_of(h) == query_lang]
        fused: dict[str, float] = {}
        by_id = {}
        for weight, hits in ((1.0, own_dense), (self.sparse_weight, own_sparse)):
            for rank, h in enumerate(hits):
                fused[h.id] = fused.get(h.id, 0.0) + weight / (self.rrf_k + rank + 1)
                by_id.setdefault(h.id, h)
        own_order = iter(sorted(fused, key=lambda i: -fused[i]))
        extra = [by_id[i] for i in fused if i not in dense_ids]
        if extra:  # sparse-only matches: their dense score, for thresholds and display
            vecs = np.stack([h.vector for h in extra])  # (m, dim)
            if centred:
                mu = self.means.means.get(query_lang, np.zeros_like(qv))
                vecs = vecs - mu
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            for h, sc in zip(extra, vecs @ qv):
                h.score = float(sc)
        out = []
        for h in dense_hits:
            if lang_of(h) == query_lang:
                h = by_id[next(own_order)]
            out.append((h, h.score))
        out += [(by_id[i], by_id[i].score) for i in own_order]  # own-language leftovers after every slot
        return out


def mmr_select(q: np.ndarray, ranked: list, k: int, lam: float) -> list:
    """Maximal marginal relevance over candidates that carry vectors: relevance λ·sim(q,d) − (1−λ)·max sim(d, chosen)."""
    cands = [(h, s) for h, s in ranked if h.vector is not None]
    if not cands:
        return ranked
    vecs = np.stack([h.vector for h, _ in cands])  # (n, dim), unit norm
    rel = np.array([s for _, s in cands], dtype=np.float32)  # (n,) the ranking's own scores (debiased, fused)
    sim = vecs @ vecs.T  # (n, n)
    chosen: list[int] = []
    left = list(range(len(cands)))
    while left and len(chosen) < k:
        penalty = sim[np.ix_(left, chosen)].max(axis=1) if chosen else np.zeros(len(left))
        best = left[int(np.argmax(lam * rel[left] - (1 - lam) * penalty))]
        chosen.append(best)
        left.remove(best)
    return [cands[i] for i in chosen]

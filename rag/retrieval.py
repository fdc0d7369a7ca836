"""Retrieval over a collection: dense, sparse or hybrid; filters; score threshold; MMR; language-bias correction.

Language-bias correction ("centring", :mod:`lusifer_rag.rag.language_bias`): on a mixed-language collection the
query and the candidates are centred on their languages' means before exact re-scoring, so a query finds the
relevant passages in every language, not mostly its own; sentences read off a document still find their own
chunk first (the exact-match guard). ``debias="auto"`` turns it on for collections holding two or more languages
and off under a one-language filter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lusifer_rag.errors import ConfigError, RagError
from lusifer_rag.store import Filter

from .language_bias import LanguageMeans, exact_matches, keep_exact_matches
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


@dataclass
class _Candidate:
    """One chunk found by any leg of a search, scored once."""

    hit: object  # store Hit (payload, raw vector)
    raw: float  # cosine to the uncorrected query
    score: float  # the reported score: the (corrected, when centred) dense cosine
    vector: np.ndarray | None  # unit vector in the space `score` was measured in (MMR uses it)

    @property
    def language(self) -> str:
        return self.hit.payload.get("metadata", {}).get("language", "und")


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

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed several queries in one batch (cached like :meth:`embed_query`), (n, dim)."""
        with self._cache_lock:
            todo = list(dict.fromkeys(q for q in queries if q not in self._query_cache))
        if todo:
            vecs = self.embedder.embed_queries(todo, instruction=self.instruction)  # (m, dim)
            with self._cache_lock:
                for text, vec in zip(todo, vecs):
                    if len(self._query_cache) >= 1024:
                        self._query_cache.pop(next(iter(self._query_cache)))
                    self._query_cache[text] = vec
        return np.stack([self.embed_query(q) for q in queries])

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
        pool = max(self.fetch_k, 4 * k) if (centred or mmr or mode == "hybrid") else k
        lang = query_language or (self._query_language(query) if (centred or mode == "hybrid") else "und")
        qc = self.means.centre_query(q, lang) if centred else q

        cands: dict[str, _Candidate] = {}
        raw_order: list[str] = []  # dense ranking of the uncorrected query
        if mode in ("dense", "hybrid"):
            # the uncorrected query's neighbours and, when centred, the centred query's: a same-language match
            # that the centred query alone would not reach stays a candidate
            for i, vec in enumerate([q, qc] if centred else [q]):
                hits = self.store.query(self.collection, dense=vec, filter=flt, k=pool, with_vectors=centred or mmr)
                for h in hits:
                    cands.setdefault(h.id, _Candidate(h, h.score, h.score, h.vector))
                if i == 0:
                    raw_order = [h.id for h in hits]
        dense_ids = list(cands)
        sparse_order: list[str] = []
        if mode in ("sparse", "hybrid"):
            from lusifer_rag.store import SparseVector

            sv = self.sparse.encode_queries([query])[0]
            hits = self.store.query(self.collection, sparse=SparseVector(sv.indices, sv.values), filter=flt,
                                    k=pool, mode="sparse", with_vectors=mode == "hybrid" or mmr)
            if mode == "sparse":
                ranked = [(_Candidate(h, h.score, h.score, h.vector), h.score) for h in hits]
                return self._finish(q, ranked, k, score_threshold, mmr, mmr_lambda)
            for h in hits:  # sparse-only matches get their dense score from their vector
                cands.setdefault(h.id, _Candidate(h, np.nan, np.nan, h.vector))
            sparse_order = [h.id for h in hits]
        self._score(cands, q, qc, centred)

        dense_order = sorted(dense_ids, key=lambda i: -cands[i].score) if centred else raw_order
        order = self._fuse(cands, dense_order, sparse_order, lang) if mode == "hybrid" else dense_order
        if centred:  # the exact-match guard: a sentence read off a chunk finds that chunk as without correction
            uncorrected = self._fuse(cands, raw_order, sparse_order, lang) if mode == "hybrid" else raw_order
            # only the uncorrected top k can move into the top k; a chunk holding the query's terms is in the
            # sparse leg's results whenever there is one
            lexical = set(sparse_order) if mode == "hybrid" else None
            top = [i for i in uncorrected[:k] if lexical is None or i in lexical]
            held = exact_matches(self.sparse, query, [cands[i].hit.payload.get("page_content", "") for i in top])
            order = keep_exact_matches(order, uncorrected, {i for i, yes in zip(top, held) if yes})
        return self._finish(q, [(cands[i], cands[i].score) for i in order], k, score_threshold, mmr, mmr_lambda)

    # ---- pieces ----------------------------------------------------------------------------------
    @staticmethod
    def _query_language(text: str) -> str:
        from .language import detect_query_language

        return detect_query_language(text)

    def _score(self, cands: dict[str, _Candidate], q: np.ndarray, qc: np.ndarray, centred: bool) -> None:
        """Fill every candidate's raw cosine and reported score (centred cosine when centred) from its vector."""
        with_vec = [c for c in cands.values() if c.hit.vector is not None]
        if not with_vec:
            return
        vecs = np.stack([c.hit.vector for c in with_vec])  # (n, dim), unit norm
        raw = vecs @ q  # (n,)
        if centred:
            scores, unit = self.means.centred_scores(qc, [c.language for c in with_vec], vecs)
        else:
            scores, unit = raw, vecs
        for c, r, s, v in zip(with_vec, raw, scores, unit):
            c.raw, c.score, c.vector = float(r), float(s), v

    def _fuse(self, cands: dict[str, _Candidate], dense_order: list[str], sparse_order: list[str],
              query_lang: str) -> list[str]:
        """Language-slot-preserving fusion: lexical evidence only means something within the query's language,
        so the sparse leg re-orders the query-language chunks among the ranks they already hold in the dense
        ranking (weighted reciprocal-rank fusion of their dense and sparse ranks; sparse-only matches may take
        such a rank). Chunks in other languages keep their dense ranks, so cross-lingual results are never worse
        than dense alone, and the fusion cannot add same-language bias."""
        own_dense = [i for i in dense_order if cands[i].language == query_lang]
        own_sparse = [i for i in sparse_order if cands[i].language == query_lang]
        fused: dict[str, float] = {}
        for weight, ids in ((1.0, own_dense), (self.sparse_weight, own_sparse)):
            for rank, i in enumerate(ids):
                fused[i] = fused.get(i, 0.0) + weight / (self.rrf_k + rank + 1)
        own_order = iter(sorted(fused, key=lambda i: -fused[i]))
        out = [next(own_order) if cands[i].language == query_lang else i for i in dense_order]
        return out + list(own_order)  # own-language leftovers after every slot

    def _finish(self, q: np.ndarray, ranked: list, k: int, score_threshold: float | None, mmr: bool,
                mmr_lambda: float) -> list[RetrievedChunk]:
        if score_threshold is not None:
            ranked = [(c, s) for c, s in ranked if s >= score_threshold]
        if mmr:
            ranked = mmr_select(q, ranked, k, mmr_lambda)
        return [RetrievedChunk.from_payload(c.hit.id, s, c.hit.payload) for c, s in ranked[:k]]


def mmr_select(q: np.ndarray, ranked: list, k: int, lam: float) -> list:
    """Maximal marginal relevance over candidates that carry vectors: relevance λ·sim(q,d) − (1−λ)·max sim(d, chosen)."""
    cands = [(c, s) for c, s in ranked if c.vector is not None]
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

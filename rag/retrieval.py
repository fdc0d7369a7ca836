"""Retrieval over a collection: dense, sparse or hybrid; filters; score threshold; MMR; language-bias correction.

Language-bias correction ("centring", :mod:`lusifer_rag.rag.language_bias`): on a mixed-language collection the
query and the candidates are centred on their languages' means (and lose the language-identity subspace) before
exact re-scoring, then the query is expanded by its best documents, so a query finds the relevant passages in every
language, not mostly its own; sentences read off a document still find their own
chunk first (the exact-match guard). ``debias="auto"`` turns it on for collections holding two or more languages
(≥ PRESENT_SHARE of the chunks each, counting labels the identifier was sure of) and off under a one-language filter.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lusifer_rag.errors import ConfigError, RagError, StoreError
from lusifer_rag.store import Filter
from lusifer_rag.store.filters import both

from .language_bias import (FEEDBACK_DOCS, TRANSLATION_POOL, LanguageMeans, exact_matches, feedback_query,
                            keep_exact_matches, translation_group_scores)
from .reference_offsets import REFERENCE_WEIGHT
from .types import RetrievedChunk

MODES = ("dense", "sparse", "hybrid")
DEBIAS = ("off", "offsets", "reference", "centre", "auto", "on")
#: earlier names: "auto" (centring on mixed collections, the default until bench/retrieval_real.py showed it below
#: the raw model on collections that are not parallel) now means the default, "off"; "on" is "centre"
DEBIAS_ALIASES = {"auto": "off", "on": "centre"}
#: the default's share of a chunk's best sentence in its score, for a chunk of many sentences (a chunk of n takes
#: β · (1 − 1/n)); chosen on bench/reference_sweep.py's tune split: 0.7 keeps every slice of every set within 0.01 of
#: the raw model and finds the most across languages (docs/retrieval.md)
SENTENCE_WEIGHT = 0.7


@dataclass
class SearchFilters:
    """What a search may return. Lists match any of their values."""

    languages: Sequence[str] | None = None
    sources: Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    page_range: tuple[int | None, int | None] | None = None
    #: what the caller may read (app/access.py read_filter), ANDed with the rest: it can only narrow a search
    access: Filter | None = None

    def to_store(self) -> Filter | None:
        return both(self.access, self._own())

    def _own(self) -> Filter | None:
        must = {}
        for key, values in (("metadata.language", self.languages), ("metadata.source", self.sources),
                            ("metadata.doc_id", self.doc_ids)):
            if values:
                must[key] = [values] if isinstance(values, str) else list(values)
        ranges = {"metadata.page": tuple(self.page_range)} if self.page_range else {}
        return Filter(must=must, ranges=ranges) if (must or ranges) else None


#: the payload fields the candidate legs return (the full payload is read for the final k only)
LANGUAGE_KEY = "metadata.language"
DOC_KEY = "metadata.doc_id"
LEG_PAYLOAD = [LANGUAGE_KEY, DOC_KEY]
#: HNSW beams (uncentred leg, centred leg; None: the collection's ``hnsw_ef``) by collection size: the first row
#: whose bound exceeds the point count. The centred query q − μ lies off the data's manifold, where the graph
#: navigates badly and needs a wider beam. Measured with bench/search_latency.py (recall@10 against exact search,
#: 2 cores): 100k chunks, default search, beams (512, 512): 0.91, (512, 4096): 0.98 in 13 ms; dense only, 512:
#: 0.973, 2048: 0.984 in 3.5 ms. 1M (int8): default, (512, 4096): 0.96, (2048, 8192): 0.98 in 36 ms; dense only,
#: 2048: 0.970, 4096: 0.977 in 11 ms (8192 gains nothing more).
LEG_BEAMS: tuple[tuple[float, tuple[int | None, int]], ...] = ((200_000, (2048, 4096)), (float("inf"), (4096, 8192)))


@dataclass
class _Candidate:
    """One chunk found by any leg of a search, scored once; its payload is read only if it is returned."""

    id: str
    language: str
    doc: str = ""
    score: float = np.nan  # the reported score: the (centred, when centred) dense cosine
    vector: np.ndarray | None = None  # unit vector in the space `score` was measured in (MMR only)
    centred: np.ndarray | None = None  # (dim,) centred unit vector (centred searches)
    centred_on: str = ""  # the language whose mean it was centred on (its label, or the nearest for a rare one)
    payload: dict | None = None


def _language_of(hit) -> str:
    return (hit.payload.get("metadata") or {}).get("language", "und")


def _candidate(hit) -> "_Candidate":
    return _Candidate(hit.id, _language_of(hit), _doc_of(hit))


def _doc_of(hit) -> str:
    return (hit.payload.get("metadata") or {}).get("doc_id", "") or hit.id


class Retriever:
    """Searches one collection with the embedder that built it."""

    def __init__(self, store, collection: str, embedder, *, instruction: str | None = None, mode: str = "hybrid",
                 debias: str = "off", sparse_weight: float = 1.0, rrf_k: int = 60, fetch_k: int = 40,
                 exact: bool = False, beams: tuple[int | None, int | None] | None = None,
                 feedback_docs: int = FEEDBACK_DOCS, translation_pool: int = TRANSLATION_POOL,
                 same_language_pivot: bool = False, per_language_k: int = 10, min_relevance: float | None = None,
                 reference_weight: float = REFERENCE_WEIGHT, sentence_weight: float = SENTENCE_WEIGHT,
                 same_language_gap: float | None = None):
        """``exact``: every store query brute force (no HNSW, no quantization): the reference for recall checks.
        ``beams``: the HNSW beams of the (uncentred, centred) dense legs; None: by collection size (LEG_BEAMS).
        ``feedback_docs``: a centred search searches once more with the query expanded by the centred vectors of its
        best this-many documents and re-scores every candidate against it (pseudo-relevance feedback); 0: off.
        ``same_language_pivot``: where the uncorrected search's best document is in the query's language, the
        feedback uses that document alone instead (:meth:`_feedback_sources`). For parallel collections (every
        passage in every language: translated editions); off by default, since it loses where the query's
        language lacks the passage.
        ``translation_pool``: a centred search scores its best this-many documents by their translation groups
        (:func:`~lusifer_rag.rag.language_bias.translation_group_scores`); 0: off.
        ``sentence_weight``: β of the default path's score (1 − b) · q·chunk + b · max over the chunk's sentences of
        q·sentence, b = β · (1 − 1/n) for a chunk of n sentences (:meth:`_sentence_scores`); 0: the chunk's cosine
        alone.
        ``same_language_gap``: what the embedder adds to a score for sharing the query's language, taken off the
        default path's scores of chunks in the query's language (:meth:`_same_language_gap`); None: the embedder's
        measured gap (``embedder.same_language_gap``; none where it has none); 0: off."""
        from lusifer_rag.embedder.sparse import BM25SparseEncoder

        if mode not in MODES:
            raise ConfigError(f"search mode {mode!r} is not valid; allowed: {MODES}")
        if debias not in DEBIAS:
            raise ConfigError(f"debias {debias!r} is not valid; allowed: {DEBIAS}")
        self.store, self.collection, self.embedder = store, collection, embedder
        self.instruction, self.mode, self.debias = instruction, mode, DEBIAS_ALIASES.get(debias, debias)
        self.sparse_weight, self.rrf_k, self.fetch_k, self.exact = sparse_weight, rrf_k, fetch_k, exact
        self.beams = beams
        if isinstance(feedback_docs, bool) or not isinstance(feedback_docs, int) or feedback_docs < 0:
            raise ConfigError(f"feedback_docs must be an integer >= 0; got {feedback_docs!r}")
        self.feedback_docs = feedback_docs
        if isinstance(translation_pool, bool) or not isinstance(translation_pool, int) or translation_pool < 0:
            raise ConfigError(f"translation_pool must be an integer >= 0; got {translation_pool!r}")
        self.translation_pool = translation_pool
        if not isinstance(same_language_pivot, bool):
            raise ConfigError(f"same_language_pivot must be True or False; got {same_language_pivot!r}")
        self.same_language_pivot = same_language_pivot
        self.per_language_k, self.min_relevance = per_language_k, min_relevance
        self.reference_weight = reference_weight  # debias="reference": share of the language gap taken off
        if isinstance(sentence_weight, bool) or not isinstance(sentence_weight, (int, float)) \
                or not 0 <= sentence_weight <= 1:
            raise ConfigError(f"sentence_weight must be a number from 0 to 1; got {sentence_weight!r}")
        self.sentence_weight = float(sentence_weight)
        if same_language_gap is None:
            same_language_gap = getattr(embedder, "same_language_gap", 0.0)
        if isinstance(same_language_gap, bool) or not isinstance(same_language_gap, (int, float)) \
                or not 0 <= same_language_gap <= 0.1:
            raise ConfigError(f"same_language_gap must be a number from 0 to 0.1; got {same_language_gap!r}")
        self.same_language_gap = float(same_language_gap)
        self._shifts = None  # debias="reference": the embedder's ReferenceShifts, on first use
        self._size = (-1, None, -1.0)  # (point count, store write_version, monotonic time) for the beams
        self.sparse = BM25SparseEncoder(embedder.tokenizer)
        self.means = LanguageMeans(store, collection)
        self._served_checked = -1e9  # when the collection's embedder was last compared with ours
        self._query_cache: dict[str, np.ndarray] = {}  # repeated queries (UI, sweeps) skip the model
        self._cache_lock = threading.Lock()

    @classmethod
    def from_settings(cls, store, collection: str, embedder, settings, **kwargs) -> "Retriever":
        """A retriever with the settings' search options (``search_mode``, ``debias``, ``same_language_pivot``):
        the one place the CLI, the app, the LangChain retriever and the eval runner build theirs."""
        options = {"mode": settings.search_mode, "debias": settings.debias, "sentence_weight": settings.sentence_weight,
                   "same_language_pivot": settings.same_language_pivot, "min_relevance": relevance_floor(settings, embedder),
                   "same_language_gap": settings.same_language_gap,
                   **kwargs}
        return cls(store, collection, embedder, **options)

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
        """Whether centring applies (``debias="centre"``, old name "on"): to collections holding two or more
        languages, unless the search is limited to one language."""
        if (DEBIAS_ALIASES.get(debias, debias) if debias else self.debias) != "centre":
            return False
        if filters is not None and filters.languages and len(set(filters.languages)) == 1:
            return False  # candidates all share one language: nothing to correct between languages
        self.means.refresh()
        return self.means.languages() >= 2  # one language: no cross-language bias to correct

    def search(self, query: str, k: int = 10, filters: SearchFilters | None = None, *, mode: str | None = None,
               score_threshold: float | None = None, mmr: bool = False, mmr_lambda: float = 0.5,
               debias: str | None = None, query_language: str | None = None) -> list[RetrievedChunk]:
        """The default path: candidates from the dense leg (and the BM25 leg in hybrid mode), ranked by cosine; in
        hybrid mode BM25 re-orders the query language's chunks within the ranks they hold (:meth:`_fuse`). Chunks
        below ``min_relevance`` are not relevant. ``debias="offsets"`` adds the best few chunks of each language as
        candidates and scores each against its language's background; ``debias="centre"`` takes the centring path
        for parallel collections."""
        if not isinstance(query, str) or not query.strip():
            raise RagError(f"the search query must be a non-empty string; got {query!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise RagError(f"k must be a positive integer; got {k!r}")
        mode = mode or self.mode
        if mode not in MODES:
            raise ConfigError(f"search mode {mode!r} is not valid; allowed: {MODES}")
        self._check_served()
        choice = DEBIAS_ALIASES.get(debias, debias) if debias else self.debias
        if choice not in DEBIAS:
            raise ConfigError(f"debias {debias!r} is not valid; allowed: {DEBIAS}")
        if choice == "centre":
            if not self._debias_on(choice, filters) or mode == "sparse":
                choice = "off"  # nothing to centre: the raw ranking
            else:
                return self._search_centred(query, k, filters, mode, score_threshold, mmr, mmr_lambda, choice,
                                            query_language)
        flt = filters.to_store() if filters else None
        q = self.embed_query(query)  # (dim,)
        if mode == "sparse":
            from lusifer_rag.store import SparseVector

            sv = self.sparse.encode_queries([query])[0]
            hits = self.store.query(self.collection, sparse=SparseVector(sv.indices, sv.values), mode="sparse",
                                    filter=flt, k=k if not mmr else max(self.fetch_k, 4 * k), exact=self.exact,
                                    payload=LEG_PAYLOAD)
            ranked = [_Candidate(h.id, _language_of(h), _doc_of(h), score=h.score) for h in hits]  # BM25 scores
            return self._finish(q, ranked, k, score_threshold, mmr, mmr_lambda, False)
        offsets = choice in ("offsets", "reference")
        if offsets:
            self.means.refresh()
        if score_threshold is None:  # what counts as relevant at all ("nothing relevant found" below it)
            score_threshold = self.min_relevance if choice != "offsets" else None
        rescored = offsets or self.sentence_weight > 0  # chunks below the first k by cosine can rise
        pool = max(self.fetch_k, 4 * k) if (rescored or mmr or mode == "hybrid") else k
        beam = self._leg_beams()[0]
        legs = [dict(dense=q, hnsw_ef=beam)]
        one_language = filters is not None and filters.languages and len(set(filters.languages)) == 1
        if offsets and self.per_language_k > 0 and self.means.languages() >= 2 and not one_language:
            # the best few of each language: a match in another language that the raw ranking buries under the
            # query's own language stays a candidate
            legs += [dict(dense=q, hnsw_ef=beam, k=max(self.per_language_k, k),
                          filter=both(flt, Filter(must={LANGUAGE_KEY: [lang]}))) for lang in self.means.means]
        if mode == "hybrid":
            from lusifer_rag.store import SparseVector

            sv = self.sparse.encode_queries([query])[0]
            legs.append(dict(sparse=SparseVector(sv.indices, sv.values), mode="sparse"))
        found = self.store.query_batch(self.collection, [
            {"filter": flt, "k": pool, **req, "exact": self.exact, "payload": LEG_PAYLOAD} for req in legs])
        dense_legs, sparse_hits = (found[:-1], found[-1]) if mode == "hybrid" else (found, [])
        cands: dict[str, _Candidate] = {}
        for hits in dense_legs:
            for h in hits:
                cands.setdefault(h.id, _candidate(h)).score = h.score  # q·d
        for h in sparse_hits:
            cands.setdefault(h.id, _candidate(h))
        sparse_order = [h.id for h in sparse_hits]
        if mode == "hybrid" or choice == "reference" or (self.same_language_gap and not offsets):
            query_language = query_language or self._query_language(query)
        if choice == "reference":
            self._fill_scores(cands, q, flt)
            if self.means.languages() >= 2 and not one_language:  # else no language gap to correct
                self._reference_scores(cands, q, query_language)
        elif offsets:
            self._offset_scores(cands, q)
        else:
            self._fill_scores(cands, q, flt)  # chunks only the BM25 leg found: their cosine
            if self.sentence_weight > 0:
                self._sentence_scores(cands, q)
            if self.same_language_gap:
                self._same_language_gap(cands, query_language)
        dense_order = sorted(cands, key=lambda i: -cands[i].score)
        if mode == "hybrid":
            order = self._fuse(cands, dense_order, sparse_order, query_language)
        else:
            order = dense_order
        return self._finish(q, [cands[i] for i in order], k, score_threshold, mmr, mmr_lambda, False)

    def _sentence_scores(self, cands: dict[str, _Candidate], q: np.ndarray) -> None:
        """Each candidate's score becomes (1 − b) · q·chunk + b · max over its sentences of q·sentence, from the
        sentence vectors stored at ingest for the highlights (no model call). A question matches the sentence that
        answers it better than the mean of a chunk that also holds headings, code and other subjects, most of all
        across languages. b = β · (1 − 1/n) for a chunk of n sentences: the more sentences a chunk's mean is spread
        over, the less it says about any one (a two-line UI string is its own best description; a page of a manual
        is not). On bench/retrieval_real.py's test split, cross-language MRR@10 handbook-np 0.345 → 0.579, PDF
        questions 0.067 → 0.203 (docs/retrieval.md). Chunks of one sentence, or stored without sentence vectors of
        this embedder, keep their cosine."""
        from lusifer_rag.ingest.sentence_vectors import PAYLOAD_KEY, decode

        ids = [i for i, c in cands.items() if np.isfinite(c.score)]
        for p in self.store.retrieve(self.collection, ids, with_payload=[PAYLOAD_KEY], with_vectors=False):
            got = decode((p.payload or {}).get(PAYLOAD_KEY), self.embedder)
            if got is not None and got[1] is not None and len(got[1]):
                beta = self._sentence_share(len(got[1]))
                c = cands[p.id]
                c.score = (1 - beta) * c.score + beta * float((got[1] @ q).max())

    def _same_language_gap(self, cands: dict[str, _Candidate], query_language: str) -> None:
        """Takes the gap off the score of every candidate in the query's language. A multilingual embedder scores a
        passage in the query's language higher than an equally relevant one in another, so on a collection where
        each document exists in one language a wrong own-language passage outranks the right one in another.
        One constant measured per embedder (e5-small: 0.0075; bench/retrieval_real.py, test split, cross-language
        MRR@10 udhr-np 0.550 -> 0.599, same-language unchanged). Offsets fit per language pair on labelled queries
        lose the handbook's same-language queries (bench/ranking_bound.py: 1.000 -> 0.706), and estimated from the
        collection (debias=offsets) they lose where a language holds one manual (docs/retrieval.md)."""
        for c in cands.values():
            if np.isfinite(c.score) and c.language == query_language:
                c.score -= self.same_language_gap

    def _sentence_share(self, n: int) -> float:
        """b, the best sentence's share in the score of a chunk of ``n`` sentences: β · (1 − 1/n)."""
        return self.sentence_weight * (1 - 1 / n)

    def _offset_scores(self, cands: dict[str, _Candidate], q: np.ndarray) -> None:
        """Every candidate's exact cosine; calibrated: less the query's background in the chunk's language (the mean
        cosine between this query and that language's chunks). A multilingual embedder scores unrelated texts in
        the query's language higher than unrelated texts in another; the background takes that gap off, so scores
        compare across languages and across queries: how far a chunk stands out from what an unrelated chunk of its
        language scores against this query (a relevance estimate; ~0 for unrelated chunks)."""
        ids = list(cands)
        vec_of = {p.id: p.vector for p in self.store.retrieve(self.collection, ids, with_payload=False,
                                                              with_vectors=True) if p.vector is not None}
        have = [i for i in ids if i in vec_of]
        for i in ids:
            cands[i].score = -np.inf  # deleted since the search found it: last
        if not have:
            return
        vecs = np.stack([vec_of[i] for i in have])  # (n, dim)
        scores = vecs @ q  # (n,)
        background = self.means.background(q)  # {lang: mean cosine to its chunks}
        if background:
            langs = self.means.languages_for([cands[i].language for i in have], vecs)
            scores = scores - np.array([background[lang] for lang in langs])
        for i, sc in zip(have, scores):
            cands[i].score = float(sc)

    def _reference_scores(self, cands: dict[str, _Candidate], q: np.ndarray, query_lang: str) -> None:
        """debias="reference": each candidate's cosine less the language gap its vector shows against the query's
        language, measured on a parallel reference text (:mod:`~lusifer_rag.rag.reference_offsets`): what the
        chunk would score if its language were the query's."""
        from .reference_offsets import ReferenceShifts, reference_offsets

        if self._shifts is None:
            self._shifts = ReferenceShifts.shared(self.embedder)
        basis = self._shifts.basis([*self.means.means, query_lang])  # (r, dim) the languages' directions
        ids = [i for i, c in cands.items() if np.isfinite(c.score)]
        if not len(basis) or not ids:
            return
        vec_of = {p.id: p.vector for p in self.store.retrieve(self.collection, ids, with_payload=False,
                                                              with_vectors=True) if p.vector is not None}
        ids = [i for i in ids if i in vec_of]
        if not ids:
            return
        origin = self._shifts.english_mean() + self._shifts.get([query_lang]).get(query_lang, 0.0)
        off = reference_offsets(q, np.stack([vec_of[i] for i in ids]), basis, origin, self.reference_weight)
        for i, o in zip(ids, off):
            cands[i].score = float(cands[i].score - o)

    def _search_centred(self, query: str, k: int, filters: SearchFilters | None, mode: str,
                        score_threshold: float | None, mmr: bool, mmr_lambda: float, debias: str,
                        query_language: str | None) -> list[RetrievedChunk]:
        """Centring (opt-in, ``debias="centre"``): for parallel collections, where every passage exists in every
        language; it finds more of a passage's translations there and loses on collections that are not parallel
        (bench/retrieval_real.py)."""
        flt = filters.to_store() if filters else None
        q = self.embed_query(query)  # (dim,)
        centred = self._debias_on(debias, filters) and mode != "sparse"
        pool = max(self.fetch_k, 4 * k) if (centred or mmr or mode == "hybrid") else k
        lang = query_language or (self._query_language(query) if (centred or mode == "hybrid") else "und")
        qc = self.means.centre_query(q, lang) if centred else q

        # every leg in one batch, ids + language only: the uncorrected query's neighbours and, when centred, the
        # centred query's (a same-language match that the centred query alone would not reach stays a candidate),
        # and the BM25 leg
        legs: list[tuple[str, dict]] = []
        if mode in ("dense", "hybrid"):
            raw_ef, centred_ef = self._leg_beams()
            legs.append(("raw", dict(dense=q, hnsw_ef=raw_ef)))
            if centred:
                legs.append(("centred", dict(dense=qc, hnsw_ef=centred_ef)))
        if mode in ("sparse", "hybrid"):
            from lusifer_rag.store import SparseVector

            sv = self.sparse.encode_queries([query])[0]
            legs.append(("sparse", dict(sparse=SparseVector(sv.indices, sv.values), mode="sparse")))
        found = dict(zip([name for name, _ in legs], self.store.query_batch(self.collection, [
            {**req, "filter": flt, "k": pool, "exact": self.exact, "payload": LEG_PAYLOAD} for _, req in legs])))

        cands: dict[str, _Candidate] = {}
        for name in ("centred", "raw", "sparse"):
            for h in found.get(name, []):
                c = cands.setdefault(h.id, _candidate(h))
                if name == "centred" or (name == "raw" and not centred) or mode == "sparse":
                    c.score = h.score  # qc·d (q·d uncentred); a sparse search reports its BM25 score
        raw_order = [h.id for h in found.get("raw", [])]
        sparse_order = [h.id for h in found.get("sparse", [])]
        if mode == "sparse":
            return self._finish(q, [cands[i] for i in sparse_order], k, score_threshold, mmr, mmr_lambda, False)
        if centred:
            self._centred_scores(cands, qc)
        else:
            self._fill_scores(cands, qc, flt)

        dense_ids = list(dict.fromkeys(raw_order + [h.id for h in found.get("centred", [])]))
        dense_order = sorted(dense_ids, key=lambda i: -cands[i].score) if centred else raw_order
        # the uncorrected ranking (ids and languages only; the same before and after re-scoring): the feedback's
        # same-language pivot and the exact-match guard read it
        uncorrected = self._fuse(cands, raw_order, sparse_order, lang) if centred and mode == "hybrid" else raw_order
        if centred and self.feedback_docs:
            sources = self._feedback_sources(cands, uncorrected, dense_order, lang)
            qc, more = self._feedback(cands, sources, qc, flt, pool, centred_ef)
            dense_ids = list(dict.fromkeys(dense_ids + more))
            dense_order = sorted(dense_ids, key=lambda i: -cands[i].score)
        if centred and self.translation_pool:
            self._group_translations(cands, dense_order)
            dense_order = sorted(dense_ids, key=lambda i: -cands[i].score)
        order = self._fuse(cands, dense_order, sparse_order, lang) if mode == "hybrid" else dense_order
        if centred:  # the exact-match guard: a sentence read off a chunk finds that chunk as without correction
            # only the uncorrected top k can move into the top k; a chunk holding the query's terms is in the
            # sparse leg's results whenever there is one
            lexical = set(sparse_order) if mode == "hybrid" else None
            top = [i for i in uncorrected[:k] if lexical is None or i in lexical]
            self._load_payloads(cands, top)
            held = exact_matches(self.sparse, query, [cands[i].payload.get("page_content", "") for i in top])
            order = keep_exact_matches(order, uncorrected, {i for i, yes in zip(top, held) if yes})
        return self._finish(q, [cands[i] for i in order], k, score_threshold, mmr, mmr_lambda,
                            centred)

    # ---- pieces ----------------------------------------------------------------------------------
    def _check_served(self) -> None:
        """Refuse to search once the collection is served by another embedder (a re-index switched it): its
        vectors and ours are not comparable. Checked at most once a second."""
        now = time.monotonic()
        if now - self._served_checked < 1.0:
            return
        meta = self.store.open_collection(self.collection).meta or {}
        self._served_checked = now
        have = meta.get("embedder_fingerprint")
        if have and have != self.embedder.fingerprint:
            raise StoreError(
                f"collection {self.collection!r} is now served by embedder {meta.get('embedder')!r} (fingerprint "
                f"{have}), this retriever embeds with {self.embedder.spec!r} ({self.embedder.fingerprint}); after a "
                f"re-index build the retriever again (LusiferRetriever.from_collection loads the collection's embedder)")

    def _leg_size(self) -> int:
        """The collection's point count (approximate), read again after a write or at most once a second."""
        count, version, when = self._size
        now, v = time.monotonic(), getattr(self.store, "write_version", None)
        if v is None or v != version or now - when >= 1.0:
            count = self.store.count(self.collection, exact=False)
            self._size = (count, v, now)
        return count

    def _leg_beams(self) -> tuple[int | None, int | None]:
        """(uncentred, centred) HNSW beams: given, or by the collection's size (LEG_BEAMS), which is read again after
        a write through the store and at most once a second otherwise."""
        if self.beams is not None:
            return self.beams
        count = self._leg_size()
        return next(b for bound, b in LEG_BEAMS if count < bound)

    @staticmethod
    def _query_language(text: str) -> str:
        from .language import detect_query_language

        return detect_query_language(text)

    def _centred_scores(self, cands: dict[str, _Candidate], qc: np.ndarray) -> None:
        """Every candidate's exact centred cosine cos(qc, d − μ), from its vector (ids -> vectors, no payloads).
        Scoring from the store's qc·d with one offset and one mean norm per language saves this fetch but lost
        cross-lingual recall (handbook recall@10 0.476 -> 0.417): ‖d − μ‖ varies too much within a language."""
        ids = list(cands)
        vec_of = {p.id: p.vector for p in self.store.retrieve(self.collection, ids, with_payload=False,
                                                              with_vectors=True) if p.vector is not None}
        have = [i for i in ids if i in vec_of]
        if have:
            scores, unit = self.means.centred_scores(qc, [cands[i].language for i in have],
                                                     np.stack([vec_of[i] for i in have]))  # (n,), (n, dim)
            langs = self.means.languages_for([cands[i].language for i in have], np.stack([vec_of[i] for i in have]))
            for i, sc, v, lang in zip(have, scores, unit, langs):
                cands[i].score, cands[i].centred, cands[i].centred_on = float(sc), v, lang
        for i in ids:  # deleted since the search found it: last
            if i not in vec_of:
                cands[i].score = -np.inf

    def _feedback_sources(self, cands: dict[str, _Candidate], uncorrected: list[str], dense_order: list[str],
                          query_lang: str) -> list[_Candidate]:
        """The chunks the feedback expands the query with: the best chunk of each of the corrected search's best
        ``feedback_docs`` documents; with ``same_language_pivot``, where the uncorrected search's best chunk is in
        the query's language, that chunk alone. Matching a query to its own language's version is what the model
        does best, and translations are each other's nearest neighbours, so on parallel collections the pivot finds
        the other versions (tune recall@10 handbook 0.573 -> 0.759, UDHR 0.831 -> 0.908, Django 0.928 -> 0.943).
        But where the query's language has other documents and not this passage, its best own-language document is
        a wrong one the language bias put first, and pivoting on it alone lost (the same sets with the query's own
        version left out: 0.468 -> 0.191, 0.780 -> 0.524, 0.904 -> 0.714); no rank-agreement rule measured kept
        the gain without that loss (docs/retrieval.md), so it is not the default."""
        if self.same_language_pivot:
            first = next((cands[i] for i in uncorrected if cands[i].centred is not None), None)
            if first is not None and first.language == query_lang:
                return [first]
        seen, top = set(), []
        for i in dense_order:
            c = cands[i]
            if c.centred is None or c.doc in seen:
                continue
            seen.add(c.doc)
            top.append(c)
            if len(top) >= self.feedback_docs:
                break
        return top

    def _feedback(self, cands: dict[str, _Candidate], sources: list[_Candidate], qc: np.ndarray, flt,
                  pool: int, hnsw_ef: int | None) -> tuple[np.ndarray, list[str]]:
        """Cross-language pseudo-relevance feedback: the centred query expanded by the centred vectors of
        ``sources`` (:meth:`_feedback_sources`) searches once more, and every candidate is re-scored against it.
        Returns (expanded query, ids that search found). Its own search is needed: re-scoring only the first
        candidates lost most of the gain on the handbook (tune recall@10 0.46 vs 0.50)."""
        if not sources:
            return qc, []
        qf = feedback_query(qc, np.stack([c.centred for c in sources]))  # (dim,)
        hits = self.store.query(self.collection, dense=qf, filter=flt, k=pool, exact=self.exact,
                                payload=LEG_PAYLOAD, hnsw_ef=hnsw_ef)
        new = {h.id: _candidate(h) for h in hits if h.id not in cands}
        if new:
            self._centred_scores(new, qf)  # their centred vectors; scored with the others below
            cands.update(new)
        for c in cands.values():
            if c.centred is not None:
                c.score = float(c.centred @ qf)
        return qf, [h.id for h in hits]

    def _group_translations(self, cands: dict[str, _Candidate], dense_order: list[str]) -> None:
        """Translation-group scoring of the best ``translation_pool`` documents (best chunk each): every chunk of
        such a document moves by its document's change, so its chunks keep their order and the documents outside
        the pool stay below (bench/retrieval_xling.py, tune split: recall@10 handbook 0.564 -> 0.573, UDHR
        0.807 -> 0.831, Django 0.882 -> 0.928, own-language share lower on all three)."""
        best: dict[str, _Candidate] = {}
        for i in dense_order:
            c = cands[i]
            if c.centred is not None and np.isfinite(c.score) and c.doc not in best:
                best[c.doc] = c
                if len(best) >= self.translation_pool:
                    break
        if len(best) < 2:
            return
        top = list(best.values())
        scores = np.array([c.score for c in top])  # (n,)
        grouped = translation_group_scores(scores, np.stack([c.centred for c in top]), [c.centred_on for c in top],
                                           list(self.means.means))
        shift = {c.doc: float(g - s) for c, g, s in zip(top, grouped, scores)}
        for c in cands.values():
            if c.doc in shift and np.isfinite(c.score):
                c.score += shift[c.doc]

    def _fill_scores(self, cands: dict[str, _Candidate], vec: np.ndarray, flt) -> None:
        """Candidates that the dense leg scoring ``vec`` did not return get vec·d from the store (brute force over
        their ids), so every candidate is ranked on the same dense score."""
        missing = [i for i, c in cands.items() if np.isnan(c.score)]
        if not missing:
            return
        ids_filter = dataclasses.replace(flt, ids=missing) if flt is not None else Filter(ids=missing)
        for h in self.store.query(self.collection, dense=vec, filter=ids_filter, k=len(missing), exact=True,
                                  payload=False):
            cands[h.id].score = h.score
        for i in missing:  # not found any more (deleted meanwhile): last
            if np.isnan(cands[i].score):
                cands[i].score = -np.inf

    def _load_payloads(self, cands: dict[str, _Candidate], ids: Sequence[str], vectors: bool = False) -> None:
        todo = [i for i in ids if cands[i].payload is None or (vectors and cands[i].vector is None)]
        for p in self.store.retrieve(self.collection, todo, with_vectors=vectors):
            cands[p.id].payload = p.payload
            if vectors:
                cands[p.id].vector = p.vector
        for i in todo:  # deleted since the search found it
            if cands[i].payload is None:
                cands[i].payload = {}

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

    def _finish(self, q: np.ndarray, ranked: list[_Candidate], k: int, score_threshold: float | None, mmr: bool,
                mmr_lambda: float, centred: bool) -> list[RetrievedChunk]:
        if not mmr:
            _rank_consistent_scores(ranked)
        if score_threshold is not None:
            ranked = [c for c in ranked if c.score >= score_threshold]
        if mmr:  # diversity needs the vectors of the pool (in the space the scores were measured in)
            pool = ranked[: max(self.fetch_k, 4 * k)]
            if centred:  # centred unit vectors, made when the candidates were scored
                for c in pool:
                    c.vector = c.centred
            else:
                self._load_payloads({c.id: c for c in pool}, [c.id for c in pool], vectors=True)
            pool = [c for c in pool if c.vector is not None]
            ranked = [c for c, _ in mmr_select(q, [(c, c.score) for c in pool], k, mmr_lambda)]
        top = ranked[:k]
        self._load_payloads({c.id: c for c in top}, [c.id for c in top])
        return [RetrievedChunk.from_payload(c.id, c.score, c.payload) for c in top]


def relevance_floor(settings, embedder) -> float | None:
    """The score below which nothing is relevant: the setting, else the embedder's measured floor (None: none)."""
    if settings.min_relevance is not None:
        return settings.min_relevance or None
    return getattr(embedder, "relevance_floor", None)


def _rank_consistent_scores(ranked: list[_Candidate]) -> None:
    """Scores that never rise down the ranking: a chunk that the hybrid fusion or the exact-match guard ranks above
    better-scoring ones reports the best score below it (its own cosine otherwise). With feedback, the chunk a
    sentence was read off often scores below its translations against the expanded query yet keeps rank 1; callers
    (the API, LangChain, score thresholds) read the scores as the ranking's. Over the whole ranking, so a chunk's
    score does not depend on k."""
    floor = -np.inf
    for c in reversed(ranked):
        if np.isfinite(c.score):
            floor = max(floor, c.score)
            c.score = floor


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

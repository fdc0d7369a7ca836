"""Language-bias correction ("centring") and the guards that keep it from hurting same-language search.

Multilingual embedders add a per-language direction to every vector, so on a mixed-language collection the
documents in the query's own language score too high. Each language's mean vector is estimated from the
collection itself; the query is centred on its language's mean and candidates are scored as
cos(P(q − μ_q), P(d − μ_lang(d))), where P removes the span of the centred language means (the collection's
language-identity subspace, rank ≤ L − 1): centring takes off each language's offset, P the directions along
which the languages differ at all. Then cross-language pseudo-relevance feedback (:func:`feedback_query`).

Centring alone breaks known-item search (a sentence the user remembers, in its own language): the correction
pulls the translations of that passage level with it, and an approximate search with the centred query can miss
it altogether. Three guards (measured in bench/retrieval_xling.py):

- candidates come from both the uncorrected and the centred query (and the sparse leg) before exact re-scoring;
- :func:`exact_matches`: a chunk that holds (nearly) every term of a sentence-long query keeps the rank the
  uncorrected search gives it, if that is better — decided from the texts, not from the collection's language mix;
- chunks whose language label is rare in the collection (short or mixed passages that the identifier labels
  'wuu', 'la', 'ms'…) are centred on the nearest well-represented language instead of on a mean of a few vectors;
  labels the identifier was unsure of (``metadata.language_confidence`` below UNSURE_CONFIDENCE) count neither
  towards a language's mean nor towards the languages present, so a one-language collection of short strings that
  the identifier half-guessed ('Enter a valid date.' -> 'la' at 0.09) stays uncorrected. Which well-represented
  language's mean a chunk is centred on does not change its score once the language subspace is removed
  (μ_a − μ_b lies in it), so a wrong label that has a mean costs nothing there.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from lusifer_rag.store import Filter

#: a label has a mean of its own with at least MIN_CHUNKS chunks or MIN_SHARE of the collection (and never
#: with fewer than FEWEST): the odd chunk that the identifier labels 'wuu' or 'la' is centred on its nearest language
MIN_CHUNKS = 20
MIN_SHARE = 0.02
FEWEST = 3
#: a language holding at least this share of the collection counts as "present" for debias=auto
PRESENT_SHARE = 0.05
#: a chunk label the identifier gave with less confidence than this is unsure (short strings, code, names): on the
#: Django catalogs and Python's argparse messages every English mislabel came below 0.4; 4.5% of the chunks of the
#: 12-language Django collection fall below (mixed recall@10 unchanged; the English-only collection is no longer
#: corrected: 0.984 -> 1.000 = raw, bench/retrieval_xling.py test split)
UNSURE_CONFIDENCE = 0.5
COUNT_TTL_S = 1.0  # writes by other processes are noticed this late at most
#: exact-match guard: queries with at least this many distinct terms, chunks holding this share of them
EXACT_MIN_TERMS = 8
EXACT_COVERAGE = 0.9
#: cross-language pseudo-relevance feedback: the centred query moves towards the centred vector of its best
#: FEEDBACK_DOCS documents, with this weight (bench/retrieval_xling.py, tune split), or of the one document in the
#: query's own language that the uncorrected search ranks first (the same-language pivot, opt-in: Retriever)
FEEDBACK_DOCS = 3
FEEDBACK_WEIGHT = 2.0
#: translation-group scoring (:func:`translation_group_scores`) over a corrected search's best this-many documents
TRANSLATION_POOL = 50


def is_sure(payload: dict | None) -> bool:
    """Whether a chunk's language label is one the identifier was sure of; chunks stored before the confidence was
    recorded count as sure (``lusifer-rag reindex`` to another embedder fills it in)."""
    conf = ((payload or {}).get("metadata") or {}).get("language_confidence")
    return conf is None or conf >= UNSURE_CONFIDENCE


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class LanguageMeans:
    """Per-language mean vectors of a collection, re-estimated when its point count changes.

    ``means`` holds the well-represented languages only (see MIN_CHUNKS / MIN_SHARE); ``shares`` every label's share
    of the collection counting only the chunks the identifier was sure of (:func:`is_sure`)."""

    def __init__(self, store, collection: str, sample_per_language: int = 2000):
        self.store, self.collection, self.sample = store, collection, sample_per_language
        self._lock = threading.Lock()
        self._count = -1
        self._version: int | None = None  # the store's write_version when the count was last read
        self._checked = -1.0  # monotonic time of that read
        self.means: dict[str, np.ndarray] = {}
        self.shares: dict[str, float] = {}
        self._codes: list[str] = []
        self._unit_means = np.zeros((0, 0), dtype=np.float32)  # (languages, dim) for nearest-language lookups
        self._basis = np.zeros((0, 0), dtype=np.float32)  # (r, dim) orthonormal: the language-identity subspace

    def refresh(self) -> None:
        """Re-estimate when the collection's point count changed. The count is read after every write through
        this store handle, else at most once a second (COUNT_TTL_S): one count per search held the store's lock
        and the interpreter's under concurrent searches (bench/ui_load.py)."""
        version = getattr(self.store, "write_version", None)
        now = time.monotonic()
        if version is not None and version == self._version and now - self._checked < COUNT_TTL_S:
            return
        count = self.store.count(self.collection, exact=False)  # segment sizes: cheap at any size
        if count == self._count:
            self._version, self._checked = version, now
            return  # the usual case, without the lock
        with self._lock:
            count = self.store.count(self.collection, exact=False)
            if count == self._count:
                return
            counts = self.store.facet(self.collection, "metadata.language")
            total = sum(counts.values()) or 1
            means, sure_counts = {}, {}
            for lang, n in counts.items():
                vecs, sure = [], []
                for p in self.store.iter_points(self.collection, Filter(must={"metadata.language": lang}),
                                                page=min(self.sample, 1024), with_vectors=True):
                    vecs.append(p.vector)
                    sure.append(is_sure(p.payload))
                    if len(vecs) >= self.sample:
                        break
                if not any(sure):
                    sure_counts[lang] = 0.0
                    continue
                vecs = np.stack(vecs)[np.array(sure)]  # (m, dim) the chunks the identifier was sure of
                n = sure_counts[lang] = n * float(np.mean(sure))  # estimated from the sample
                if n < FEWEST or (n < MIN_CHUNKS and n / total < MIN_SHARE):
                    continue  # too few for a mean of its own: its chunks are centred on their nearest language
                means[lang] = vecs.mean(axis=0).astype(np.float32)  # (dim,)
            self.means, self.shares = means, {k: v / total for k, v in sure_counts.items()}
            self._codes = list(means)
            self._unit_means = _unit(np.stack(list(means.values()))) if means else np.zeros((0, 0), np.float32)
            self._basis = language_subspace(np.stack(list(means.values()))) if len(means) >= 2 else \
                np.zeros((0, 0), np.float32)
            self._count = count
            self._version, self._checked = version, now

    def background(self, q: np.ndarray) -> dict[str, float]:
        """Per language with a mean: the mean cosine between the query and that language's chunks (μ_lang · q),
        what an unrelated chunk of that language scores against this query."""
        return {lang: float(mu @ q) for lang, mu in self.means.items()}

    def languages(self) -> int:
        """Languages holding at least PRESENT_SHARE of the collection."""
        return sum(1 for s in self.shares.values() if s >= PRESENT_SHARE)

    def nearest(self, vectors: np.ndarray) -> list[str]:
        """The language whose mean each vector (n, dim) is closest to."""
        if not self._codes:
            return ["und"] * len(vectors)
        return [self._codes[i] for i in np.argmax(vectors @ self._unit_means.T, axis=1)]

    def languages_for(self, labels: Sequence[str], vectors: np.ndarray) -> list[str]:
        """The language each chunk (labels, vectors (n, dim)) is centred on: its label where that has a mean, else
        the nearest language's ("und" when the collection has no means)."""
        rare = [i for i, lab in enumerate(labels) if lab not in self.means]
        fill = dict(zip(rare, self.nearest(vectors[rare]))) if rare else {}
        return [fill.get(i, lab) for i, lab in enumerate(labels)]

    def means_for(self, labels: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """(n, dim) mean to centre each chunk on: its language's, or for a label without a mean the nearest
        language's."""
        zero = np.zeros(vectors.shape[1], dtype=np.float32)
        return np.stack([self.means.get(lab, zero) for lab in self.languages_for(labels, vectors)])

    def project(self, x: np.ndarray) -> np.ndarray:
        """``x`` (..., dim) without its component in the language-identity subspace, unit norm."""
        if not len(self._basis):
            return _unit(x)
        return _unit(x - (x @ self._basis.T) @ self._basis)

    def centre_query(self, q: np.ndarray, lang: str) -> np.ndarray:
        mu = self.means.get(lang)
        return q if mu is None else self.project(q - mu)  # a language absent from the collection: left as it is

    def centred_scores(self, qc: np.ndarray, labels: Sequence[str], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,), centred unit vectors (n, dim)) of chunks against a centred query."""
        centred = self.project(vectors - self.means_for(labels, vectors))
        return centred @ qc, centred


def language_subspace(means: np.ndarray, rel_tol: float = 1e-4) -> np.ndarray:
    """(r, dim) orthonormal basis of the span of the language means (L, dim) minus their average: r ≤ L − 1
    directions that only tell languages apart. Training-free, from the collection's own means, so it follows the
    collection as it grows (cf. low-rank language-subspace removal, Xie et al. 2022). Measured on the tune split
    with centring and feedback: handbook recall@10 0.49 -> 0.54, UDHR 0.78 -> 0.80, Django 0.874 -> 0.884."""
    centred = (means - means.mean(axis=0)).astype(np.float64)  # (L, dim)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)  # vt (L, dim)
    keep = sv > rel_tol * max(float(sv[0]), 1e-12)
    return vt[keep].astype(np.float32)


def feedback_query(qc: np.ndarray, top: np.ndarray, weight: float = FEEDBACK_WEIGHT) -> np.ndarray:
    """Pseudo-relevance feedback in the centred space: unit(qc + weight · mean of ``top`` (m, dim)), the centred
    unit vectors of the best documents. A short query (a title, a question) is far from every passage; its best
    hit, a passage, is near that passage's translations, so the expanded query finds them in every language."""
    if len(top) == 0:
        return qc
    return _unit(qc + weight * top.mean(axis=0))


def translation_group_scores(scores: np.ndarray, vectors: np.ndarray, languages: Sequence[str],
                             collection_languages: Sequence[str]) -> np.ndarray:
    """Each document's score averaged over its likeliest translation group, (n,).

    ``scores`` (n,): the corrected scores of a search's best documents (best chunk each), ``vectors`` (n, dim): those
    chunks' centred unit vectors, ``languages`` (n,): the language each is centred on; ``collection_languages``: the
    collection's languages (those with a mean). For every document and every other collection language, the
    document of that language nearest to it among these n stands for its translation there; a language with none
    among them counts the lowest of the n scores. The group score is the mean over the collection's languages of
    the document's own score and those stand-ins'. Translations of a passage are each other's nearest neighbours far
    more reliably than a short query is near any of them (handbook tune split: from the right English section, the
    document-vector neighbours hold all 9 versions in their top 10 for every query, while the query's top document
    is right for 49%), so a passage whose versions all score well rises together, and a document that scores well
    in one language only (a leftover of the language bias) falls. No threshold and nothing fitted to a model: only
    ranks among the candidates and their own scores. Every group score is >= the lowest of the n, so documents
    outside the n stay below them."""
    n = len(scores)
    langs = list(dict.fromkeys(collection_languages))
    if n < 2 or len(langs) < 2:
        return np.asarray(scores, dtype=np.float64).copy()
    scores = np.asarray(scores, dtype=np.float64)
    own = np.asarray(languages)
    sim = vectors @ vectors.T  # (n, n) cosines between the documents' best chunks, centred
    floor = float(scores.min())
    total = scores.copy()  # each document's own score, counted once
    count = np.ones(n)
    for lang in langs:
        cols = np.flatnonzero(own == lang)
        other = own != lang  # (n,) documents for which `lang` is another language
        stand_in = scores[cols[np.argmax(sim[:, cols], axis=1)]] if len(cols) else np.full(n, floor)  # (n,)
        total += np.where(other, stand_in, 0.0)
        count += other
    return total / count


# ---- exact-match guard -------------------------------------------------------------------------------------
def coverage(query_terms: np.ndarray, chunk_terms: Sequence[np.ndarray]) -> np.ndarray:
    """Share of the query's distinct terms that each chunk holds, (n,)."""
    if len(query_terms) == 0:
        return np.zeros(len(chunk_terms))
    return np.array([np.isin(query_terms, t, assume_unique=True).mean() for t in chunk_terms])


def exact_matches(sparse_encoder, query: str, texts: Sequence[str]) -> list[bool]:
    """Which texts hold (nearly) every term of ``query`` — a sentence read off them. Queries shorter than
    EXACT_MIN_TERMS distinct terms never match: a few words are found in many chunks and mean little."""
    q_terms = sparse_encoder.term_sets([query])[0]
    if len(q_terms) < EXACT_MIN_TERMS or not texts:
        return [False] * len(texts)
    return (coverage(q_terms, sparse_encoder.term_sets(list(texts))) >= EXACT_COVERAGE).tolist()


def keep_exact_matches(corrected: list[str], uncorrected: list[str], exact: set[str]) -> list[str]:
    """``corrected`` (ids, best first) with each id of ``exact`` moved up to its rank in ``uncorrected`` where
    that is better; the other ids keep their corrected order in the remaining places."""
    if not exact:
        return corrected
    c_rank = {i: r for r, i in enumerate(corrected)}
    u_rank = {i: r for r, i in enumerate(uncorrected)}
    slots: dict[int, str] = {}
    for i in sorted(exact, key=lambda i: (min(u_rank.get(i, 1 << 30), c_rank.get(i, 1 << 30)), i)):
        r = min(u_rank.get(i, 1 << 30), c_rank.get(i, 1 << 30))
        while r in slots:
            r += 1
        slots[r] = i
    rest = iter(i for i in corrected if i not in exact)
    out: list[str] = []
    pending = sorted(slots.items())
    while pending or len(out) < len(corrected) + len(exact):
        if pending and pending[0][0] <= len(out):
            out.append(pending.pop(0)[1])
            continue
        nxt = next(rest, None)
        if nxt is None:
            out += [i for _, i in pending]
            break
        out.append(nxt)
    return out

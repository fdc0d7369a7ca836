"""What re-scoring can reach on the realistic sets of bench/retrieval_real.py (issue 32's targets).

The default scores a chunk with two dense signals, q·chunk and the best q·sentence, and fuses the BM25 leg. This
bench asks how far any way of weighting those signals could go, by giving each row something no search has:

- **oracle weight**: per query, the best rank over w = 0, 0.05, …, 1 and g = 0, 0.0075, 0.015, 0.03 of
  (1 − w)·q·chunk + w·max q·sentence − g·[the chunk is in the query's language], over every chunk (exact scores):
  each query gets the sentence weight and same-language gap that suit it, which nothing at search time tells;
- **oracle weight or BM25**: the better of that rank and the BM25 leg's alone, per query (a bound on any fusion
  of the two that keeps each leg's order);
- **per-pair offsets, fit on tune** (non-parallel sets): for each query language, one score offset per document
  language, fit by coordinate search to the tune queries' MRR@10 (labelled queries of this very collection, which
  no deployment has), applied to the test queries: the issue's per-language-pair offset at its best estimate;
- **per-pair offsets, fit on test**: the same fit on the test queries themselves (in-sample: it shows how much of a
  fit is overfitting, not a reachable figure).

Against those, the raw model (q·chunk) and the default (the product's search). Ranks as in retrieval_real.py: the
non-parallel sets rank documents (a document's best chunk), the PDF questions rank chunks (the first from a right
page). The PDF set has 1-3 questions per language and split, too few to fit offsets on.

    .venv/bin/python bench/ranking_bound.py [--sets handbook-np,udhr-np,django-np,pdf] [--split test]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import retrieval_real as R  # noqa: E402

from lusifer_rag.ingest.sentence_vectors import PAYLOAD_KEY, decode  # noqa: E402
from lusifer_rag.rag.retrieval import Retriever  # noqa: E402

WEIGHTS = np.linspace(0, 1, 21)
GAPS = (0.0, 0.0075, 0.015, 0.03)
OFFSETS = np.linspace(-0.05, 0.05, 41)
MISS = 10**6


class Signals:
    """Every chunk's vector and sentence vectors, and the unit each chunk counts for (a document or a page)."""

    def __init__(self, store, collection: str, emb):
        points = list(store.iter_points(collection, with_vectors=True))
        self.meta = [p.payload["metadata"] for p in points]
        self.language = np.array([m.get("language") for m in self.meta])
        self.vectors = np.stack([p.vector for p in points]).astype(np.float32)  # (chunks, dim)
        got = {p.id: decode((p.payload or {}).get(PAYLOAD_KEY), emb)
               for p in store.retrieve(collection, [p.id for p in points], with_payload=[PAYLOAD_KEY], with_vectors=False)}
        self.sentences = [g[1] if g is not None and g[1] is not None and len(g[1]) else None
                          for g in (got[p.id] for p in points)]

    def scores(self, qv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(q·chunk, best q·sentence; q·chunk where a chunk has no sentence vectors), each (chunks,)."""
        chunk = self.vectors @ qv
        best = np.array([c if s is None else (s @ qv).max() for c, s in zip(chunk, self.sentences)], dtype=np.float32)
        return chunk, best


def best_weighted_rank(sig: Signals, qv: np.ndarray, query_language: str, unit: np.ndarray, right: np.ndarray) -> int:
    """The oracle weight row: the best rank over WEIGHTS × GAPS."""
    chunk, best = sig.scores(qv)
    own = (sig.language == query_language).astype(np.float32)
    return min(rank_of_units((1 - w) * chunk + w * best - g * own, unit, right) for w in WEIGHTS for g in GAPS)


def rank_of_units(chunk_scores: np.ndarray, unit: np.ndarray, right: np.ndarray) -> int:
    """1-based rank of the best right unit, units scored by their best chunk; ``unit`` (chunks,) ids, ``right``
    (units,) bools."""
    best = np.full(len(right), -np.inf)
    np.maximum.at(best, unit, chunk_scores)
    return 1 + int((best > best[right].max()).sum())


def mrr(ranks) -> float:
    return float(np.mean([1 / r if r <= 10 else 0.0 for r in ranks])) if len(ranks) else 0.0


def top5(ranks) -> float:
    return float(np.mean([r <= 5 for r in ranks])) if len(ranks) else 0.0


def fit_offsets(scores: np.ndarray, right: np.ndarray, unit_lang: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Per document language, an offset added to its units' scores that maximises MRR@10 of these queries
    (coordinate search over OFFSETS). ``scores`` (queries, units), ``right`` (queries, units)."""
    langs = np.unique(unit_lang)
    offset = {lang: 0.0 for lang in langs}

    def value(off: dict) -> float:
        s = scores + np.array([off[lang] for lang in unit_lang])[None, :]
        target = np.where(right, s, -np.inf).max(1)
        return mrr(1 + (s > target[:, None]).sum(1))

    for _ in range(rounds):
        for lang in langs:
            offset[lang] = max(OFFSETS, key=lambda o: (value({**offset, lang: o}), -abs(o)))
    return np.array([offset[lang] for lang in unit_lang])


def non_parallel(name: str, emb, split: str) -> dict[str, dict[str, list[int]]]:
    s = R.load_set(name)
    store, src = R.build(s, emb, "e5-small")
    sig = Signals(store, "docs", emb)
    docs = sorted({R.doc_of(src, m["source"]) for m in sig.meta})
    unit = np.array([docs.index(R.doc_of(src, m["source"])) for m in sig.meta])
    unit_lang = np.array([d.split("|")[1] for d in docs])
    default, sparse = Retriever(store, "docs", emb), Retriever(store, "docs", emb, mode="sparse")

    def doc_rank(hits, q) -> int:
        ranked = list(dict.fromkeys(R.doc_of(src, h.source) for h in hits))
        return next((i + 1 for i, d in enumerate(ranked) if d in q.relevant), MISS)

    rows: dict[str, dict[str, list[int]]] = {}
    raw_doc_scores = {}
    for sp in dict.fromkeys(("tune", split)):
        queries = [q for q in s.queries if q.split == sp and q.kind == "topic"]
        qvecs = default.embed_queries([q.text for q in queries])
        raws, rights = [], []
        for q, qv in zip(queries, qvecs):
            right = np.array([d in q.relevant for d in docs])
            chunk = sig.vectors @ qv
            doc_raw = np.full(len(docs), -np.inf)
            np.maximum.at(doc_raw, unit, chunk)
            raws.append(doc_raw)
            rights.append(right)
            if sp != split:
                continue
            side = "same" if any(d.split("|")[1] == q.language for d in q.relevant) else "cross"
            weighted = best_weighted_rank(sig, qv, default._query_language(q.text), unit, right)
            bm25 = doc_rank(sparse.search(q.text, k=40, score_threshold=None), q)
            for row, r in (("raw dense", rank_of_units(chunk, unit, right)),
                           ("default", doc_rank(default.search(q.text, k=40), q)),
                           ("oracle weight", weighted), ("oracle weight or BM25", min(weighted, bm25))):
                rows.setdefault(row, {"same": [], "cross": []})[side].append(r)
        raw_doc_scores[sp] = (queries, np.stack(raws), np.stack(rights))
    # per-pair offsets: fit per query language on the tune queries (and, in-sample, on the test queries)
    queries, scores, rights = raw_doc_scores[split]
    for label, fit_split in (("per-pair offsets, fit on tune", "tune"), ("per-pair offsets, fit on test (in-sample)", split)):
        fq, fs, fr = raw_doc_scores[fit_split]
        rows[label] = {"same": [], "cross": []}
        for lang in sorted({q.language for q in queries}):
            fit = np.array([q.language == lang for q in fq])
            offset = fit_offsets(fs[fit], fr[fit], unit_lang) if fit.any() else np.zeros(len(docs))
            for i in np.flatnonzero([q.language == lang for q in queries]):
                s_ = scores[i] + offset
                r = 1 + int((s_ > s_[rights[i]].max()).sum())
                side = "same" if any(d.split("|")[1] == lang for d in queries[i].relevant) else "cross"
                rows[label][side].append(r)
    store.close()
    return rows


def pdf(emb, split: str) -> dict[str, dict[str, list[int]]]:
    import pdf_questions as P

    store, collection, src = P.build_collection(emb)
    sig = Signals(store, collection, emb)
    _, questions = P.pdf_set()
    questions = [q for q in questions if split == "all" or q.split == split]
    default, sparse = Retriever(store, collection, emb), Retriever(store, collection, emb, mode="sparse")
    qvecs = default.embed_queries([q.question for q in questions])
    unit = np.arange(len(sig.meta))
    rows: dict[str, dict[str, list[int]]] = {}
    for q, qv in zip(questions, qvecs):
        right = np.array([src.get(m["source"]) == q.pdf and m.get("page") is not None
                          and bool(set(q.pages) & set(range(m["page"], (m.get("page_end") or m["page"]) + 1)))
                          for m in sig.meta])
        chunk, _ = sig.scores(qv)
        weighted = best_weighted_rank(sig, qv, default._query_language(q.question), unit, right)
        bm25 = P.rank_of(sparse.search(q.question, k=200, score_threshold=None), q, src, k=200) or MISS
        side = "cross" if q.cross else "same"
        for row, r in (("raw dense", rank_of_units(chunk, unit, right)),
                       ("default", P.rank_of(default.search(q.question, k=10), q, src) or MISS),
                       ("oracle weight", weighted), ("oracle weight or BM25", min(weighted, bm25))):
            rows.setdefault(row, {"same": [], "cross": []})[side].append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="handbook-np,udhr-np,django-np,pdf")
    ap.add_argument("--split", default="test", choices=["tune", "test"])
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder

    emb = load_embedder("e5-small", device="cpu")
    header(f"ranking_bound: e5-small, split={args.split}")
    results = {name: (pdf(emb, args.split) if name == "pdf" else non_parallel(name, emb, args.split))
               for name in args.sets.split(",")}
    labels = list(dict.fromkeys(label for rows in results.values() for label in rows))
    print("\nMRR@10 same / cross-language [top-5 same / cross]")
    table([{"row": label, **{name: (f"{mrr(r[label]['same']):.3f} / {mrr(r[label]['cross']):.3f} "
                                     f"[{top5(r[label]['same']):.3f} / {top5(r[label]['cross']):.3f}]")
                             if label in r else "-" for name, r in results.items()}} for label in labels])


if __name__ == "__main__":
    main()

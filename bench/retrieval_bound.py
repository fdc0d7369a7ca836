"""What re-ranking can reach on a parallel set: how often each signal the embedder offers puts the right
translation group first.

On a parallel set every language version of a passage is relevant, so recall@10 ≥ 0.90 (issue 16's target) needs
the right group first for ≥ 0.90 of the queries (P@1, bench/retrieval_xling.py): with it first, translations find
each other (handed the right document, its neighbours hold nearly every version), with it second, at most one of
the top 10 slots is left for it. This prints the P@1 of every signal there is, over the stored vectors of the
retrieval_xling collections (exact scores, no approximate search):

- within one language: the product's uncorrected hybrid search over one language's documents (BM25 only helps in
  the query's own language), top document right: in the query's own language; averaged over the languages; and in the
  best language for each query (an oracle: nothing tells which language that is);
- best document overall: the raw and the centred (language-bias corrected: means and language subspace, as the
  product centres) dense cosine of the best chunk of each document;
- told the true translation groups (an oracle for grouping): a group scored by the mean of its versions' raw or
  centred cosines, by the sum over languages of 1/(k + rank within the language), or by the query-language
  version's z-score (within its language) plus the mean z-score of all versions.

Every row is either realizable (own language, best document) or given something no search has (the best language,
the true groups), so the largest figure bounds the P@1, and hence the recall@10, of any re-ranking built from these
scores. Run with another ``--embedder`` to see whether a model moves the bound.

    .venv/bin/python bench/retrieval_bound.py [--sets handbook,udhr,django] [--split test] [--embedder e5-small]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import retrieval_xling as RX  # noqa: E402
import xling_data as X  # noqa: E402

from lusifer_rag.rag.language_bias import LanguageMeans  # noqa: E402
from lusifer_rag.rag.retrieval import Retriever, SearchFilters  # noqa: E402


def doc_scores(chunk_scores: np.ndarray, chunk_doc: np.ndarray, n_docs: int) -> np.ndarray:
    """Best chunk's score per document, (n_docs,)."""
    out = np.full(n_docs, -np.inf)
    np.maximum.at(out, chunk_doc, chunk_scores)
    return out


def bound(s: X.XlingSet, store, src: dict, emb, split: str) -> dict[str, float]:
    points = list(store.iter_points("mixed", with_vectors=True))
    vectors = np.stack([p.vector for p in points]).astype(np.float32)  # (chunks, dim)
    labels = [p.payload["metadata"]["language"] for p in points]
    docs = sorted(set(src.values()))
    index = {d: i for i, d in enumerate(docs)}
    chunk_doc = np.array([index[src[p.payload["metadata"]["source"]]] for p in points])  # (chunks,)
    doc_lang = np.array([d.split("|")[1] for d in docs])
    doc_group = np.array([d.split("|")[0] for d in docs])
    groups, group_of = np.unique(doc_group, return_inverse=True)  # (groups,), (docs,)
    group_size = np.bincount(group_of)  # (groups,)
    in_lang = {lang: np.flatnonzero(doc_lang == lang) for lang in s.languages}

    means = LanguageMeans(store, "mixed")
    means.refresh()
    _, centred = means.centred_scores(np.zeros(vectors.shape[1], np.float32), labels, vectors)  # (chunks, dim)
    # the uncorrected hybrid ranking within each language's documents (by the set's languages, not the chunks'
    # labels: short strings get odd ones)
    retriever = Retriever(store, "mixed", emb, debias="off")
    only = {lang: SearchFilters(sources=[p for p, d in src.items() if d.split("|")[1] == lang]) for lang in s.languages}
    queries = [q for q in s.queries if q.split == split and q.kind == "topic"]
    qvecs = retriever.embed_queries([q.text for q in queries])  # (n, dim), one batch, cached for its searches

    def group_first(group_scores: np.ndarray, q) -> bool:
        return groups[int(np.argmax(group_scores))] == q.group

    def per_group(doc_values: np.ndarray, mean: bool = False) -> np.ndarray:
        total = np.zeros(len(groups))
        np.add.at(total, group_of, doc_values)
        return total / group_size if mean else total

    rows = defaultdict(list)
    for q, qv in zip(queries, qvecs):
        right = doc_group == q.group  # (docs,)
        top_in = {}
        for lang in s.languages:
            hits = retriever.search(q.text, k=1, filters=only[lang])
            top_in[lang] = bool(hits) and src[hits[0].source].split("|")[0] == q.group
        rows["within one language (hybrid): the query's own"].append(top_in[q.language])
        rows["within one language (hybrid): mean over languages"].append(np.mean(list(top_in.values())))
        rows["within one language (hybrid): the best language (oracle)"].append(any(top_in.values()))
        raw = doc_scores(vectors @ qv, chunk_doc, len(docs))  # (docs,)
        cen = doc_scores(centred @ means.centre_query(qv, q.language), chunk_doc, len(docs))
        rows["best document overall: raw cosine"].append(right[np.argmax(raw)])
        rows["best document overall: centred cosine"].append(right[np.argmax(cen)])
        rank, z = np.zeros(len(docs)), np.zeros(len(docs))
        for idx in in_lang.values():
            rank[idx[np.argsort(-raw[idx])]] = np.arange(1, len(idx) + 1)
            z[idx] = (raw[idx] - raw[idx].mean()) / (raw[idx].std() + 1e-12)
        rows["true groups (oracle): mean raw cosine"].append(group_first(per_group(raw, mean=True), q))
        rows["true groups (oracle): mean centred cosine"].append(group_first(per_group(cen, mean=True), q))
        for k in (0, 60):
            rows[f"true groups (oracle): sum of 1/({k} + rank in language)"].append(group_first(per_group(1 / (k + rank)), q))
        own_z = np.where(doc_lang == q.language, z, 0.0)
        rows["true groups (oracle): own z + mean z"].append(group_first(per_group(own_z) + per_group(z, mean=True), q))
    return {name: float(np.mean(v)) for name, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="handbook,udhr,django")
    ap.add_argument("--split", default="test", choices=["tune", "test"])
    ap.add_argument("--embedder", default="e5-small")
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder

    emb = load_embedder(args.embedder, device="cpu")
    header(f"retrieval_bound: {args.embedder}, split={args.split}")
    results = {}
    for name in args.sets.split(","):
        s = X.SETS[name](RX.LANGS[name])
        store, src = RX.build(s, emb, args.embedder.replace(":", "_").replace("/", "_"))
        results[name] = bound(s, store, src, emb, args.split)
        store.close()
    names = list(next(iter(results.values())))
    print("\nP@1: the right translation group first (topic queries)")
    table([{"signal": n, **{set_name: f"{r[n]:.3f}" for set_name, r in results.items()}} for n in names])


if __name__ == "__main__":
    main()

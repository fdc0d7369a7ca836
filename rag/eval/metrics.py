"""Retrieval metrics, TREC run files and BEIR qrels. Pure Python + numpy, small enough to check by hand.

Conventions (the ones trec_eval / pytrec_eval and BEIR use, so numbers are comparable):

- ``qrels[qid][doc_id] = grade``; a document is relevant when its grade is > 0.
- recall@k = |relevant ∩ top k| / |relevant|.
- nDCG@k: DCG = Σ_{i=1..k} grade_i / log2(i + 1) (linear gain, rank i from 1); ideal DCG is the DCG of
  the qrels' grades sorted high to low, so a query's nDCG is 1 exactly when its ranking is ideal.
- MRR@k = 1 / rank of the first relevant document within the top k, else 0.
- P@k = |relevant ∩ top k| / k.
- Queries without any relevant document are left out of every average (as trec_eval does).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from lusifer_rag.errors import ConfigError, IngestError

Qrels = dict[str, dict[str, int]]
#: one query's ranking, best first: [(doc_id, score), ...]
Ranking = list[tuple[str, float]]
Run = dict[str, Ranking]

DEFAULT_K = (1, 5, 10, 100)
TREC_DEPTH = 100


# ---- per-query metrics ----------------------------------------------------------------------------
def _relevant(qrels_q: Mapping[str, int]) -> set[str]:
    return {d for d, g in qrels_q.items() if g > 0}


def recall_at_k(ranked: Sequence[str], qrels_q: Mapping[str, int], k: int) -> float:
    rel = _relevant(qrels_q)
    if not rel:
        return float("nan")
    return len(rel.intersection(ranked[:k])) / len(rel)


def precision_at_k(ranked: Sequence[str], qrels_q: Mapping[str, int], k: int) -> float:
    rel = _relevant(qrels_q)
    return sum(d in rel for d in ranked[:k]) / k


def mrr_at_k(ranked: Sequence[str], qrels_q: Mapping[str, int], k: int = 10) -> float:
    rel = _relevant(qrels_q)
    for i, d in enumerate(ranked[:k]):
        if d in rel:
            return 1.0 / (i + 1)
    return 0.0


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))  # rank 1 -> 1/log2(2) = 1


def ndcg_at_k(ranked: Sequence[str], qrels_q: Mapping[str, int], k: int = 10) -> float:
    grades = sorted((g for g in qrels_q.values() if g > 0), reverse=True)[:k]
    if not grades:
        return float("nan")
    ideal = float(np.dot(grades, _discounts(len(grades))))
    gains = [max(qrels_q.get(d, 0), 0) for d in ranked[:k]]
    dcg = float(np.dot(gains, _discounts(len(gains)))) if gains else 0.0
    return dcg / ideal


def metric_names(k_values: Sequence[int] = DEFAULT_K) -> list[str]:
    return [f"recall@{k}" for k in k_values] + ["ndcg@10", "mrr@10", "p@1"]


def query_metrics(ranked: Sequence[str], qrels_q: Mapping[str, int], k_values: Sequence[int] = DEFAULT_K) -> dict[str, float]:
    """Every metric of one query (ranked doc ids, best first)."""
    out = {f"recall@{k}": recall_at_k(ranked, qrels_q, k) for k in k_values}
    out["ndcg@10"] = ndcg_at_k(ranked, qrels_q, 10)
    out["mrr@10"] = mrr_at_k(ranked, qrels_q, 10)
    out["p@1"] = precision_at_k(ranked, qrels_q, 1)
    return out


def mean_metrics(per_query: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over queries (NaN entries, i.e. no relevant document, are skipped); adds ``n_queries``."""
    rows = list(per_query)
    if not rows:
        return {"n_queries": 0}
    out: dict[str, float] = {}
    for name in rows[0]:
        vals = [r[name] for r in rows if not math.isnan(r[name])]
        out[name] = float(np.mean(vals)) if vals else float("nan")
    out["n_queries"] = len(rows)
    return out


def evaluate_run(run: Mapping[str, Ranking], qrels: Qrels, k_values: Sequence[int] = DEFAULT_K) -> dict[str, dict[str, float]]:
    """Per-query metrics for every query that has a relevant document (a query missing from the run scores 0)."""
    out = {}
    for qid, qrels_q in qrels.items():
        if not _relevant(qrels_q):
            continue
        out[qid] = query_metrics([d for d, _ in run.get(qid, [])], qrels_q, k_values)
    return out


# ---- language cells ---------------------------------------------------------------------------------
CELL_MODES = {
    "pooled": "the query's ranking over the whole corpus; only relevant documents in the cell's language count",
    "restricted": "the query's ranking keeping only documents in the cell's language (pairwise retrieval)",
}


def cell_metrics(run: Mapping[str, Ranking], qrels: Qrels, query_language: Mapping[str, str],
                 doc_language: Mapping[str, str], k_values: Sequence[int] = DEFAULT_K,
                 mode: str = "pooled") -> dict[str, dict[str, dict[str, float]]]:
    """Mean metrics per (query language × document language): ``cells[q_lang][d_lang] = {metric: value, n_queries}``.

    A query counts in cell (X, Y) when it is in language X and has a relevant document in language Y; its
    relevance judgments are cut to language Y. ``mode`` (see :data:`CELL_MODES`): "pooled" keeps the ranking
    over the whole corpus (so other languages crowding the top k lower the cell: language bias shows);
    "restricted" drops documents of other languages from the ranking first (X→Y retrieval on its own).
    """
    if mode not in CELL_MODES:
        raise ConfigError(f"cell mode {mode!r} is not known; allowed: {sorted(CELL_MODES)}")
    groups: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for qid, qrels_q in qrels.items():
        by_lang: dict[str, dict[str, int]] = defaultdict(dict)
        for d, g in qrels_q.items():
            if g > 0:
                by_lang[doc_language.get(d, "und")][d] = g
        ranked = [d for d, _ in run.get(qid, [])]
        q_lang = query_language.get(qid, "und")
        for d_lang, rel in by_lang.items():
            cut = ranked if mode == "pooled" else [d for d in ranked if doc_language.get(d, "und") == d_lang]
            groups[(q_lang, d_lang)].append(query_metrics(cut, rel, k_values))
    cells: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (q_lang, d_lang), rows in sorted(groups.items()):
        cells[q_lang][d_lang] = mean_metrics(rows)
    return dict(cells)


def language_gap(cells: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str = "recall@10") -> dict[str, float | None]:
    """Mean of ``metric`` over same-language cells (X, X) and over cross-language cells (X, Y≠X), and their
    difference (same − cross; positive = the embedder favours the query's own language). Cells weigh equally;
    None where there is no such cell (e.g. a cross-lingual-only benchmark has no same-language cells)."""
    same = [c[metric] for q, row in cells.items() for d, c in row.items() if q == d and metric in c]
    cross = [c[metric] for q, row in cells.items() for d, c in row.items() if q != d and metric in c]
    s = float(np.nanmean(same)) if same else None
    x = float(np.nanmean(cross)) if cross else None
    return {"metric": metric, "same_language": s, "cross_language": x,
            "gap": (s - x) if s is not None and x is not None else None,
            "n_same_cells": len(same), "n_cross_cells": len(cross)}


# ---- TREC run files and BEIR qrels -------------------------------------------------------------------
_WS = re.compile(r"\s")


def write_trec_run(path: str | os.PathLike, run: Mapping[str, Ranking], tag: str, depth: int = TREC_DEPTH) -> Path:
    """``qid Q0 docid rank score tag`` lines, ranks from 1, the top ``depth`` documents of each query.

    Scores are rounded to 8 decimals and made strictly decreasing within a query (a tie is nudged down by
    1e-8): trec_eval re-sorts by score, and this keeps its order identical to ours."""
    tag = _WS.sub("_", tag) or "run"
    path = Path(path)
    lines = []
    for qid, ranking in run.items():
        for name, value in (("query id", qid),) + tuple(("document id", d) for d, _ in ranking[:depth]):
            if not value or _WS.search(value):
                raise ConfigError(f"TREC run files need ids without whitespace; {name} {value!r} has some")
        prev = math.inf
        for rank, (doc, score) in enumerate(ranking[:depth], start=1):
            score = min(round(float(score), 8), round(prev - 1e-8, 8))
            prev = score
            lines.append(f"{qid} Q0 {doc} {rank} {score:.8f} {tag}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def read_trec_run(path: str | os.PathLike) -> Run:
    """{qid: [(doc_id, score), ...]} sorted by the file's rank column."""
    path = Path(path)
    rows: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise IngestError(f"{path}:{n}: a TREC run line has 6 fields 'qid Q0 docid rank score tag', got {len(parts)}: {line.strip()[:80]!r}")
            try:
                rows[parts[0]].append((int(parts[3]), parts[2], float(parts[4])))
            except ValueError:
                raise IngestError(f"{path}:{n}: rank must be an integer and score a number, got {parts[3]!r} {parts[4]!r}") from None
    return {q: [(d, s) for _, d, s in sorted(r)] for q, r in rows.items()}


def read_qrels(path: str | os.PathLike) -> Qrels:
    """BEIR ``qrels/<split>.tsv``: a header line, then ``query-id<TAB>corpus-id<TAB>score`` (integer grades)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"qrels file {path} does not exist")
    qrels: Qrels = defaultdict(dict)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if n == 1 and not _is_int(parts[-1]):
                continue  # header: query-id corpus-id score
            if len(parts) != 3:
                raise IngestError(f"{path}:{n}: expected 3 tab-separated fields 'query-id corpus-id score', got {len(parts)}: {line[:80]!r}")
            q, d, g = parts
            if not _is_int(g):
                raise IngestError(f"{path}:{n}: relevance score must be an integer, got {g!r}")
            qrels[q.strip()][d.strip()] = int(g)
    return dict(qrels)


def write_qrels(path: str | os.PathLike, qrels: Qrels) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore\n"] + [f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True

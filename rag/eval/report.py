"""Reports of evaluation results: JSON, a Markdown table, a heatmap PNG of the language matrix.

Every function takes :class:`~lusifer_rag.rag.eval.runner.EvalResult` objects or their ``to_dict()`` form, so a report
can be re-rendered later from the JSON file alone.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from lusifer_rag.errors import ConfigError

from .metrics import language_gap

ResultLike = Any  # EvalResult or its to_dict()

SUMMARY_METRICS = ("recall@1", "recall@10", "ndcg@10", "mrr@10", "p@1")


def _as_dict(r: ResultLike) -> dict[str, Any]:
    return r.to_dict() if hasattr(r, "to_dict") else r


def results_json(results: Sequence[ResultLike], per_query: bool = True) -> dict[str, Any]:
    dicts = [_as_dict(r) for r in results]
    if not per_query:
        dicts = [{k: v for k, v in d.items() if k != "per_query"} for d in dicts]
    return {"format": "lusifer-rag-eval/1", "datasets": sorted({d["dataset"] for d in dicts}), "results": dicts}


def write_json(path: str | os.PathLike, results: Sequence[ResultLike], per_query: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_json(results, per_query), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def read_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "results" not in data:
        raise ConfigError(f"{path} is not an evaluation report (no 'results')")
    return data["results"]


# ---- Markdown ----------------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def language_order(r: dict[str, Any]) -> list[str]:
    """The dataset's language order (UDHR: high to low resource), then any other language met in the cells."""
    order = list(r.get("info", {}).get("languages") or [])
    seen = set(r["cells"]) | {d for row in r["cells"].values() for d in row}
    return [l for l in order if l in seen] + sorted(seen - set(order))


def matrix(r: ResultLike, metric: str = "recall@10") -> tuple[list[str], list[list[float | None]]]:
    """(languages, rows[query language][document language]) of ``metric``; None for an empty cell."""
    r = _as_dict(r)
    langs = language_order(r)
    return langs, [[r["cells"].get(q, {}).get(d, {}).get(metric) for d in langs] for q in langs]


def _metric_names(r: dict[str, Any]) -> list[str]:
    return [f"recall@{k}" for k in r["k_values"]] + ["ndcg@10", "mrr@10", "p@1"]


def markdown_report(results: Sequence[ResultLike], metric: str = "recall@10") -> str:
    """Comparison table (several embedders), then per embedder: metrics by query language and the
    query-language × document-language ``metric`` matrix."""
    rs = [_as_dict(r) for r in results]
    if not rs:
        raise ConfigError("no results to report")
    out = []
    first = rs[0]
    ds = first.get("info", {}).get("dataset", {})
    out.append(f"# Retrieval evaluation: {first['dataset']}\n")
    if ds:
        out.append(f"{ds.get('documents')} documents, {ds.get('judged_queries')} judged queries, "
                   f"{len(ds.get('documents_per_language', {}))} document languages; matrix cells: "
                   f"**{first['cell_mode']}**"
                   + ("; a query's own-language documents are left out of its ranking" if ds.get("exclude_query_language") else "")
                   + ".\n")
    out.append("## Summary\n")
    header = ["embedder", "mode"] + list(SUMMARY_METRICS) + [f"same-lang {metric}", f"cross-lang {metric}", "gap"]
    rows = []
    for r in rs:
        g = language_gap(r["cells"], metric)  # recomputed: the stored gap is for recall@10
        rows.append([r["name"], r["mode"]] + [r["overall"].get(m) for m in SUMMARY_METRICS]
                    + [g.get("same_language"), g.get("cross_language"), g.get("gap")])
    out.append(_table(header, rows) + "\n")
    for r in rs:
        names = _metric_names(r)
        out.append(f"## {r['name']} ({r['mode']})\n")
        t = r.get("timings", {})
        if t:
            out.append(", ".join(f"{k} {_fmt(v, 2)}" for k, v in t.items()) + "\n")
        rows = [[lang, m.get("n_queries")] + [m.get(n) for n in names] for lang, m in _ordered(r, r["by_query_language"])]
        rows.append(["**all**", r["overall"].get("n_queries")] + [r["overall"].get(n) for n in names])
        out.append("### By query language\n")
        out.append(_table(["query lang", "queries"] + names, rows) + "\n")
        langs, mat = matrix(r, metric)
        out.append(f"### {metric}: query language (rows) × document language (columns)\n")
        body = [[q] + row + [_mean(row)] for q, row in zip(langs, mat)]
        cols = [_mean([row[j] for row in mat]) for j in range(len(langs))]
        body.append(["**mean**"] + cols + [_mean([v for row in mat for v in row])])
        out.append(_table(["q \\ d"] + langs + ["mean"], body) + "\n")
    return "\n".join(out)


def _ordered(r: dict[str, Any], by_lang: dict[str, Any]) -> list[tuple[str, Any]]:
    order = language_order(r)
    return sorted(by_lang.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def write_markdown(path: str | os.PathLike, results: Sequence[ResultLike], metric: str = "recall@10") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(results, metric), encoding="utf-8")
    return path


# ---- heatmap ------------------------------------------------------------------------------------------
def plot_heatmap(path: str | os.PathLike, results: Sequence[ResultLike], metric: str = "recall@10") -> Path:
    """One heatmap per result (rows: query language, columns: document language), values written in the cells."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        raise ConfigError("the heatmap needs matplotlib: pip install matplotlib") from None
    rs = [_as_dict(r) for r in results]
    if not rs:
        raise ConfigError("no results to plot")
    n_lang = max(len(language_order(r)) for r in rs)
    side = max(4.0, 0.45 * n_lang + 1.5)
    fig, axes = plt.subplots(1, len(rs), figsize=(side * len(rs) + 0.8, side), squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # empty cells grey
    im = None
    for ax, r in zip(axes[0], rs):
        langs, mat = matrix(r, metric)
        data = np.array([[np.nan if v is None else v for v in row] for row in mat], dtype=float)  # (n, n)
        im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap=cmap)
        ax.set_xticks(range(len(langs)), langs, rotation=90)
        ax.set_yticks(range(len(langs)), langs)
        ax.set_xlabel("document language")
        ax.set_ylabel("query language")
        mean = _mean([v for row in mat for v in row])
        ax.set_title(f"{r['name']} ({r['mode']})\n{metric}, mean {_fmt(mean)}", fontsize=9)
        if len(langs) <= 24:
            for i in range(len(langs)):
                for j in range(len(langs)):
                    if not np.isnan(data[i, j]):
                        ax.text(j, i, f"{data[i, j] * 100:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if data[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path

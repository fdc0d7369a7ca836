"""Shared bench helpers: header (machine, load, threads), tables, timers, multilingual UDHR texts."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
UDHR = ROOT / "tests" / "data" / "udhr"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benches never reach the hub


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, removed when the bench exits (models and stores written there run to hundreds
    of MB a run)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, True)
    return d


def set_threads(n: int | None) -> int:
    """Fix torch's intra-op threads (default: all cores) so runs are comparable; returns the count."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return torch.get_num_threads()


def header(title: str, **extra: Any) -> None:
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {title} ==")
    print(f"host: {platform.node()}  cpus: {os.cpu_count()}  loadavg(1/5/15 min): {load}")
    print(f"python {platform.python_version()}  torch {torch.__version__}  torch threads: {torch.get_num_threads()}"
          f"  cuda: {torch.cuda.is_available()}")
    for k, v in extra.items():
        print(f"{k}: {v}")
    print()


def table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Print rows (dicts with the same keys) as an aligned text table; floats get 3 significant decimals."""
    if not rows:
        return
    cols = list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 0.01 and v else f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    if title:
        print(title)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print()


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out = [0.0]
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - t0


class TimedCalls:
    """Wraps a callable and accumulates the wall time spent inside it (thread-safe enough: calls are serial)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def udhr_articles(lang: str) -> list[str]:
    arts = json.loads((UDHR / f"{lang}.json").read_text(encoding="utf-8"))["articles"]
    return [arts[k] for k in sorted(arts, key=int)]


def udhr_languages() -> list[str]:
    return sorted(p.stem for p in UDHR.glob("*.json"))


def mixed_texts(n: int, count_tokens: Callable[[list[str]], list[int]], lo: int = 10, hi: int = 400,
                langs: Sequence[str] | None = None, seed: int = 0) -> list[str]:
    """``n`` texts of mixed length (log-uniform token targets in [lo, hi]) cut from UDHR articles in many languages.

    Each language's articles are split into paragraphs then sentence-ish pieces; consecutive pieces are
    joined until a text reaches its target token count (wrapping around the language's text).
    """
    import random
    import re

    rng = random.Random(seed)
    langs = list(langs or udhr_languages())
    pieces: dict[str, list[str]] = {}
    for lang in langs:
        out: list[str] = []
        for art in udhr_articles(lang):
            for para in art.split("\n"):
                out += [s.strip() for s in re.split(r"(?<=[.!?。！？।؟])\s*", para) if s.strip()]
        pieces[lang] = out
    tok = {lang: count_tokens(p) for lang, p in pieces.items()}
    texts = []
    for i in range(n):
        lang = langs[i % len(langs)]
        target = int(round(lo * (hi / lo) ** rng.random()))
        ps, ts = pieces[lang], tok[lang]
        j = rng.randrange(len(ps))
        parts, total = [], 0
        while total < target and len(parts) < len(ps):
            parts.append(ps[j])
            total += ts[j]
            j = (j + 1) % len(ps)
        texts.append(" ".join(parts))
    return texts

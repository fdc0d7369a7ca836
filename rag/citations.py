"""Citation markers in answer text → the numbered sources they point to.

Accepted: ``[1]``, ``[1, 3]``, ``[2-4]`` (also en dash), ``[1,2-4]``, and the CJK full-width brackets
models write in Chinese/Japanese text (``【1】``, ``［1］``). Numbers that name no source are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex

from .types import Citation, RetrievedChunk

_NUM = r"\s*\d{1,4}\s*"
_ITEM = rf"{_NUM}(?:[-–—~]{_NUM})?"
_MARKER = regex.compile(rf"[\[［【](?:source\s*)?({_ITEM}(?:[,，、;]{_ITEM})*)[\]］】]", regex.IGNORECASE)
_RANGE = regex.compile(r"(\d+)\s*(?:[-–—~]\s*(\d+))?")


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """Source numbers (1-based) cited in ``text``, in order of first appearance, each once, all in 1..n_sources."""
    seen: dict[int, None] = {}
    for marker in _MARKER.finditer(text):
        for m in _RANGE.finditer(marker.group(1)):
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else lo
            if hi < lo:
                lo, hi = hi, lo
            # clip before expanding: "[1-100000]" must not build a huge range
            for n in range(max(lo, 1), min(hi, n_sources) + 1):
                seen.setdefault(n, None)
    return list(seen)


def parse_citations(text: str, sources: Sequence[RetrievedChunk]) -> list[Citation]:
    """``Citation(n, sources[n-1])`` for every valid number cited in ``text``."""
    return [Citation(number=n, chunk=sources[n - 1]) for n in cited_numbers(text, len(sources))]

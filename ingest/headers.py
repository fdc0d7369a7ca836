"""Running headers and footers: the lines a paged document repeats at the top or bottom of its pages.

A book PDF prints its title, the chapter's title and "12 / 248" on every page; left in, they land in every chunk
and every citation, and they cut sentences that run across a page break. A line is *running* when the same line,
digits aside (page numbers change), stands among the first or last few lines of many pages — counted in windows of
consecutive pages, because a chapter's title only repeats through its chapter — unless it is the only text of most of
the pages it stands on: a form or a log with one same-pattern line a page is content, not furniture. Lines that are
nothing but a page number ("12", "- 12 -", "xii", "12 / 248", "Page 12 of 248") go wherever they stand at a page's edge.

Works on the raw page texts (one visual line per line), before lines are joined into paragraphs.
"""

from __future__ import annotations

from collections import Counter

import regex

EDGE_LINES = 2  # lines looked at at the top and at the bottom of a page
WINDOW = 12  # pages in which a line must repeat to be running
MIN_REPEATS = 3  # ... at least this many times, and on at least MIN_SHARE of the window's pages
MIN_SHARE = 0.3
MAX_CHARS = 120  # longer lines are text, not furniture

_DIGITS = regex.compile(r"\d+")
_SPACES = regex.compile(r"\s+")
_PAGE_NUMBER = regex.compile(
    r"^[\s\-–—|·•()\[\]]*(?:(?:page|seite|página|pagina|страница|p\.)\s*)?(?:\d{1,4}|[ivxlcdm]{1,7})"
    r"(?:\s*(?:/|of|de|von|из|sur|di)\s*\d{1,4})?[\s\-–—|·•()\[\]]*$", regex.IGNORECASE)


def _key(line: str) -> str:
    return _SPACES.sub(" ", _DIGITS.sub("#", line.strip().casefold()))


def _edges(lines: list[str]) -> list[int]:
    """Indices of the first and last EDGE_LINES non-empty lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    n = EDGE_LINES if len(filled) > 2 * EDGE_LINES else 1  # a short page: its first and last line only
    return sorted(set(filled[:n] + filled[-n:]))


def strip_running_lines(pages: list[str]) -> list[str]:
    """The pages without their running headers, footers and page-number lines (page count unchanged)."""
    if len(pages) < MIN_REPEATS:
        return [_drop_page_numbers(p) for p in pages]
    split = [p.split("\n") for p in pages]
    edge_keys = [{_key(lines[i]) for i in _edges(lines) if len(lines[i].strip()) <= MAX_CHARS} for lines in split]
    sole = [_sole_key(lines) for lines in split]  # the page's only line of text, page numbers aside
    running: list[set[str]] = [set() for _ in pages]
    last = max(0, len(pages) - WINDOW)
    for start in sorted(set(range(0, last + 1, WINDOW // 2)) | {last}):
        window = range(start, min(start + WINDOW, len(pages)))
        counts = Counter(k for i in window for k in edge_keys[i])
        need = max(MIN_REPEATS, MIN_SHARE * len(window))
        alone = Counter(sole[i] for i in window if sole[i] is not None)
        hot = {k for k, n in counts.items()
               if n >= need and any(ch.isalnum() or ch == "#" for ch in k) and 2 * alone[k] < n}
        for i in window:
            running[i] |= hot & edge_keys[i]
    out = []
    for lines, hot in zip(split, running):
        edges = set(_edges(lines))
        kept = [line for i, line in enumerate(lines)
                if not (i in edges and (_key(line) in hot or _PAGE_NUMBER.match(line)))]
        out.append("\n".join(kept))
    return out


def _sole_key(lines: list[str]) -> str | None:
    text = [line for line in lines if line.strip() and not _PAGE_NUMBER.match(line)]
    return _key(text[0]) if len(text) == 1 else None


def _drop_page_numbers(page: str) -> str:
    lines = page.split("\n")
    edges = set(_edges(lines))
    return "\n".join(line for i, line in enumerate(lines) if not (i in edges and _PAGE_NUMBER.match(line)))

"""Where an ingest is: progress bars on a terminal, plain lines in a log."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import FileResult, IngestReport


MODES = ("bar", "plain", "off")


class Progress:
    """Where an ingest is. On a terminal, tqdm bars (files with ETA; chunks and tokens/s embedded so far, read from
    ``report``; the page a long document is at). Otherwise (a batch job's log, a pipe) plain lines on stderr: one per
    file, and one every PLAIN_EVERY seconds for a long document ("big.pdf: page 120/300"). LUSIFER_RAG_PROGRESS
    (bar, plain, off) overrides."""

    PLAIN_EVERY = 15.0

    def __init__(self, total: int, mode: str | None = None, report: "IngestReport | None" = None):
        mode = mode or os.environ.get("LUSIFER_RAG_PROGRESS") or ("bar" if sys.stderr.isatty() else "plain")
        if mode not in MODES:
            from lusifer_rag.errors import ConfigError

            raise ConfigError(f"progress mode {mode!r} is not known; allowed: {', '.join(MODES)}")
        self.mode, self.total, self.done, self.t0 = mode, total, 0, time.time()
        if report is None:
            from .pipeline import IngestReport

            report = IngestReport("")
        self.report = report
        self.bar = None
        self.on_page = None  # also tell a caller (the web app's progress bar): on_page(source, done, total)
        self._lock = threading.Lock()
        self._last_page_line: dict[str, float] = {}
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="file", dynamic_ncols=True)

    def status_line(self, result: "FileResult") -> str:
        rate = self.report.embedded_tokens / max(time.time() - self.t0, 1e-9)
        return (f"{result.status} {Path(result.source).name[:30]} | {self.report.embedded_chunks:,} chunks | "
                f"{rate:,.0f} tok/s")

    def file_done(self, result: "FileResult") -> None:
        with self._lock:
            self.done += 1
            self._last_page_line.pop(result.source, None)
            if self.bar is not None:
                self.bar.set_postfix_str(self.status_line(result))
                self.bar.update(1)
            elif self.mode == "plain":
                extra = f", {result.ocr_pages} pages OCR'd" if result.ocr_pages else ""
                if result.empty_pages:
                    extra += f", {len(result.empty_pages)} page(s) without text: " + ", ".join(
                        f"p.{n} ({why})" for n, why in result.empty_pages[:5]) + ("…" if len(result.empty_pages) > 5 else "")
                print(f"[{self.done}/{self.total}] {result.status} {result.source}"
                      + (f" ({result.chunks} chunks{extra})" if result.status in ("ingested", "replaced") else "")
                      + (f" ({result.reason}: {result.message})" if result.reason else ""), file=sys.stderr, flush=True)

    def page_done(self, source: str, done: int, total: int) -> None:
        """A paged document's progress (called from loader and OCR threads too)."""
        if self.on_page is not None:
            self.on_page(source, done, total)
        if total < 2:
            return
        with self._lock:
            if self.bar is not None:
                self.bar.set_postfix_str(f"{Path(source).name[:30]} p. {done}/{total}")
            elif self.mode == "plain":
                now = time.time()
                last = self._last_page_line.setdefault(source, now)
                if now - last >= self.PLAIN_EVERY:
                    self._last_page_line[source] = now
                    print(f"[{self.done}/{self.total}] {source}: page {done}/{total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

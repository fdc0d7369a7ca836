"""Task functions for the ingest worker pool tests; they live in a module so worker processes can import them."""

from __future__ import annotations

import os

from lusifer_rag.ingest.pipeline import FileResult


def init(_: object) -> None:
    pass


def crash_on_marker(plan) -> tuple[FileResult, list]:
    """Kills its worker process (as a parser segfault or the OOM killer would) for files named *crash*."""
    if "crash" in os.path.basename(plan.source):
        os._exit(139)
    return FileResult(plan.source, "ingested", chunks=1), [(plan.source, {"pid": os.getpid()})]


def niceness(plan) -> tuple[FileResult, list]:
    """The worker's scheduling niceness (after the real pool initializer ran)."""
    return FileResult(plan.source, "ingested"), [("nice", {"nice": os.nice(0)})]


def allocate_on_marker(plan) -> tuple[FileResult, list]:
    """Files named *huge* try to allocate 4 GB (as a decompression bomb would), the others nothing."""
    if "huge" in os.path.basename(plan.source):
        block = bytearray(4 << 30)
        return FileResult(plan.source, "ingested", chunks=len(block)), []
    return FileResult(plan.source, "ingested", chunks=1), []

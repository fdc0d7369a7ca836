"""An upload's ingest as it goes (``POST /api/v1/documents`` with ``progress=true``): NDJSON, one line per event.

``{"done", "total", "file": FileResult, "embedded": chunks}`` as each file is done; ``{"page": [source, done,
total]}`` for a long document (at most once a second per document); then ``{"report": IngestReport.to_json()}``,
or ``{"error": message, "status": HTTP status}`` if the ingest failed (the response's own status is 200 by then).
``lusifer-rag ingest`` reads it (lusifer_rag/frontdoor.py) to show the progress a local ingest shows. The ingest
runs in its own thread, so a client that goes away does not stop it (what it wrote stays; it can be cancelled with
``POST /api/v1/ingest/cancel``).
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

from lusifer_rag.errors import AccessError, BusyError, LusiferRagError, NotFoundError

PAGE_EVERY_S = 1.0
log = logging.getLogger(__name__)


def status_of(e: LusiferRagError) -> int:
    """The HTTP status the API gives a typed error (as app/server.py's handlers do)."""
    if isinstance(e, AccessError):
        return e.status
    return 503 if isinstance(e, BusyError) else 404 if isinstance(e, NotFoundError) else 400


def streamed_ingest(service, pairs: list[tuple[str, Path]], tmp: Path, *, on_conflict: str, principal,
                    paths_as_sources: bool = False):
    """A StreamingResponse of the ingest of ``pairs`` ((name, path) under ``tmp``) into ``service``'s collection;
    ``tmp`` is removed when the ingest ends."""
    from starlette.responses import StreamingResponse

    events: queue.Queue = queue.Queue()
    last_page: dict[str, float] = {}
    ing = None

    def on_progress(update) -> None:
        live = getattr(ing, "live", None) or {}
        events.put({"done": update.done, "total": update.total, "file": asdict(update.result),
                    "embedded": live.get("embedded", 0)})

    def on_page(source: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last_page.get(source, 0.0) >= PAGE_EVERY_S:
            last_page[source] = now
            events.put({"page": [source, done, total]})

    def run() -> None:
        nonlocal ing
        try:
            service.check()
            ing = service.ingestor()
            ing.on_page = on_page  # as the web UI's ingest does; the ingest lock keeps one ingest at a time
            report = service.ingest(pairs, on_progress, on_conflict=on_conflict, principal=principal,
                                    paths_as_sources=paths_as_sources)
            events.put({"report": report.to_json()})
        except LusiferRagError as e:
            events.put({"error": str(e), "status": status_of(e)})
        except Exception as e:  # the client still gets an answer; the details go to the server's log
            log.exception("streamed ingest failed")
            events.put({"error": f"the ingest failed on the server ({type(e).__name__}); see its log", "status": 500})
        finally:
            if ing is not None and ing.on_page is on_page:
                ing.on_page = None
            shutil.rmtree(tmp, ignore_errors=True)
            events.put(None)

    threading.Thread(target=run, name="lusifer-api-ingest", daemon=True).start()

    def lines():
        while (event := events.get()) is not None:
            yield json.dumps(event, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

"""Helpers for the web-app tests: a real app (real embedder, embedded store in a tmp dir) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

from lusifer_rag.runtime import open_store_from
from lusifer_rag.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_settings(tmp: Path, collection: str = "docs", **overrides) -> Settings:
    # env={} so that a developer's LUSIFER_RAG_* variables (an LLM server, ...) do not leak into the tests
    return Settings.from_env(env={}, store=str(tmp / "store"), data_dir=tmp, collection=collection, **overrides)


@dataclass
class RunningApp:
    service: object  # the default collection's RagService
    demo: object
    url: str
    server: object = None
    workspace: object = None


@contextlib.contextmanager
def running_app(settings: Settings, embedder, *, store=None, options=None, sample: bool = False):
    """Start the app in this process; yield RunningApp; close server (and the store if opened here). ``sample``:
    the sample corpus ingested into the default collection (the tests' searches expect it there)."""
    from lusifer_rag.app.access import LOCAL
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.app.ui import build_app, launch
    from lusifer_rag.app.workspace import Workspace

    own_store = store is None
    store = store if store is not None else open_store_from(settings)
    try:
        options = options or AppOptions(ingest_workers=1)
        ws = Workspace(settings, store, embedder=embedder, options=options)
        service = ws.service()
        if sample:
            report = service.ingest_sample(principal=LOCAL)
            assert not report.by_status("failed"), report.to_json()["failed"]
        demo = build_app(ws)
        port = free_port()
        server = launch(demo, ws, port=port, block=False, quiet=True)
        try:
            yield RunningApp(service, demo, f"http://127.0.0.1:{port}/", server, ws)
        finally:
            server.close()
            demo.close()
    finally:
        if own_store:
            store.close()

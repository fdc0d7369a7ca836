"""Shared wiring for the CLI, the web app and batch jobs: one store handle, one embedder per spec per process."""

from __future__ import annotations

import threading
from typing import Any

from .errors import StoreError
from .settings import Settings

_lock = threading.Lock()
_embedders: dict[tuple, Any] = {}


def open_store_from(settings: Settings):
    from .store import open_store

    return open_store(settings.store_location, api_key=settings.qdrant_api_key)


def get_embedder(settings: Settings, spec: str | None = None):
    """The process-wide embedder for ``spec`` (default: settings.embedder), built once."""
    from lusifer_rag.embedder import load_embedder

    spec = spec or settings.embedder
    key = (spec, settings.device, settings.dtype)
    with _lock:
        if key not in _embedders:
            _embedders[key] = load_embedder(
                spec, device=settings.device, dtype=settings.dtype, cache_dir=settings.cache_dir,
                max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size)
        emb = _embedders[key]
        # the queue settings of the process that asked first (one queue per embedder object)
        emb.queue_enabled, emb.queue_wait_ms = settings.embed_queue, settings.embed_queue_wait_ms
        emb.queue_limit = settings.embed_queue_limit
        return emb


def collection_embedder(store, collection: str, settings: Settings, explicit_spec: str | None = None):
    """The embedder a collection was built with (it remembers its spec), checked against its fingerprint."""
    if collection not in store.list_collections():
        raise StoreError(f"no collection {collection!r} in {settings.store_location}; "
                         f"existing: {sorted(store.list_collections()) or 'none'}. Ingest documents first.")
    meta = store.open_collection(collection).meta or {}
    emb = get_embedder(settings, explicit_spec or meta.get("embedder") or settings.embedder)
    # refuses a different embedder with a message naming both
    store.open_collection(collection, expect={"embedder": emb.spec, "embedder_fingerprint": emb.fingerprint,
                                              "dim": emb.dim})
    return emb

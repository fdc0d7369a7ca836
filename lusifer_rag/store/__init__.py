"""Vector store: one small interface (``VectorStore``), two backends chosen by location.

``open_store("/some/dir")`` -> embedded Qdrant Edge (default); ``open_store("http://host:6333", api_key=...)``
-> Qdrant server; ``open_store(":memory:")`` / ``open_store("qdrant-local:/dir")`` -> qdrant-client local mode.
"""

from .base import (
    DEFAULT_PAYLOAD_INDEXES,
    DEFAULT_RRF_K,
    CollectionSpec,
    Hit,
    Point,
    SparseVector,
    VectorStore,
    check_compatible,
    generation_name,
    is_generation,
    open_store,
    parse_location,
    register_backend,
)
from .filters import Filter, both

# the embedded backend registers itself on import ("" = a plain directory, and "edge:")
from . import edge as _edge  # noqa: E402,F401


def _server_opener(func: str):
    """qdrant-client is imported only when a server/local-mode location is opened (its import takes seconds)."""

    def opener(target: str, **kwargs):
        from . import server

        return getattr(server, func)(target, **kwargs)

    return opener


register_backend("http", "https")(_server_opener("open_remote"))
register_backend(":memory:", "qdrant-local")(_server_opener("open_local"))

__all__ = [
    "DEFAULT_PAYLOAD_INDEXES",
    "DEFAULT_RRF_K",
    "CollectionSpec",
    "Filter",
    "both",
    "Hit",
    "Point",
    "SparseVector",
    "VectorStore",
    "check_compatible",
    "generation_name",
    "is_generation",
    "open_store",
    "parse_location",
    "register_backend",
]

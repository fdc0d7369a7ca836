"""Collection settings for large bulk loads: shards, replication, on-disk vectors, quantization, deferred HNSW.

A new collection is created with the HNSW graph build deferred (``hnsw m=0``, Qdrant's recommended bulk-load
setting, or ``indexing_threshold=0``); ``finish_bulk_load`` restores the index once every point is written, so the
server builds each segment's graph once instead of re-linking it on every batch. A re-run after a killed job
finds the collection still deferred and restores it at its own end. Only a collection created by the job is
deferred: re-indexing an existing, already indexed collection to add a few documents would cost more than it saves.

How each backend applies this is a small registry keyed by the store class (``register_index_tuner``): the Qdrant
server (and its qdrant-client local-mode stand-in, which accepts and ignores index settings) updates the
collection; the embedded Qdrant Edge store builds its indexes only in ``optimize()``, which the job calls at its end,
so deferral is implicit there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from lusifer_rag.errors import ConfigError
from lusifer_rag.store import CollectionSpec, VectorStore

DEFER_MODES = ("m0", "threshold0", "off")
DEFAULT_INDEXING_THRESHOLD_KB = 20_000  # Qdrant's default


@dataclass(frozen=True)
class ScaleSettings:
    """How a collection is laid out for scale. ``None`` leaves a setting to the server's default.

    - ``shards``: shard count (server; ~2-4 per node, at least the number of writers).
    - ``replication_factor``: copies of each shard (>= 2 on a 3+ node cluster).
    - ``on_disk``: original vectors, HNSW graph and payload memory-mapped from disk.
    - ``quantization``: "int8" (4x smaller) or "binary" (32x) kept in RAM; queries rescore with the originals,
      fetching ``oversampling`` x k candidates.
    - ``hnsw_m``: HNSW links per node once indexed.
    - ``defer_index``: "m0" (build no graph during the load), "threshold0" (index no segment during the load) or "off".
    - ``writers``: parallel upsert streams to a server (default: one per shard).
    """

    shards: int | None = None
    replication_factor: int | None = None
    on_disk: bool = False
    quantization: str | None = None
    oversampling: float = 2.0
    hnsw_m: int = 16
    defer_index: str = "m0"
    writers: int | None = None

    def __post_init__(self) -> None:
        if self.defer_index not in DEFER_MODES:
            raise ConfigError(f"defer_index {self.defer_index!r} is not supported; allowed: {DEFER_MODES}")
        for name in ("shards", "replication_factor", "writers"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive int or None; got {v!r}")
        if isinstance(self.hnsw_m, bool) or not isinstance(self.hnsw_m, int) or self.hnsw_m < 1:
            raise ConfigError(f"hnsw_m must be a positive int (the links per node once indexed); got {self.hnsw_m!r}")

    def creation_spec(self, dim: int, meta: dict[str, Any], defer: bool = True) -> CollectionSpec:
        """The spec a bulk load creates the collection with (index build deferred as configured, if ``defer``)."""
        mode = self.defer_index if defer else "off"
        return CollectionSpec(
            dim=dim, meta=meta, quantization=self.quantization, oversampling=self.oversampling, on_disk=self.on_disk,
            hnsw_m=0 if mode == "m0" else self.hnsw_m,
            indexing_threshold_kb=0 if mode == "threshold0" else None,
            shard_number=self.shards, replication_factor=self.replication_factor,
        )

    def indexed_spec(self, spec: CollectionSpec) -> CollectionSpec:
        """``spec`` with the index restored."""
        return replace(spec, hnsw_m=spec.hnsw_m or self.hnsw_m,
                       indexing_threshold_kb=None if spec.indexing_threshold_kb == 0 else spec.indexing_threshold_kb)

    def writer_count(self, spec: CollectionSpec) -> int:
        return self.writers or spec.shard_number or self.shards or 1


def is_deferred(spec: CollectionSpec) -> bool:
    return spec.hnsw_m == 0 or spec.indexing_threshold_kb == 0


# ---- backends ---------------------------------------------------------------------------------------------
IndexTuner = Callable[[VectorStore, str, CollectionSpec, CollectionSpec], None]  # (store, name, old, new)
_TUNERS: dict[str, IndexTuner] = {}


def register_index_tuner(*store_classes: str) -> Callable[[IndexTuner], IndexTuner]:
    """Register how a store class applies a changed index config (by class name: no backend import needed)."""

    def deco(fn: IndexTuner) -> IndexTuner:
        for c in store_classes:
            _TUNERS[c] = fn
        return fn

    return deco


@register_index_tuner("ServerStore")
def _tune_server(store: VectorStore, name: str, old: CollectionSpec, new: CollectionSpec) -> None:
    from qdrant_client import models

    from lusifer_rag.store.server import META_KEY

    threshold = new.indexing_threshold_kb if new.indexing_threshold_kb is not None else DEFAULT_INDEXING_THRESHOLD_KB
    with store._serial:  # noqa: SLF001 - the local-mode client is not thread-safe; the store serialises it
        # one call: the graph settings and the recorded spec change together
        store.client.update_collection(
            name, hnsw_config=models.HnswConfigDiff(m=new.hnsw_m),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=threshold),
            metadata={META_KEY: new.to_dict()},
        )
    store._remember(name, new)  # noqa: SLF001


def can_defer(store: VectorStore) -> bool:
    """Whether ``store`` gets a deferred index during bulk loads. Stores without a tuner (the embedded Qdrant
    Edge store) build indexes only in ``optimize()``, which a bulk load runs once at its end: nothing to defer."""
    return type(store).__name__ in _TUNERS


def finish_bulk_load(store: VectorStore, name: str, settings: ScaleSettings, wrote: bool = True) -> bool:
    """Restore a deferred index (True when it was deferred, e.g. by a killed run), then optimize when anything
    was written or restored (the embedded store builds its indexes here)."""
    spec = store.open_collection(name)
    restored = False
    if is_deferred(spec):
        tuner = _TUNERS.get(type(store).__name__)
        if tuner is None:
            raise ConfigError(f"no index tuner for store {type(store).__name__}; registered: {sorted(_TUNERS)}")
        tuner(store, name, spec, settings.indexed_spec(spec))
        restored = True
    if wrote or restored:
        store.optimize(name)
    return restored

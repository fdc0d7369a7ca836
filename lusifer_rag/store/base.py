"""The vector store interface: collections of points (dense + optional sparse vector + JSON payload).

Backends (``edge.py``: embedded Qdrant Edge; ``server.py``: qdrant-client to a server or its local mode) implement
the protected ``_*`` methods; this class validates arguments once, batches writes, caches collection specs and
wraps backend failures in ``StoreError``. Payloads are opaque here; the project writes the langchain-qdrant
layout (``page_content`` + ``metadata``) so ``langchain_qdrant.QdrantVectorStore`` can read our collections.
"""

from __future__ import annotations

import abc
import hashlib
import re
import threading
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, StoreError
from .filters import Filter

DEFAULT_PAYLOAD_INDEXES: dict[str, str] = {
    "metadata.doc_id": "keyword",
    "metadata.source": "keyword",
    "metadata.language": "keyword",
    "metadata.page": "integer",
    "metadata.content_hash": "keyword",  # the same bytes are one document (ingest: duplicates)
    "metadata.acl": "keyword",  # who may read a chunk (app/access.py read_filter), filtered inside the search
}
PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool")
DISTANCES = ("cosine", "dot", "euclid")
QUANTIZATIONS = (None, "int8", "binary")
QUERY_MODES = ("dense", "sparse", "hybrid")
DEFAULT_RRF_K = 2  # Qdrant's own default; the RRF paper's 60 corresponds to ~61 here
# meta keys that must agree between a collection and the embedder used on it
COMPAT_KEYS = ("embedder_fingerprint",)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class SparseVector:
    indices: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float32).reshape(-1)
        if self.indices.shape != self.values.shape:
            raise StoreError(f"sparse vector has {self.indices.size} indices but {self.values.size} values")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= 2**32):
            raise StoreError("sparse vector indices must be in [0, 2**32)")


@dataclass
class Point:
    """One stored item. ``id``: UUID string (deterministic UUIDv5 ids make upserts idempotent)."""

    id: str
    vector: np.ndarray | None  # (dim,) float32; None only in scroll results without vectors
    payload: dict[str, Any] = field(default_factory=dict)
    sparse: SparseVector | None = None


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = None  # (dim,) float32 when asked with with_vectors=True


@dataclass
class CollectionSpec:
    """How a collection is built, plus ``meta``: JSON the collection records (embedder spec and
    fingerprint, chunking parameters). Persisted with the collection and returned by ``open_collection``."""

    dim: int
    distance: str = "cosine"
    vector_name: str = ""  # unnamed default vector, as langchain-qdrant expects
    sparse_name: str | None = "langchain-sparse"  # None: no sparse vector
    sparse_idf: bool = True  # BM25-style IDF weighting computed by the engine
    payload_indexes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PAYLOAD_INDEXES))
    quantization: str | None = None  # None | "int8" | "binary"; queries rescore with the originals
    oversampling: float = 2.0
    on_disk: bool = False
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    # search beam of the HNSW index: on 100k real-based e5 vectors (bench/search_latency.py) the engine's
    # default gave recall@10 0.88 of exact search, 256 0.96, 512 0.97, at 0.5 / 1.1 / 1.6 ms a query
    hnsw_ef: int = 512
    indexing_threshold_kb: int | None = None  # below it segments are searched brute-force; None: engine default
    shard_number: int | None = None  # server only
    replication_factor: int | None = None  # server only
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim <= 0:
            raise ConfigError(f"collection dim must be a positive int; got {self.dim!r}")
        if self.distance not in DISTANCES:
            raise ConfigError(f"distance {self.distance!r} is not supported; allowed: {DISTANCES}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"quantization {self.quantization!r} is not supported; allowed: {QUANTIZATIONS}")
        for key, kind in self.payload_indexes.items():
            if kind not in PAYLOAD_INDEX_TYPES:
                raise ConfigError(f"payload index type {kind!r} for {key!r} is not supported; allowed: {PAYLOAD_INDEX_TYPES}")
        if self.sparse_name == "" or self.sparse_name == self.vector_name:
            raise ConfigError(f"sparse vector name must be non-empty and differ from the dense one; got {self.sparse_name!r}")
        if isinstance(self.hnsw_ef, bool) or not isinstance(self.hnsw_ef, int) or self.hnsw_ef <= 0:
            raise ConfigError(f"hnsw_ef must be a positive int; got {self.hnsw_ef!r}")
        if self.oversampling < 1:
            raise ConfigError(f"oversampling must be >= 1; got {self.oversampling}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CollectionSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_compatible(self, expected: Mapping[str, Any] | None, collection: str = "?") -> None:
        check_compatible(collection, self, expected)


def check_compatible(collection: str, spec: CollectionSpec, expected: Mapping[str, Any] | None) -> None:
    """Refuse using ``collection`` with an embedder other than the one that wrote it.

    ``expected``: meta of the caller's side, e.g. ``{"embedder": "e5-small", "embedder_fingerprint": "…",
    "dim": 384}``. Keys absent on either side are not checked (collections made by other tools carry no meta).
    """
    if not expected:
        return
    dim = expected.get("dim")
    if dim is not None and int(dim) != spec.dim:
        raise StoreError(
            f"collection {collection!r} holds {spec.dim}-dim vectors (embedder {spec.meta.get('embedder', 'unknown')!r}), "
            f"but the given embedder {expected.get('embedder', 'unknown')!r} makes {dim}-dim vectors; "
            f"use the collection's embedder or another collection"
        )
    for key in COMPAT_KEYS:
        want, have = expected.get(key), spec.meta.get(key)
        if want is not None and have is not None and want != have:
            raise StoreError(
                f"collection {collection!r} was written with embedder {spec.meta.get('embedder', 'unknown')!r} "
                f"({key} {have}), but the given embedder is {expected.get('embedder', 'unknown')!r} ({key} {want}); "
                f"vectors of different embedders are not comparable: use --embedder {spec.meta.get('embedder', '<its spec>')} "
                f"with this collection, or ingest into a new collection"
            )


@dataclass
class QueryPlan:
    """A validated query, handed to the backend."""

    mode: str
    dense: np.ndarray | None  # (dim,) float32
    sparse: SparseVector | None
    filter: Filter | None
    k: int
    score_threshold: float | None
    rrf_k: int | None
    prefetch_limit: int
    with_vectors: bool
    exact: bool
    payload: bool | tuple[str, ...] = True  # True: all, False: none, else these keys
    hnsw_ef: int | None = None  # HNSW beam of this query; None: the collection's (CollectionSpec.hnsw_ef)


#: query()'s keyword arguments and defaults, for query_batch's requests
_QUERY_ARGS = {"dense": None, "sparse": None, "filter": None, "k": 10, "mode": "dense", "score_threshold": None,
               "rrf_k": None, "prefetch_limit": None, "with_vectors": False, "exact": False, "payload": True,
               "hnsw_ef": None}


def _payload_arg(payload: Any) -> bool | tuple[str, ...]:
    if isinstance(payload, bool):
        return payload
    if isinstance(payload, str) or not all(isinstance(k, str) and k for k in payload):
        raise StoreError(f"payload must be True, False or a list of payload keys; got {payload!r}")
    return tuple(payload)


_GENERATION_RE = re.compile(r"--[0-9a-f]{12}$")


def generation_name(logical: str, tag: str) -> str:
    """The physical collection of one generation of ``logical`` (a re-index target): ``<logical>--<12 hex>``."""
    return f"{logical}--{hashlib.sha256(tag.encode()).hexdigest()[:12]}"


def is_generation(name: str) -> bool:
    return bool(_GENERATION_RE.search(name))


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StoreError(
            f"collection name {name!r} is not allowed: use 1-128 letters, digits, '_', '-', '.', starting with a letter or digit"
        )
    return name


def as_uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise StoreError(f"point id must be a UUID string; got {value!r}") from None


class VectorStore(abc.ABC):
    """Collections of points; thread-safe; use as a context manager or call ``close()``."""

    batch_size = 256  # points per backend write (Qdrant's bulk-upload advice: 64-256)

    def __init__(self, location: str) -> None:
        self.location = location
        self._specs: dict[str, CollectionSpec] = {}
        self._specs_lock = threading.Lock()
        self._closed = False
        #: bumped by every write through this handle (points, collections, aliases): readers that cache what they
        #: derived from the data (the retriever's language means) re-check at once after one, and otherwise at
        #: their own pace for writes by other processes
        self.write_version = 0

    # ---- public API -------------------------------------------------------------------------------------
    def create_collection(self, name: str, spec: CollectionSpec, *, exist_ok: bool = False) -> CollectionSpec:
        """Create ``name``. If it exists: return its spec when ``exist_ok`` (after checking the embedder
        fingerprint in ``spec.meta`` agrees), else raise."""
        self._check_open()
        validate_name(name)
        existing = self._guard("read collection", name, self._read_spec, name)
        if existing is not None:
            if not exist_ok:
                raise StoreError(f"collection {name!r} already exists in {self.location}; drop it first or open it")
            check_compatible(name, existing, {**spec.meta, "dim": spec.dim})
            self._remember(name, existing)
            return existing
        self._guard("create collection", name, self._create, name, spec)
        self._remember(name, spec)
        return spec

    def open_collection(self, name: str, expect: Mapping[str, Any] | None = None) -> CollectionSpec:
        """The collection's spec (fresh from storage); with ``expect`` (caller's embedder meta), refuse a mismatch."""
        self._check_open()
        validate_name(name)
        spec = self._guard("read collection", name, self._read_spec, name)
        if spec is None:
            existing = self.list_collections()
            raise StoreError(
                f"no collection {name!r} in {self.location}; existing: {', '.join(existing) if existing else '(none)'}"
            )
        self._remember(name, spec)
        check_compatible(name, spec, expect)
        return spec

    def list_collections(self) -> list[str]:
        """The names users address: aliases, and collections no alias points to (generations of a re-index,
        ``<name>--<12 hex>``, are listed only through their alias)."""
        self._check_open()
        physical = self._guard("list collections", "*", self._list)
        aliases = self.aliases()
        targets = set(aliases.values())
        return sorted(set(aliases) | {n for n in physical if n not in targets and not is_generation(n)})

    def list_physical(self) -> list[str]:
        """Every collection as stored, generations included."""
        self._check_open()
        return sorted(self._guard("list collections", "*", self._list))

    def drop_collection(self, name: str) -> bool:
        """Delete ``name`` with its data (an alias: the alias and the collection it points to); False if it
        did not exist."""
        self._check_open()
        validate_name(name)
        self.write_version += 1
        with self._specs_lock:
            self._specs.pop(self._cache_key(name), None)
        aliases = self.aliases()
        if name in aliases:
            self._guard("remove alias", name, self._remove_alias, name)
            self._guard("drop collection", name, self._drop, aliases[name])
            self._guard("drop collection", name, self._drop, name)  # an older generation the alias shadowed
            return True
        return bool(self._guard("drop collection", name, self._drop, name))

    # ---- aliases: one name, successive physical collections (re-indexing) ------------------------------
    def aliases(self) -> dict[str, str]:
        """{alias: the physical collection it points to}."""
        self._check_open()
        return dict(self._guard("list aliases", "*", self._aliases))

    def resolve(self, name: str) -> str:
        """The physical collection behind ``name`` (itself when it is no alias)."""
        return self.aliases().get(name, name)

    def switch_alias(self, alias: str, target: str) -> str | None:
        """Point ``alias`` at the physical collection ``target`` in one atomic step (searches see the old
        collection or the new one, never neither); returns the physical collection it pointed to before
        (``alias`` itself when it was a plain collection, None when it did not exist)."""
        self._check_open()
        validate_name(alias)
        if target not in self.list_physical():
            raise StoreError(f"cannot point {alias!r} at {target!r}: no such collection in {self.location}")
        before = self.aliases().get(alias) or (alias if alias in self.list_physical() else None)
        self._guard("switch alias", alias, self._switch_alias, alias, target)
        self.write_version += 1
        with self._specs_lock:
            self._specs.pop(alias, None)
        return before

    def drop_physical(self, name: str) -> bool:
        """Delete the physical collection ``name`` (e.g. the generation a re-index replaced); refused while an
        alias points to it."""
        self._check_open()
        validate_name(name)
        users = [a for a, t in self.aliases().items() if t == name]
        if users:
            raise StoreError(f"collection {name!r} is still served through alias {users[0]!r}; switch the alias first")
        with self._specs_lock:
            self._specs.pop(name, None)
        self.write_version += 1
        return bool(self._guard("drop collection", name, self._drop_physical, name))

    def update_meta(self, name: str, meta: Mapping[str, Any]) -> CollectionSpec:
        """Replace the collection's recorded ``meta`` (e.g. new chunking parameters after a re-ingest)."""
        spec = self.open_collection(name)
        new = CollectionSpec.from_dict({**spec.to_dict(), "meta": dict(meta)})
        self._guard("update collection meta", name, self._write_spec, name, new)
        self._remember(name, new)
        return new

    def upsert(self, name: str, points: Sequence[Point]) -> int:
        """Insert or replace points by id, in batches of ``batch_size``; returns the number written."""
        spec = self._spec(name)
        for start in range(0, len(points), self.batch_size):
            batch = points[start : start + self.batch_size]
            ids = [as_uuid(p.id) for p in batch]
            dense = _dense_matrix(batch, spec.dim)  # (b, dim) float32
            if spec.sparse_name is None and any(p.sparse is not None for p in batch):
                raise StoreError(f"collection {name!r} has no sparse vector; points must not carry one")
            self._guard("upsert", name, self._upsert_batch, name, spec, ids, dense, batch)
            self.write_version += 1
        self._after_write(name, len(points))
        return len(points)

    def delete(self, name: str, filter: Filter) -> None:
        """Delete the points matching ``filter`` (an empty filter is refused: use drop_collection)."""
        self._spec(name)
        if filter is None or filter.is_empty():
            raise StoreError(f"delete on {name!r} needs a non-empty filter; to remove everything use drop_collection")
        self._guard("delete", name, self._delete, name, filter)
        self.write_version += 1
        self._after_write(name, 0)

    def set_payload(self, name: str, filter: Filter, payload: Mapping[str, Any], key: str | None = None) -> None:
        """Set ``payload``'s fields on every point matching ``filter`` (inside the object at ``key``, e.g.
        ``"metadata"``, when given), keeping the other fields and the vectors."""
        self._spec(name)
        if filter is None or filter.is_empty():
            raise StoreError(f"set_payload on {name!r} needs a non-empty filter")
        self._guard("set payload", name, self._set_payload, name, filter, dict(payload), key)
        self.write_version += 1

    def ensure_payload_index(self, name: str, key: str, kind: str = "keyword") -> None:
        """Add a payload index to an existing collection (one created before that index was a default)."""
        spec = self.open_collection(name)
        if spec.payload_indexes.get(key) == kind:
            return
        if kind not in PAYLOAD_INDEX_TYPES:
            raise StoreError(f"payload index type {kind!r} is not valid; allowed: {', '.join(PAYLOAD_INDEX_TYPES)}")
        self._guard("create payload index", name, self._create_index, name, key, kind)
        new = CollectionSpec.from_dict({**spec.to_dict(), "payload_indexes": {**spec.payload_indexes, key: kind}})
        self._guard("update collection spec", name, self._write_spec, name, new)
        self._remember(name, new)

    def query(
        self,
        name: str,
        dense: Sequence[float] | np.ndarray | None = None,
        sparse: SparseVector | None = None,
        filter: Filter | None = None,
        k: int = 10,
        mode: str = "dense",
        score_threshold: float | None = None,
        rrf_k: int | None = None,
        prefetch_limit: int | None = None,
        with_vectors: bool = False,
        exact: bool = False,
        payload: bool | Sequence[str] = True,
        hnsw_ef: int | None = None,
    ) -> list[Hit]:
        """Nearest points. ``mode``: "dense" (needs ``dense``), "sparse" (needs ``sparse``) or "hybrid" (both,
        fused by RRF with constant ``rrf_k``, default Qdrant's 2; each leg fetches ``prefetch_limit``,
        default max(4k, 20)). ``exact`` forces brute force (no HNSW, no quantization). ``payload``: True (all of
        it), False (none: ids and scores only) or the payload keys to return (e.g. ``["metadata.language"]``).
        ``hnsw_ef``: the HNSW beam for this query (default: the collection's ``hnsw_ef``; at least ``k``)."""
        spec = self._spec(name)
        plan = self._plan(name, spec, dense, sparse, filter, k, mode, score_threshold, rrf_k, prefetch_limit,
                          with_vectors, exact, payload, hnsw_ef)
        return self._guard("query", name, self._query, name, spec, plan)

    def query_batch(self, name: str, requests: Sequence[Mapping[str, Any]]) -> list[list[Hit]]:
        """Several queries in one call (each a dict of :meth:`query`'s keyword arguments), results in order.
        Backends that can plan a batch as a whole (Qdrant's batch query) run it in one pass."""
        spec = self._spec(name)
        plans = []
        for i, req in enumerate(requests):
            unknown = set(req) - set(_QUERY_ARGS)
            if unknown:
                raise StoreError(f"query_batch request {i}: unknown arguments {sorted(unknown)}; allowed: {list(_QUERY_ARGS)}")
            plans.append(self._plan(name, spec, *(req.get(a, d) for a, d in _QUERY_ARGS.items())))
        if not plans:
            return []
        return self._guard("query batch", name, self._query_batch, name, spec, plans)

    def retrieve(self, name: str, ids: Sequence[str], with_payload: bool | Sequence[str] = True,
                 with_vectors: bool = False) -> list[Point]:
        """The points with these ids, in the given order (ids not in the collection are left out)."""
        spec = self._spec(name)
        uids = [as_uuid(i) for i in ids]
        if not uids:
            return []
        found = {p.id: p for p in self._guard("retrieve", name, self._retrieve, name, spec, list(dict.fromkeys(uids)),
                                               _payload_arg(with_payload), bool(with_vectors))}
        return [found[i] for i in uids if i in found]

    def _plan(self, name, spec, dense, sparse, filter, k, mode, score_threshold, rrf_k, prefetch_limit, with_vectors,
              exact, payload, hnsw_ef=None) -> "QueryPlan":
        if mode not in QUERY_MODES:
            raise StoreError(f"query mode {mode!r} is not supported; allowed: {QUERY_MODES}")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise StoreError(f"k must be a positive int; got {k!r}")
        if hnsw_ef is not None and (isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef <= 0):
            raise StoreError(f"hnsw_ef must be a positive int or None; got {hnsw_ef!r}")
        vec = None
        if mode in ("dense", "hybrid"):
            if dense is None:
                raise StoreError(f"query mode {mode!r} needs a dense vector")
            vec = np.asarray(dense, dtype=np.float32).reshape(-1)  # (dim,)
            if vec.shape[0] != spec.dim:
                raise StoreError(f"query vector has {vec.shape[0]} dims; collection {name!r} holds {spec.dim}-dim vectors")
            if not np.isfinite(vec).all():
                raise StoreError("query vector contains NaN or infinity")
        if mode in ("sparse", "hybrid"):
            if sparse is None:
                raise StoreError(f"query mode {mode!r} needs a sparse vector")
            if spec.sparse_name is None:
                raise StoreError(f"collection {name!r} has no sparse vector; use mode='dense'")
        return QueryPlan(
            mode=mode, dense=vec, sparse=sparse if mode != "dense" else None, filter=filter, k=k,
            score_threshold=score_threshold, rrf_k=rrf_k, prefetch_limit=prefetch_limit or max(4 * k, 20),
            with_vectors=with_vectors, exact=exact, payload=_payload_arg(payload), hnsw_ef=hnsw_ef,
        )

    def count(self, name: str, filter: Filter | None = None, exact: bool = True) -> int:
        self._spec(name)
        return int(self._guard("count", name, self._count, name, filter, exact))

    def scroll(
        self, name: str, filter: Filter | None = None, limit: int = 256, offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Point], str | None]:
        """One page of points in id order from ``offset``; returns (points, next_offset or None at the end)."""
        self._spec(name)
        if limit <= 0:
            raise StoreError(f"scroll limit must be positive; got {limit}")
        off = as_uuid(offset) if offset is not None else None
        return self._guard("scroll", name, self._scroll, name, filter, limit, off, with_vectors)

    def iter_points(self, name: str, filter: Filter | None = None, page: int = 1024, with_vectors: bool = False) -> Iterator[Point]:
        """Every point matching ``filter``, page by page."""
        offset = None
        while True:
            points, offset = self.scroll(name, filter, page, offset, with_vectors)
            yield from points
            if offset is None:
                return

    def facet(self, name: str, key: str, filter: Filter | None = None, limit: int = 1000) -> dict[Any, int]:
        """Exact counts of the values of a payload index key (e.g. ``metadata.language``), largest first."""
        spec = self._spec(name)
        if key not in spec.payload_indexes:
            raise StoreError(f"facet needs a payload index on {key!r}; indexed keys of {name!r}: {sorted(spec.payload_indexes)}")
        counts = self._guard("facet", name, self._facet, name, key, filter, limit)
        # the embedded engine keeps a deleted value in its index with a count of 0 (a document list would show
        # one row more than there are documents)
        return {value: n for value, n in counts.items() if n > 0}

    def optimize(self, name: str) -> bool:
        """Build indexes/merge segments now (embedded store: call after bulk writes); True if anything changed."""
        self._spec(name)
        return bool(self._guard("optimize", name, self._optimize, name))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # ---- helpers ----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.location} is closed")

    def _remember(self, name: str, spec: CollectionSpec) -> None:
        with self._specs_lock:
            self._specs[self._cache_key(name)] = spec

    def _cache_key(self, name: str) -> str:
        """Specs are cached under this key; backends that resolve aliases locally use the physical name, so
        an alias switch needs no cache invalidation."""
        return name

    def _spec(self, name: str) -> CollectionSpec:
        self._check_open()
        with self._specs_lock:
            spec = self._specs.get(self._cache_key(name))
        return spec if spec is not None else self.open_collection(name)

    def _guard(self, op: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except StoreError:
            raise
        except Exception as exc:  # backend errors carry no common type; say what we were doing
            raise StoreError(f"{op} on collection {name!r} in {self.location} failed: {type(exc).__name__}: {exc}") from exc

    def _after_write(self, name: str, n: int) -> None:
        """Hook after writes (the embedded backend optimizes after large volumes)."""

    # ---- backend surface --------------------------------------------------------------------------------
    @abc.abstractmethod
    def _create(self, name: str, spec: CollectionSpec) -> None: ...

    @abc.abstractmethod
    def _read_spec(self, name: str) -> CollectionSpec | None: ...

    @abc.abstractmethod
    def _write_spec(self, name: str, spec: CollectionSpec) -> None: ...

    @abc.abstractmethod
    def _list(self) -> list[str]: ...

    @abc.abstractmethod
    def _drop(self, name: str) -> bool: ...

    def _drop_physical(self, name: str) -> bool:
        return self._drop(name)

    def _aliases(self) -> dict[str, str]:
        return {}

    def _switch_alias(self, alias: str, target: str) -> None:
        raise StoreError(f"{type(self).__name__} has no aliases")

    def _remove_alias(self, alias: str) -> None:
        raise StoreError(f"{type(self).__name__} has no aliases")

    @abc.abstractmethod
    def _upsert_batch(self, name: str, spec: CollectionSpec, ids: list[str], dense: np.ndarray, points: Sequence[Point]) -> None: ...

    @abc.abstractmethod
    def _delete(self, name: str, flt: Filter) -> None: ...

    @abc.abstractmethod
    def _set_payload(self, name: str, flt: Filter, payload: dict, key: str | None) -> None: ...

    @abc.abstractmethod
    def _create_index(self, name: str, key: str, kind: str) -> None: ...

    @abc.abstractmethod
    def _query(self, name: str, spec: CollectionSpec, plan: QueryPlan) -> list[Hit]: ...

    def _query_batch(self, name: str, spec: CollectionSpec, plans: list[QueryPlan]) -> list[list[Hit]]:
        return [self._query(name, spec, plan) for plan in plans]

    @abc.abstractmethod
    def _retrieve(self, name: str, spec: CollectionSpec, ids: list[str], payload: bool | tuple[str, ...],
                  with_vectors: bool) -> list[Point]: ...

    @abc.abstractmethod
    def _count(self, name: str, flt: Filter | None, exact: bool) -> int: ...

    @abc.abstractmethod
    def _scroll(self, name: str, flt: Filter | None, limit: int, offset: str | None, with_vectors: bool) -> tuple[list[Point], str | None]: ...

    @abc.abstractmethod
    def _facet(self, name: str, key: str, flt: Filter | None, limit: int) -> dict[Any, int]: ...

    @abc.abstractmethod
    def _optimize(self, name: str) -> bool: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


def dense_of(vector: Any, spec: CollectionSpec) -> np.ndarray | None:
    """The dense vector of a point as a backend returns it (a plain list, or a dict of named vectors)."""
    v = vector.get(spec.vector_name) if isinstance(vector, dict) else vector
    return None if v is None else np.asarray(v, dtype=np.float32)


def sparse_of(vector: Any, spec: CollectionSpec) -> SparseVector | None:
    """The sparse vector of a point as a backend returns it (objects with ``indices``/``values``), if any."""
    if not isinstance(vector, dict) or spec.sparse_name is None or vector.get(spec.sparse_name) is None:
        return None
    sv = vector[spec.sparse_name]
    return SparseVector(sv.indices, sv.values)


def point_from_record(id: str, vector: Any, payload: dict | None, spec: CollectionSpec, with_vectors: bool) -> Point:
    """A scrolled backend record as our Point (vectors only when asked for)."""
    return Point(id, dense_of(vector, spec) if with_vectors else None, payload or {},
                 sparse_of(vector, spec) if with_vectors else None)


def _dense_matrix(points: Sequence[Point], dim: int) -> np.ndarray:
    """Stack the batch's vectors: (b, dim) float32, refusing wrong sizes and non-finite values."""
    try:
        mat = np.asarray([p.vector for p in points], dtype=np.float32)
    except (ValueError, TypeError):
        sizes = sorted({np.asarray(p.vector).size if p.vector is not None else 0 for p in points})
        raise StoreError(f"points must all carry a {dim}-dim dense vector; got sizes {sizes}") from None
    if mat.ndim != 2 or mat.shape[1] != dim:
        raise StoreError(f"points carry vectors of shape {mat.shape[1:]}; the collection holds {dim}-dim vectors")
    if not np.isfinite(mat).all():
        raise StoreError("point vectors contain NaN or infinity")
    return mat


# ---- backend registry ---------------------------------------------------------------------------------------
Opener = Callable[..., VectorStore]  # (target, api_key=..., **opts) -> VectorStore
_BACKENDS: dict[str, Opener] = {}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$", re.S)  # 2+ letters: "C:\..." stays a path


def register_backend(*schemes: str) -> Callable[[Opener], Opener]:
    """Register an opener for location schemes; "" is the scheme of a plain directory path."""

    def deco(fn: Opener) -> Opener:
        for s in schemes:
            _BACKENDS[s] = fn
        return fn

    return deco


def parse_location(location: str) -> tuple[str, str]:
    """"http://h:6333" -> ("http", "http://h:6333"); "qdrant-local:/p" -> ("qdrant-local", "/p");
    ":memory:" -> (":memory:", ":memory:"); "/some/dir" -> ("", "/some/dir")."""
    location = str(location)
    if location == ":memory:":
        return ":memory:", location
    m = _SCHEME_RE.match(location)
    if m is None:
        return "", location
    scheme = m.group(1).lower()
    if scheme in ("http", "https"):
        return scheme, location
    return scheme, m.group(2)


def open_store(location: str, api_key: str | None = None, **opts: Any) -> VectorStore:
    """Open the store at ``location``: a directory (embedded Qdrant Edge), ``http(s)://host:port`` (Qdrant
    server), ``:memory:`` or ``qdrant-local:<dir>`` (qdrant-client's local mode, for tests and small setups)."""
    scheme, target = parse_location(location)
    opener = _BACKENDS.get(scheme)
    if opener is None:
        allowed = sorted(f"{s}:" if s not in ("", ":memory:") else (s or "<directory>") for s in _BACKENDS)
        raise ConfigError(f"store location {location!r} has an unknown scheme {scheme!r}; allowed: {', '.join(allowed)}")
    return opener(target, api_key=api_key, **opts)

"""Embedded backend: Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in-process.

Layout of a store directory::

    <dir>/.lock, .lock.holder.json        one process at a time (lock.py)
    <dir>/store.json                      format marker
    <dir>/aliases.json                    {alias: collection} (re-indexing: a name switches to a new collection)
    <dir>/collections/<name>/collection.json   our CollectionSpec (+ meta); written last = commit marker
    <dir>/collections/<name>/shard/       one Edge shard (segments, WAL, edge_config.json)

Edge has shards, not collections: a collection is one shard. Edge has no background optimizer: segments
written by upserts are searched brute-force until ``optimize(name)`` builds HNSW/quantized segments. Callers
doing bulk writes (ingest) should call ``optimize`` at the end; in addition this store optimizes by itself once
``optimize_after`` points (default 50,000) were written since the last optimize, so a long-running app that
keeps adding documents does not drift into brute-force search.

Threads: the Edge engine serialises its own updates and runs reads concurrently; this module only guards the
shard objects' lifetime (a drop/close waits for in-flight calls and refuses new ones). Within one process,
every ``open_store`` of the same directory shares one set of open shards (the directory lock is per process).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import qdrant_edge as qe

from ..errors import StoreError
from .base import (DEFAULT_RRF_K, CollectionSpec, Hit, Point, QueryPlan, SparseVector, VectorStore, dense_of,
                   point_from_record, register_backend)
from .filters import Filter, FilterBuilders, translate
from .lock import StoreLock

STORE_FORMAT = {"format": "lusifer-rag-edge-store", "version": 1}
SPEC_FILE = "collection.json"
ALIAS_FILE = "aliases.json"
SHARD_DIR = "shard"

_DISTANCE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_INDEX_TYPE = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}
_FILTERS = FilterBuilders(
    match_value=lambda k, v: qe.FieldCondition(k, match=qe.MatchValue(v)),
    match_any=lambda k, vs: qe.FieldCondition(k, match=qe.MatchAny(vs)),
    range=lambda k, lo, hi: qe.FieldCondition(k, range=qe.RangeFloat(gte=lo, lte=hi)),
    has_ids=lambda ids: qe.HasIdCondition({uuid.UUID(i) for i in ids}),
    filter=lambda must, must_not: qe.Filter(must=must or None, must_not=must_not or None),
)


def edge_config(spec: CollectionSpec) -> qe.EdgeConfig:
    """CollectionSpec -> Edge shard config."""
    cold = qe.Memory.Cold if spec.on_disk else None
    vectors = {spec.vector_name: qe.EdgeVectorParams(size=spec.dim, distance=_DISTANCE[spec.distance], memory=cold)}
    sparse = None
    if spec.sparse_name is not None:
        sparse = {
            spec.sparse_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if spec.sparse_idf else None, memory=cold)
        }
    quant = None
    if spec.quantization == "int8":  # quantized copies pinned in RAM, originals may stay on disk for rescoring
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
    elif spec.quantization == "binary":
        quant = qe.BinaryQuantizationConfig(memory=qe.Memory.Pinned)
    hnsw = qe.HnswIndexConfig(
        m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct, full_scan_threshold=10_000, memory=cold
    )
    optimizers = None
    if spec.indexing_threshold_kb is not None:
        optimizers = qe.EdgeOptimizersConfig(indexing_threshold=spec.indexing_threshold_kb)
    return qe.EdgeConfig(
        vectors=vectors, sparse_vectors=sparse, hnsw_config=hnsw, quantization_config=quant, optimizers=optimizers
    )


class _Shard:
    """An open Edge shard plus a gate: any number of calls at once; close() waits for them and bars new ones."""

    def __init__(self, name: str, shard: qe.EdgeShard) -> None:
        self.name = name
        self.shard = shard
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False
        self.optimizing = threading.Lock()
        self.written_since_optimize = 0

    @contextmanager
    def use(self) -> Iterator[qe.EdgeShard]:
        with self._cond:
            if self._closed:
                raise StoreError(f"collection {self.name!r} was dropped or its store closed while in use")
            self._active += 1
        try:
            yield self.shard
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._active:
                self._cond.wait()
        try:
            self.shard.flush()
        finally:
            self.shard.close()


class _StoreDir:
    """One per store directory per process: the OS lock and the open shards, shared by every EdgeStore on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = StoreLock(root).acquire()
        self.collections = root / "collections"
        self.collections.mkdir(exist_ok=True)
        marker = root / "store.json"
        if not marker.exists():
            _write_json(marker, STORE_FORMAT)
        self.shards: dict[str, _Shard] = {}
        self.mutex = threading.RLock()  # guards shards (open/create/drop) and aliases, not the data path
        self.refs = 0
        self.alias_file = root / ALIAS_FILE
        try:
            self.aliases: dict[str, str] = json.loads(self.alias_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.aliases = {}
        except ValueError as exc:
            self.lock.release()
            raise StoreError(f"{self.alias_file} is not valid JSON ({exc}); the store's aliases are damaged") from exc

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)  # one dict read: an alias switch is a single assignment

    def set_aliases(self, aliases: dict[str, str]) -> None:
        with self.mutex:
            _write_json(self.alias_file, aliases)  # the file first: a crash leaves the old map or the new one
            self.aliases = aliases

    def shard(self, name: str, physical: bool = False) -> _Shard:
        """The open shard of collection ``name`` (an alias is followed unless ``physical``)."""
        name = name if physical else self.resolve(name)
        with self.mutex:
            sh = self.shards.get(name)
            if sh is None:
                if not (self.collections / name / SPEC_FILE).exists():
                    raise StoreError(f"no collection {name!r} in {self.root}")
                sh = _Shard(name, qe.EdgeShard.load(str(self.collections / name / SHARD_DIR)))
                self.shards[name] = sh
            return sh

    def close(self) -> None:
        with self.mutex:
            try:
                for sh in self.shards.values():
                    sh.close()
                self.shards.clear()
            finally:
                self.lock.release()


_DIRS: dict[str, _StoreDir] = {}
_DIRS_LOCK = threading.Lock()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one


class EdgeStore(VectorStore):
    """Embedded Qdrant Edge store in a directory. Options: ``optimize_after`` (points written before an
    automatic optimize; None disables it)."""

    def __init__(self, directory: str | os.PathLike, optimize_after: int | None = 50_000) -> None:
        root = Path(directory).expanduser()
        super().__init__(str(root))
        if root.exists() and not root.is_dir():
            raise StoreError(f"store location {root} is a file; give a directory (or an http(s):// URL)")
        root.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(root)
        with _DIRS_LOCK:
            d = _DIRS.get(key)
            if d is None:
                d = _DIRS[key] = _StoreDir(Path(key))
            d.refs += 1
        self._dir = d
        self._key = key
        self.optimize_after = optimize_after

    # ---- collections ------------------------------------------------------------------------------------
    def _create(self, name: str, spec: CollectionSpec) -> None:
        d = self._dir
        with d.mutex:
            cdir = d.collections / name
            if (cdir / SPEC_FILE).exists() or name in d.aliases:
                raise StoreError(f"collection {name!r} already exists in {self.location}")
            if cdir.exists():  # leftover of a create interrupted before its commit marker
                shutil.rmtree(cdir)
            cdir.mkdir(parents=True)
            shard = qe.EdgeShard.create(str(cdir / SHARD_DIR), edge_config(spec))
            try:
                # payload indexes before any data: filtered HNSW links are built in one pass
                for key, kind in spec.payload_indexes.items():
                    shard.update(qe.UpdateOperation.create_field_index(key, _INDEX_TYPE[kind]))
                _write_json(cdir / SPEC_FILE, spec.to_dict())
            except BaseException:
                shard.close()
                shutil.rmtree(cdir, ignore_errors=True)
                raise
            d.shards[name] = _Shard(name, shard)

    def _read_spec(self, name: str) -> CollectionSpec | None:
        path = self._dir.collections / self._dir.resolve(name) / SPEC_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StoreError(f"collection {name!r}: {path} is not valid JSON ({exc}); the collection is damaged") from exc
        return CollectionSpec.from_dict(data)

    def _write_spec(self, name: str, spec: CollectionSpec) -> None:
        with self._dir.mutex:
            _write_json(self._dir.collections / self._dir.resolve(name) / SPEC_FILE, spec.to_dict())

    def _list(self) -> list[str]:
        # scandir + one stat per entry: pathlib's glob cost a fifth of a warm search's CPU under load
        try:
            entries = list(os.scandir(self._dir.collections))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()
                and os.path.isfile(os.path.join(e.path, SPEC_FILE))]

    def _cache_key(self, name: str) -> str:
        return self._dir.resolve(name)

    def _aliases(self) -> dict[str, str]:
        return dict(self._dir.aliases)

    def _switch_alias(self, alias: str, target: str) -> None:
        self._dir.set_aliases({**self._dir.aliases, alias: target})

    def _remove_alias(self, alias: str) -> None:
        self._dir.set_aliases({a: t for a, t in self._dir.aliases.items() if a != alias})

    def _drop(self, name: str) -> bool:  # ``name`` is physical here: the base class resolves aliases
        d = self._dir
        with d.mutex:
            cdir = d.collections / name
            if not cdir.exists():
                return False
            sh = d.shards.pop(name, None)
            if sh is not None:
                sh.close()  # waits for in-flight calls on it
            trash = d.collections / f".dropped-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(cdir, trash)  # the collection disappears atomically, then its files go
            shutil.rmtree(trash, ignore_errors=True)
            return True

    # ---- data -------------------------------------------------------------------------------------------
    def _upsert_batch(self, name: str, spec: CollectionSpec, ids: list[str], dense: np.ndarray, points: Sequence[Point]) -> None:
        vn, sn = spec.vector_name, spec.sparse_name
        rows = dense.tolist()  # (b, dim) -> lists in one call
        eps = []
        for pid, row, p in zip(ids, rows, points):
            vec: dict[str, Any] = {vn: row}
            if p.sparse is not None:
                vec[sn] = _edge_sparse(p.sparse)
            eps.append(qe.Point(pid, vec, p.payload))
        with self._dir.shard(name).use() as shard:
            shard.update(qe.UpdateOperation.upsert_points(eps))

    def _delete(self, name: str, flt: Filter) -> None:
        with self._dir.shard(name).use() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(translate(flt, _FILTERS)))

    def _set_payload(self, name: str, flt: Filter, payload: dict, key: str | None) -> None:
        with self._dir.shard(name).use() as shard:
            shard.update(qe.UpdateOperation.set_payload_by_filter(translate(flt, _FILTERS), payload, key=key))

    def _create_index(self, name: str, key: str, kind: str) -> None:
        with self._dir.shard(name).use() as shard:
            shard.update(qe.UpdateOperation.create_field_index(key, _INDEX_TYPE[kind]))

    def _request(self, spec: CollectionSpec, plan: QueryPlan) -> qe.QueryRequest:
        flt = translate(plan.filter, _FILTERS)
        params = qe.SearchParams(exact=plan.exact, hnsw_ef=None if plan.exact else max(plan.hnsw_ef or spec.hnsw_ef, plan.k))
        if spec.quantization and not plan.exact:
            params = qe.SearchParams(
                hnsw_ef=max(plan.hnsw_ef or spec.hnsw_ef, plan.k),
                quantization=qe.QuantizationSearchParams(rescore=True, oversampling=spec.oversampling)
            )
        dense_q = qe.Query.Nearest(plan.dense.tolist(), using=spec.vector_name) if plan.dense is not None else None
        sparse_q = qe.Query.Nearest(_edge_sparse(plan.sparse), using=spec.sparse_name) if plan.sparse is not None else None
        with_vector = [spec.vector_name] if plan.with_vectors else False
        with_payload = _edge_payload(plan.payload)
        if plan.mode == "hybrid":
            return qe.QueryRequest(
                limit=plan.k,
                prefetches=[
                    qe.Prefetch(limit=plan.prefetch_limit, query=dense_q, filter=flt, params=params),
                    qe.Prefetch(limit=plan.prefetch_limit, query=sparse_q, filter=flt),
                ],
                query=qe.Fusion.Rrf(k=plan.rrf_k if plan.rrf_k is not None else DEFAULT_RRF_K),
                filter=flt, score_threshold=plan.score_threshold, with_payload=with_payload, with_vector=with_vector,
            )
        return qe.QueryRequest(
            limit=plan.k, query=dense_q if plan.mode == "dense" else sparse_q, filter=flt,
            score_threshold=plan.score_threshold, with_payload=with_payload, with_vector=with_vector,
            params=params if plan.mode == "dense" else None,
        )

    @staticmethod
    def _hits(found, spec: CollectionSpec, plan: QueryPlan) -> list[Hit]:
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, dense_of(p.vector, spec) if plan.with_vectors else None)
            for p in found
        ]

    def _query(self, name: str, spec: CollectionSpec, plan: QueryPlan) -> list[Hit]:
        req = self._request(spec, plan)
        with self._dir.shard(name).use() as shard:
            found = shard.query(req)
        return self._hits(found, spec, plan)

    def _query_batch(self, name: str, spec: CollectionSpec, plans: list[QueryPlan]) -> list[list[Hit]]:
        batch = qe.QueryBatchRequest([self._request(spec, plan) for plan in plans])
        with self._dir.shard(name).use() as shard:
            found = shard.query_batch(batch)
        return [self._hits(f, spec, plan) for f, plan in zip(found, plans)]

    def _retrieve(self, name: str, spec: CollectionSpec, ids: list[str], payload, with_vectors: bool) -> list[Point]:
        with self._dir.shard(name).use() as shard:
            records = shard.retrieve([uuid.UUID(i) for i in ids], with_payload=_edge_payload(payload),
                                     with_vector=[spec.vector_name] if with_vectors else False)
        return [point_from_record(str(r.id), r.vector, r.payload, spec, with_vectors) for r in records]

    def _count(self, name: str, flt: Filter | None, exact: bool) -> int:
        with self._dir.shard(name).use() as shard:
            return shard.count(qe.CountRequest(exact=exact, filter=translate(flt, _FILTERS)))

    def _scroll(self, name: str, flt: Filter | None, limit: int, offset: str | None, with_vectors: bool) -> tuple[list[Point], str | None]:
        spec = self._spec(name)
        req = qe.ScrollRequest(
            offset=uuid.UUID(offset) if offset is not None else None, limit=limit, filter=translate(flt, _FILTERS),
            with_payload=True, with_vector=bool(with_vectors),
        )
        with self._dir.shard(name).use() as shard:
            records, nxt = shard.scroll(req)
        points = [point_from_record(str(r.id), r.vector, r.payload, spec, with_vectors) for r in records]
        return points, (str(nxt) if nxt is not None else None)

    def _facet(self, name: str, key: str, flt: Filter | None, limit: int) -> dict[Any, int]:
        with self._dir.shard(name).use() as shard:
            resp = shard.facet(qe.FacetRequest(key, limit=limit, exact=True, filter=translate(flt, _FILTERS)))
        return {h.value: int(h.count) for h in resp.hits}

    def _optimize(self, name: str) -> bool:
        sh = self._dir.shard(name)
        with sh.optimizing, sh.use() as shard:  # one optimize per shard at a time; reads go on meanwhile
            sh.written_since_optimize = 0
            return bool(shard.optimize())

    def _after_write(self, name: str, n: int) -> None:
        if self.optimize_after is None:
            return
        sh = self._dir.shard(name)
        sh.written_since_optimize += n  # a heuristic: an occasional lost increment under threads is harmless
        if sh.written_since_optimize < self.optimize_after or not sh.optimizing.acquire(blocking=False):
            return  # below the threshold, or another thread is optimizing this shard right now
        try:
            with sh.use() as shard:
                sh.written_since_optimize = 0
                shard.optimize()
        finally:
            sh.optimizing.release()

    def _close(self) -> None:
        with _DIRS_LOCK:
            self._dir.refs -= 1
            if self._dir.refs == 0:
                _DIRS.pop(self._key, None)
                self._dir.close()


def _edge_payload(payload: bool | tuple[str, ...]):
    return payload if isinstance(payload, bool) else qe.PayloadSelector.Include(list(payload))


def _edge_sparse(sv: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(sv.indices.tolist(), sv.values.tolist())


@register_backend("", "edge")
def _open_edge(target: str, api_key: str | None = None, **opts: Any) -> EdgeStore:
    if api_key:
        raise StoreError("an API key was given but the embedded store takes none; did you mean an http(s):// URL?")
    return EdgeStore(target, **opts)

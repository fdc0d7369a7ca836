"""Server backend: ``qdrant_client.QdrantClient`` to a Qdrant server (``http(s)://``), or qdrant-client's local
mode (``:memory:`` / ``qdrant-local:<dir>``: same client API, brute-force engine; used by tests as the server's
stand-in and good for small single-user setups).

The CollectionSpec (with ``meta``) lives in Qdrant's native collection metadata (Qdrant >= 1.16) under the key
``lusifer_rag``; collections made by other tools (e.g. langchain-qdrant) carry none and are opened with a spec
derived from their vector parameters and ``meta = {}``.

Registered lazily by ``store/__init__.py``: importing qdrant-client takes seconds, and the embedded store
(the default) does not need it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
import warnings
from typing import Any, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from ..errors import StoreError
from .base import (CollectionSpec, Hit, Point, QueryPlan, SparseVector, VectorStore, dense_of, generation_name,
                   is_generation, point_from_record)
from .filters import Filter, FilterBuilders, translate

META_KEY = "lusifer_rag"


def _create_alias(alias: str, target: str):
    return models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=target, alias_name=alias))

_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_DISTANCE_BACK = {v: k for k, v in _DISTANCE.items()}
_INDEX_TYPE = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
}
_INDEX_BACK = {v.value: k for k, v in _INDEX_TYPE.items()}
_FILTERS = FilterBuilders(
    match_value=lambda k, v: models.FieldCondition(key=k, match=models.MatchValue(value=v)),
    match_any=lambda k, vs: models.FieldCondition(key=k, match=models.MatchAny(any=vs)),
    range=lambda k, lo, hi: models.FieldCondition(key=k, range=models.Range(gte=lo, lte=hi)),
    has_ids=lambda ids: models.HasIdCondition(has_id=ids),
    filter=lambda must, must_not: models.Filter(must=must or None, must_not=must_not or None),
)


class ServerStore(VectorStore):
    """A Qdrant server, or qdrant-client's local mode (then every call is serialised: it is not thread-safe)."""

    def __init__(self, client: QdrantClient, location: str, local: bool) -> None:
        super().__init__(location)
        self.client = client
        self.local = local
        self._serial = threading.RLock() if local else contextlib.nullcontext()
        # False: upserts return once the server has them in its WAL (bulk loads); True: once they are searchable
        self.wait_writes = True

    # ---- collections ------------------------------------------------------------------------------------
    def _create(self, name: str, spec: CollectionSpec) -> None:
        """A collection is created as a generation (``<name>--<12 hex>``) behind the alias ``name``, so that a
        re-index can later switch ``name`` to a new collection atomically."""
        physical = name if is_generation(name) else generation_name(name, uuid.uuid4().hex)
        self._create_physical(physical, spec)
        if physical != name:
            with self._serial:
                self.client.update_collection_aliases(change_aliases_operations=[_create_alias(name, physical)])

    def _create_physical(self, name: str, spec: CollectionSpec) -> None:
        on_disk = spec.on_disk or None
        dense = models.VectorParams(
            size=spec.dim, distance=_DISTANCE[spec.distance], on_disk=on_disk,
            hnsw_config=models.HnswConfigDiff(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct, on_disk=on_disk),
        )
        sparse = None
        if spec.sparse_name is not None:
            sparse = {
                spec.sparse_name: models.SparseVectorParams(
                    modifier=models.Modifier.IDF if spec.sparse_idf else None,
                    index=models.SparseIndexParams(on_disk=on_disk),
                )
            }
        quant = None
        if spec.quantization == "int8":
            quant = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
        elif spec.quantization == "binary":
            quant = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
        optimizers = None
        if spec.indexing_threshold_kb is not None:
            optimizers = models.OptimizersConfigDiff(indexing_threshold=spec.indexing_threshold_kb)
        with self._serial:
            self.client.create_collection(
                name,
                vectors_config=dense if spec.vector_name == "" else {spec.vector_name: dense},
                sparse_vectors_config=sparse, quantization_config=quant, optimizers_config=optimizers,
                on_disk_payload=on_disk, shard_number=spec.shard_number, replication_factor=spec.replication_factor,
                metadata={META_KEY: spec.to_dict()},
            )
            with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
                warnings.simplefilter("ignore")
                for key, kind in spec.payload_indexes.items():
                    self.client.create_payload_index(name, key, field_schema=_INDEX_TYPE[kind], wait=True)

    def _read_spec(self, name: str) -> CollectionSpec | None:
        with self._serial:
            if not self.client.collection_exists(name):
                return None
            info = self.client.get_collection(name)
        stored = (info.config.metadata or {}).get(META_KEY)
        if stored:
            return CollectionSpec.from_dict(stored)
        return _derive_spec(name, info)

    def _write_spec(self, name: str, spec: CollectionSpec) -> None:
        with self._serial:
            self.client.update_collection(name, metadata={META_KEY: spec.to_dict()})

    def _list(self) -> list[str]:
        with self._serial:
            return [c.name for c in self.client.get_collections().collections]

    def _drop(self, name: str) -> bool:
        with self._serial:
            if name in self._aliases() or not self.client.collection_exists(name):
                return False  # an alias is no collection of its own (the base class drops its target)
            return bool(self.client.delete_collection(name))

    def _aliases(self) -> dict[str, str]:
        with self._serial:
            return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def _switch_alias(self, alias: str, target: str) -> None:
        ops: list[Any] = []
        with self._serial:
            if alias in self._aliases():
                ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            elif self.client.collection_exists(alias):
                # a collection made before aliases (or by another tool) holds the name: Qdrant names are either
                # collections or aliases, so it must go first (the only switch with a gap, ~ one request)
                self.client.delete_collection(alias)
            ops.append(_create_alias(alias, target))
            self.client.update_collection_aliases(change_aliases_operations=ops)  # one atomic change

    def _remove_alias(self, alias: str) -> None:
        with self._serial:
            self.client.update_collection_aliases(change_aliases_operations=[
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))])

    # ---- data -------------------------------------------------------------------------------------------
    def _upsert_batch(self, name: str, spec: CollectionSpec, ids: list[str], dense: np.ndarray, points: Sequence[Point]) -> None:
        vn, sn = spec.vector_name, spec.sparse_name
        rows = dense.tolist()  # (b, dim) -> lists in one call
        with_sparse = [p.sparse is not None for p in points]
        if all(with_sparse) or not any(with_sparse):  # columnar batch: much cheaper to validate than PointStructs
            vectors: dict[str, Any] = {vn: rows}
            if any(with_sparse):
                vectors[sn] = [_sparse(p.sparse) for p in points]
            data: Any = models.Batch(ids=ids, vectors=vectors, payloads=[p.payload for p in points])
        else:
            data = [
                models.PointStruct(id=i, vector={vn: r, **({sn: _sparse(p.sparse)} if p.sparse is not None else {})}, payload=p.payload)
                for i, r, p in zip(ids, rows, points)
            ]
        with self._serial:
            self.client.upsert(name, data, wait=self.wait_writes)

    def _delete(self, name: str, flt: Filter) -> None:
        with self._serial:
            self.client.delete(name, points_selector=models.FilterSelector(filter=translate(flt, _FILTERS)), wait=True)

    def _set_payload(self, name: str, flt: Filter, payload: dict, key: str | None) -> None:
        with self._serial:
            self.client.set_payload(name, payload=payload, points=models.FilterSelector(filter=translate(flt, _FILTERS)),
                                    key=key, wait=True)

    def _create_index(self, name: str, key: str, kind: str) -> None:
        with self._serial:
            self.client.create_payload_index(name, key, field_schema=_INDEX_TYPE[kind], wait=True)

    def _call(self, spec: CollectionSpec, plan: QueryPlan) -> dict[str, Any]:
        """query_points' keyword arguments for one plan (also the fields of a batch's QueryRequest)."""
        flt = translate(plan.filter, _FILTERS)
        params = models.SearchParams(exact=plan.exact, hnsw_ef=None if plan.exact else max(plan.hnsw_ef or spec.hnsw_ef, plan.k))
        if self.local:  # brute force anyway; it warns about search params
            params = None
        elif spec.quantization and not plan.exact:
            params = models.SearchParams(
                hnsw_ef=max(plan.hnsw_ef or spec.hnsw_ef, plan.k),
                quantization=models.QuantizationSearchParams(rescore=True, oversampling=spec.oversampling)
            )
        dense_q = plan.dense.tolist() if plan.dense is not None else None
        sparse_q = _sparse(plan.sparse) if plan.sparse is not None else None
        payload = plan.payload if isinstance(plan.payload, bool) else list(plan.payload)
        common = dict(limit=plan.k, filter=flt, score_threshold=plan.score_threshold, with_payload=payload,
                      with_vector=bool(plan.with_vectors))
        if plan.mode == "hybrid":
            fusion = (
                models.FusionQuery(fusion=models.Fusion.RRF) if plan.rrf_k is None
                else models.RrfQuery(rrf=models.Rrf(k=plan.rrf_k))
            )
            prefetch = [
                models.Prefetch(query=dense_q, using=spec.vector_name, limit=plan.prefetch_limit, filter=flt, params=params),
                models.Prefetch(query=sparse_q, using=spec.sparse_name, limit=plan.prefetch_limit, filter=flt),
            ]
            return dict(prefetch=prefetch, query=fusion, **common)
        if plan.mode == "dense":
            return dict(query=dense_q, using=spec.vector_name, params=params, **common)
        return dict(query=sparse_q, using=spec.sparse_name, **common)

    @staticmethod
    def _hits(found, spec: CollectionSpec, plan: QueryPlan) -> list[Hit]:
        return [
            Hit(_id(p.id), float(p.score), p.payload or {}, dense_of(p.vector, spec) if plan.with_vectors else None)
            for p in found
        ]

    def _query(self, name: str, spec: CollectionSpec, plan: QueryPlan) -> list[Hit]:
        call = self._call(spec, plan)
        # query_points names three of QueryRequest's fields differently
        call["query_filter"], call["with_vectors"] = call.pop("filter"), call.pop("with_vector")
        if "params" in call:
            call["search_params"] = call.pop("params")
        with self._serial:
            found = self.client.query_points(name, **call).points
        return self._hits(found, spec, plan)

    def _query_batch(self, name: str, spec: CollectionSpec, plans: list[QueryPlan]) -> list[list[Hit]]:
        requests = [models.QueryRequest(**self._call(spec, plan)) for plan in plans]
        with self._serial:
            found = self.client.query_batch_points(name, requests=requests)
        return [self._hits(r.points, spec, plan) for r, plan in zip(found, plans)]

    def _retrieve(self, name: str, spec: CollectionSpec, ids: list[str], payload, with_vectors: bool) -> list[Point]:
        with self._serial:
            records = self.client.retrieve(name, ids, with_payload=payload if isinstance(payload, bool) else list(payload),
                                           with_vectors=with_vectors)
        return [point_from_record(_id(r.id), r.vector, r.payload, spec, with_vectors) for r in records]

    def _count(self, name: str, flt: Filter | None, exact: bool) -> int:
        with self._serial:
            return self.client.count(name, count_filter=translate(flt, _FILTERS), exact=exact).count

    def _scroll(self, name: str, flt: Filter | None, limit: int, offset: str | None, with_vectors: bool) -> tuple[list[Point], str | None]:
        spec = self._spec(name)
        with self._serial:
            records, nxt = self.client.scroll(
                name, scroll_filter=translate(flt, _FILTERS), limit=limit, offset=offset, with_payload=True,
                with_vectors=bool(with_vectors),
            )
        points = [point_from_record(_id(r.id), r.vector, r.payload, spec, with_vectors) for r in records]
        return points, (_id(nxt) if nxt is not None else None)

    def _facet(self, name: str, key: str, flt: Filter | None, limit: int) -> dict[Any, int]:
        with self._serial:
            resp = self.client.facet(name, key, facet_filter=translate(flt, _FILTERS), limit=limit, exact=True)
        return {h.value: int(h.count) for h in resp.hits}

    def _optimize(self, name: str) -> bool:
        return False  # the server optimizes in the background

    def _close(self) -> None:
        with self._serial:
            self.client.close()


def _id(value: Any) -> str:
    return str(uuid.UUID(str(value)))


def _sparse(sv: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=sv.indices.tolist(), values=sv.values.tolist())


def _derive_spec(name: str, info: models.CollectionInfo) -> CollectionSpec:
    """Spec of a collection made by another tool: its vector layout, no meta."""
    vectors = info.config.params.vectors
    if isinstance(vectors, dict):
        if len(vectors) != 1:
            raise StoreError(f"collection {name!r} has dense vectors {sorted(vectors)}; lusifer-rag reads collections with one")
        vector_name, params = next(iter(vectors.items()))
    else:
        vector_name, params = "", vectors
    sparse = info.config.params.sparse_vectors or {}
    sparse_name = next(iter(sparse), None)
    schema = info.payload_schema or {}
    return CollectionSpec(
        dim=params.size, distance=_DISTANCE_BACK.get(params.distance, "cosine"), vector_name=vector_name,
        sparse_name=sparse_name,
        sparse_idf=bool(sparse_name and sparse[sparse_name].modifier == models.Modifier.IDF),
        payload_indexes={k: _INDEX_BACK[v.data_type.value] for k, v in schema.items() if v.data_type.value in _INDEX_BACK},
        meta={},
    )


def open_remote(url: str, api_key: str | None = None, **opts: Any) -> ServerStore:
    try:
        client = QdrantClient(url=url, api_key=api_key, **opts)
    except Exception as exc:
        raise StoreError(f"cannot connect to the Qdrant server at {url}: {exc}") from exc
    return ServerStore(client, url, local=False)


def open_local(target: str, api_key: str | None = None, **opts: Any) -> ServerStore:
    try:
        client = QdrantClient(location=":memory:") if target == ":memory:" else QdrantClient(path=target)
    except Exception as exc:  # e.g. the folder is held by another process (qdrant-client's own lock)
        raise StoreError(f"cannot open qdrant-client local storage {target}: {exc}") from exc
    return ServerStore(client, target if target == ":memory:" else f"qdrant-local:{target}", local=True)

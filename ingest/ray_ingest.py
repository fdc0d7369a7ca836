"""Batch ingestion on Ray Data: the single-machine pipeline (``lusifer_rag.ingest.pipeline``) spread over a Ray cluster.

    driver:   list files, hash them, skip complete ones (same state/point-id scheme as ``Ingestor``)
    CPU pool: parse + chunk (actors; each parses in a worker process of its own under the per-file time and memory
              caps of the single-machine pipeline, so a hostile file fails alone, reported by name)
    GPU pool: embed (one model replica per actor, ``num_gpus=1``; CPU actors when the cluster has no GPU);
              the embedder batches by token budget inside each call
    writers:  a Qdrant server (``http(s)://``): one writer actor per shard, ``wait=false`` upserts with retries;
              a process-bound store (embedded Qdrant Edge, qdrant-client local mode): the driver is the one writer
    driver:   once all of a document's chunks are written, delete its stale states and report the file

Guarantees are the single-machine ones because the decisions are the same code: a document is complete when the
store holds ``chunk_count`` points of its current state, point ids are uuid5(doc_id, state, chunk_no), and stale
states are deleted only after the new points are written. A job killed at any moment leaves at worst incomplete
documents (re-ingested by the next run, rewriting the same ids) or stale states next to complete ones (deleted by
the next run's skip check): rerunning the command finishes the job without duplicates.

Python entry point: :func:`ingest_with_ray`; CLI: ``lusifer-rag ingest PATH... --ray [ADDRESS]``.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from lusifer_rag.errors import ConfigError, IngestError, StoreError
from lusifer_rag.store import Point, VectorStore, open_store, parse_location

from lusifer_rag.embedder.base import weightless

from .chunking import ChunkingParams
from .options import LoadOptions
from .bounded_pool import FileLimits
from .pipeline import (FilePlan, FileResult, Ingestor, IngestReport, Progress, _ChunkPool, _worker_counter,
                       embed_texts, expand_paths, sparse_encoder_for,
                       with_sentence_vectors)
from .scale import ScaleSettings, can_defer, finish_bulk_load

if TYPE_CHECKING:
    from lusifer_rag.embedder import Embedder

CHUNK_COLUMNS = ("id", "doc_id", "state", "text", "payload", "result", "tokens")


# ---- public API -------------------------------------------------------------------------------------------
def ingest_with_ray(
    paths: Iterable[str | os.PathLike],
    collection: str,
    store_location: str,
    embedder_spec: "str | Embedder",
    *,
    chunking: ChunkingParams | dict[str, int] | None = None,
    scale: ScaleSettings | None = None,
    workers: int | None = None,
    parsers: int | None = None,
    address: str | None = None,
    api_key: str | None = None,
    embedder_options: dict[str, Any] | None = None,
    embed_batch_chunks: int = 256,
    embed_cpus: float = 1.0,
    write_batch: int = 256,
    retries: int = 5,
    max_bytes: int | None = None,
    load_options: LoadOptions | None = None,
    prune: bool = False,
    runtime_env: dict[str, Any] | None = None,
    progress_mode: str | None = None,
    sentence_vectors: bool = True,
    limits: FileLimits = FileLimits(),
) -> IngestReport:
    """Ingest ``paths`` into ``collection`` at ``store_location`` on Ray; returns the same report as ``Ingestor.ingest``.

    ``sentence_vectors``: store each chunk's sentence vectors for search highlights (as ``Ingestor``).
    ``limits``: each file's parse time and memory caps (``Settings.ingest_file_timeout`` / ``ingest_file_memory_mb``).
    ``embedder_spec``: loaded once per embedding actor, and once on a worker to read its tokenizer/fingerprint for
    the driver; or an embedder already loaded in this process (the driver then uses it without weights, and the
    actors load its ``spec``).
    ``chunking``: ChunkingParams, or overrides (``max_tokens``, ``overlap_tokens``) of the CLI's default
    ``ChunkingParams(max_tokens=min(model max, 512))``.
    ``scale``: collection layout for a new collection (shards, replication, on-disk, quantization, deferred HNSW).
    ``workers``: embedding actors, each with ``embed_cpus`` CPUs and one GPU when the cluster has GPUs
    (default: the cluster's GPU count, else 1 CPU actor).
    ``parsers``: most parse/chunk actors (default: the CPUs left over, at least 1).
    ``address``: Ray cluster address (``auto``, ``ray://head:10001``); None: join an initialised Ray or start a
    local one. ``runtime_env``: given to ``ray.init`` (e.g. ``{"working_dir": "."}`` when nodes lack the package).
    ``embedder_options``: ``device``/``dtype``/``max_batch_tokens``/``cache_dir``... for ``load_embedder``.
    """
    import ray

    if embed_batch_chunks < 1 or write_batch < 1 or retries < 0:
        raise ConfigError(f"embed_batch_chunks and write_batch must be >= 1 and retries >= 0; got "
                          f"{embed_batch_chunks}, {write_batch}, {retries}")
    t0 = time.time()
    scale = scale or ScaleSettings()
    paths = list(paths)
    files = expand_paths(paths)
    _connect(address, runtime_env)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    workers = workers or max(gpus, 1)
    options = dict(embedder_options or {})
    device = options.pop("device", None) or ("cuda" if gpus else "cpu")
    gpu_per_actor = 1 if gpus and str(device).startswith("cuda") else 0
    if isinstance(embedder_spec, str):
        view = ray.get(ray.remote(_describe).options(num_gpus=gpu_per_actor).remote(embedder_spec, device, options))
    else:
        view, embedder_spec = weightless(embedder_spec), embedder_spec.spec
    if not isinstance(chunking, ChunkingParams):
        chunking = ChunkingParams(**{"max_tokens": min(view.max_tokens, 512), **(chunking or {})})
    cpus = float(ray.cluster_resources().get("CPU", 1))
    parsers = parsers or max(1, int(cpus - workers * embed_cpus))

    with open_store(store_location, api_key=api_key) as store:
        planner = _Planner(store, collection, view, chunking, scale, load_options)
        report = IngestReport(collection)
        progress = Progress(len(files), progress_mode, report)

        def finish(result: FileResult) -> None:
            report.results.append(result)
            progress.file_done(result)

        try:
            todo: list[FilePlan] = []
            for plan in _plan_all(planner, files):
                if isinstance(plan, FileResult):
                    finish(plan)
                else:
                    todo.append(plan)
            if todo:
                ds = _chunk_and_embed(todo, view, embedder_spec, device, options, chunking, parsers, workers,
                                      gpu_per_actor, embed_cpus, embed_batch_chunks, max_bytes,
                                      planner.load_options, sentence_vectors, limits)
                writer = _WRITERS.get(parse_location(store_location)[0], _driver_writer)
                ctx = _WriteContext(store, collection, store_location, api_key, scale.writer_count(
                    store.open_collection(collection)), write_batch, retries)
                _complete(planner, writer(ds, ctx), report, finish)
            finish_bulk_load(store, collection, scale, wrote=report.embedded_chunks > 0)
            if prune:
                roots = [str(Path(p).resolve()) for p in paths]
                for r in planner.prune(roots, keep={str(f) for f in files}):
                    finish(r)
        finally:
            progress.close()
    report.seconds = time.time() - t0
    return report


def ingest_from_args(args, settings) -> IngestReport:
    """``lusifer-rag ingest ... --ray [ADDRESS]``: the CLI's arguments and settings mapped onto :func:`ingest_with_ray`."""
    spec = args.embedder
    if not spec:  # a collection remembers its embedder
        with open_store(settings.store_location, api_key=settings.qdrant_api_key) as store:
            if settings.collection in store.list_collections():
                spec = (store.open_collection(settings.collection).meta or {}).get("embedder")
    # no cache_dir: hf: specs refuse it; e5-small reads it from the same LUSIFER_RAG_* settings on the worker
    options = {"dtype": settings.dtype, "device": settings.device,
               "max_batch_tokens": settings.max_batch_tokens, "max_batch_size": settings.max_batch_size}
    scale = ScaleSettings(shards=args.shards, replication_factor=args.replication, on_disk=args.on_disk,
                          quantization=args.quantization)
    chunking = {k: v for k, v in (("max_tokens", args.max_tokens), ("overlap_tokens", args.overlap)) if v}
    return ingest_with_ray(
        args.paths, settings.collection, settings.store_location, spec or settings.embedder, chunking=chunking,
        scale=scale, workers=args.workers, address=None if args.ray == "local" else args.ray,
        api_key=settings.qdrant_api_key, embedder_options={k: v for k, v in options.items() if v is not None},
        embed_batch_chunks=settings.ingest_batch_chunks, prune=args.prune,
        load_options=_load_options(args, settings), sentence_vectors=settings.sentence_vectors,
        limits=FileLimits.from_settings(settings),
    )


def _load_options(args, settings) -> LoadOptions:
    from .cli import load_options

    return load_options(args, settings)


# ---- driver side ------------------------------------------------------------------------------------------
class _Planner(Ingestor):
    """The single-machine Ingestor's store-side logic (states, skip checks, stale deletes, prune) on the driver,
    with a weightless embedder; a new collection gets the scale layout."""

    def __init__(self, store: VectorStore, collection: str, view, chunking: ChunkingParams, scale: ScaleSettings,
                 load_options: LoadOptions | None = None):
        self.scale = scale
        super().__init__(store, collection, view, chunking, workers=1, load_options=load_options)

    def _ensure_collection(self) -> None:
        if self.collection not in self.store.list_collections():
            spec = self.scale.creation_spec(self.embedder.dim, self.collection_meta(), defer=can_defer(self.store))
            self.store.create_collection(self.collection, spec)
            return
        super()._ensure_collection()


def _plan_all(planner: _Planner, files: list[Path]) -> Iterator[FileResult | FilePlan]:
    """Hash + skip-check every file; a few threads overlap file reads and store round trips (order kept)."""
    with ThreadPoolExecutor(8) as pool:
        yield from pool.map(lambda f: planner.plan_file(str(f), f), files)


def _connect(address: str | None, runtime_env: dict[str, Any] | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address in (None, "", "local"):
        # a local Ray's workers run this Python, where lusifer_rag is installed (a wheel or an editable install)
        ray.init(runtime_env=runtime_env, log_to_driver=False, include_dashboard=False)
    else:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)


def _chunk_and_embed(todo, view, spec, device, options, chunking, parsers, workers, gpu_per_actor, embed_cpus,
                     embed_batch_chunks, max_bytes, load_options, sentence_vectors, limits):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own progress reports files; Ray's bars would interleave with it
    ds = ray.data.from_items([asdict(p) for p in todo], override_num_blocks=min(len(todo), max(4 * parsers, 1)))
    ds = ds.map_batches(
        _ParseChunk, fn_constructor_kwargs={"view": view, "chunking": chunking, "max_bytes": max_bytes,
                               "load_options": load_options, "limits": limits},
        batch_size=1, batch_format="pandas", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=parsers),
    )
    # GPU actors keep ``embed_cpus`` CPUs too: tokenization and batch assembly run on the host
    embed_resources = {"num_cpus": embed_cpus, **({"num_gpus": 1} if gpu_per_actor else {})}
    return ds.map_batches(
        _Embed, fn_constructor_kwargs={"spec": spec, "device": device, "options": options, "chunking": chunking,
                                       "sentence_vectors": sentence_vectors},
        batch_size=embed_batch_chunks, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2), **embed_resources,
    )


def _complete(planner: _Planner, written: Iterator[dict], report: IngestReport, finish: Callable) -> None:
    """Count written chunks per document; when one is complete delete its stale states and report it."""
    results: dict[str, FileResult] = {}
    counts: dict[str, int] = {}
    states: dict[str, str] = {}
    for batch in written:
        ids, doc_ids = batch["id"], batch["doc_id"]
        ok = ids != ""
        for raw in batch["result"][~ok]:  # failed files pass through as one row each
            finish(FileResult(**json.loads(raw)))
        report.embedded_chunks += int(ok.sum())
        report.embedded_tokens += int(batch["tokens"][ok].sum())
        docs, first, n = np.unique(doc_ids[ok], return_index=True, return_counts=True)
        for doc_id, i, c in zip(docs, first, n):  # per document, not per chunk
            if doc_id not in results:
                results[doc_id] = FileResult(**json.loads(batch["result"][ok][i]))
                states[doc_id] = batch["state"][ok][i]
            counts[doc_id] = counts.get(doc_id, 0) + int(c)
            if counts[doc_id] == results[doc_id].chunks:
                planner._delete_stale(doc_id, states[doc_id])
                finish(results.pop(doc_id))
    if results:  # cannot happen unless rows were lost: say which documents stay incomplete
        raise IngestError(f"{len(results)} documents were not fully written (rerun to finish): "
                          + ", ".join(r.source for r in list(results.values())[:5]))


# ---- Ray workers --------------------------------------------------------------------------------------------
def _describe(spec: str, device: str, options: dict) -> Any:
    from lusifer_rag.embedder import load_embedder

    return weightless(load_embedder(spec, device=device, **options))


class _ParseChunk:
    """CPU actor: files -> chunk rows (one row per chunk; one row with id "" per failed file). The parsing runs in a
    worker process of the actor's own under the per-file caps (``_ChunkPool``, as on one machine): a file past its
    time or memory cap, or one that crashes its parser, is a failed row and the actor goes on."""

    def __init__(self, view, chunking: ChunkingParams, max_bytes: int | None, load_options: LoadOptions | None = None,
                 limits: FileLimits = FileLimits()):
        self.pool = _ChunkPool(1, (_worker_counter(view), chunking, max_bytes, load_options, None), limits=limits)

    def __call__(self, batch):  # pandas DataFrame of FilePlan rows
        import pandas as pd

        rows: dict[str, list] = {c: [] for c in CHUNK_COLUMNS}
        plans = [FilePlan(**rec) for rec in batch.to_dict("records")]
        pending = [self.pool.submit(plan) for plan in plans]
        for plan in plans:
            result, items = self.pool.result(pending)
            result_json = json.dumps(asdict(result), ensure_ascii=False)
            for pid, payload in items or [("", None)]:
                rows["id"].append(pid)
                rows["doc_id"].append(plan.doc_id)
                rows["state"].append(plan.state)
                rows["text"].append(payload["page_content"] if payload else "")
                rows["payload"].append(json.dumps(payload, ensure_ascii=False) if payload else "")
                rows["result"].append(result_json)
                rows["tokens"].append(payload["metadata"]["token_count"] if payload else 0)
        return pd.DataFrame(rows)


class _Embed:
    """Embedding actor: the model is loaded once; each call embeds a batch of chunk texts (token-budget batching
    inside ``embed_documents``) and adds ``dense`` (n, dim) and BM25 ``sparse_indices``/``sparse_values`` bytes."""

    def __init__(self, spec: str, device: str, options: dict, chunking: ChunkingParams, sentence_vectors: bool):
        from lusifer_rag.embedder import load_embedder

        self.sentence_vectors = sentence_vectors
        self.embedder = load_embedder(spec, device=device, **options)
        self.sparse = sparse_encoder_for(self.embedder, chunking)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["id"] != ""
        n = len(batch["id"])
        dense = np.zeros((n, self.embedder.dim), dtype=np.float32)  # (n, dim); failed-file rows stay zero
        sp_idx = np.full(n, b"", dtype=object)
        sp_val = np.full(n, b"", dtype=object)
        out = {k: v for k, v in batch.items() if k != "text"}
        if ok.any():
            texts = batch["text"][ok].tolist()
            vecs, sparse = embed_texts(self.embedder, self.sparse, texts)
            dense[ok] = vecs
            if self.sentence_vectors:
                payloads = [json.loads(p) for p in batch["payload"][ok]]
                payloads = with_sentence_vectors(self.embedder, texts, payloads, True)
                out["payload"] = batch["payload"].copy()
                out["payload"][ok] = [json.dumps(p, ensure_ascii=False) for p in payloads]
            sp_idx[ok] = [s.indices.astype(np.uint32).tobytes() for s in sparse]
            sp_val[ok] = [s.values.astype(np.float32).tobytes() for s in sparse]
        out.update(dense=dense, sparse_indices=sp_idx, sparse_values=sp_val)
        return out


# ---- writers --------------------------------------------------------------------------------------------------
class _WriteContext:
    def __init__(self, store, collection, location, api_key, writers, batch, retries):
        self.store, self.collection, self.location, self.api_key = store, collection, location, api_key
        self.writers, self.batch, self.retries = writers, batch, retries


def points_from_batch(batch: dict[str, np.ndarray]) -> list[Point]:
    """Store points of an embedded batch's chunk rows (failed-file rows skipped)."""
    from lusifer_rag.embedder.sparse import SparseVector

    ok = np.flatnonzero(batch["id"] != "")
    return [
        Point(id=batch["id"][i], vector=batch["dense"][i], payload=json.loads(batch["payload"][i]),
              sparse=SparseVector(np.frombuffer(batch["sparse_indices"][i], dtype=np.uint32),
                                  np.frombuffer(batch["sparse_values"][i], dtype=np.float32)))
        for i in ok
    ]


def upsert_with_retries(store: VectorStore, collection: str, points: list[Point], retries: int) -> None:
    """Upsert, retrying transient failures with exponential backoff (ids are deterministic: retrying is safe)."""
    for attempt in range(retries + 1):
        try:
            store.upsert(collection, points)
            return
        except StoreError:
            if attempt == retries:
                raise
            time.sleep(min(0.5 * 2**attempt, 10.0))


def _slim(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the driver needs back of a written batch (no vectors, no payloads)."""
    return {k: batch[k] for k in ("id", "doc_id", "state", "result", "tokens")}


def _driver_writer(ds, ctx: _WriteContext) -> Iterator[dict]:
    """The driver writes: the only choice for a store one process holds (embedded Edge, qdrant-client local)."""
    for batch in ds.iter_batches(batch_size=ctx.batch, batch_format="numpy", prefetch_batches=2):
        points = points_from_batch(batch)
        if points:
            upsert_with_retries(ctx.store, ctx.collection, points, ctx.retries)
        yield _slim(batch)


class _ServerWriter:
    """Writer actor: its own connection to the Qdrant server, ``wait=false`` upserts (acknowledged once in the
    server's WAL), retried on failure."""

    def __init__(self, location: str, api_key: str | None, collection: str, retries: int):
        self.store = open_store(location, api_key=api_key)
        self.store.wait_writes = False
        self.collection, self.retries = collection, retries

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        points = points_from_batch(batch)
        if points:
            upsert_with_retries(self.store, self.collection, points, self.retries)
        return _slim(batch)


def _server_writers(ds, ctx: _WriteContext) -> Iterator[dict]:
    """One writer actor per shard (Qdrant's bulk-upload advice: parallel streams = shards)."""
    import ray.data

    written = ds.map_batches(
        _ServerWriter, fn_constructor_kwargs={"location": ctx.location, "api_key": ctx.api_key,
                                              "collection": ctx.collection, "retries": ctx.retries},
        batch_size=ctx.batch, batch_format="numpy", num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=ctx.writers),
    )
    yield from written.iter_batches(batch_size=None, batch_format="numpy")


# store scheme -> how points reach it; anything else is written by the driver
_WRITERS: dict[str, Callable[[Any, _WriteContext], Iterator[dict]]] = {"http": _server_writers, "https": _server_writers}

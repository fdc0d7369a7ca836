"""Files → chunks → vectors → store: idempotent, incremental, resumable.

A document's identity is its source (a path, unique in the collection: the CLI's absolute path, an upload's
relative path made unique by the app, ingest/identity.py); its *state* is a hash of (content, chunking
parameters, embedder fingerprint, sparse encoder). A file whose bytes another document of the collection already
holds is reported ``duplicate`` and not indexed twice. Point ids are uuid5(doc_id, state, chunk_no), so re-running after a crash
rewrites the same points (no duplicates). A document is complete when the store holds ``chunk_count`` points
with its current state; points of an older state are deleted only after the new ones are written.

Worker processes parse and chunk, one file at a time each under a wall-clock and memory cap (``FileLimits``;
ingest/bounded_pool.py), the calling thread embeds, a writer thread upserts; bounded queues keep memory flat on
large inputs. ``Ingestor.cancel()`` (another thread, a signal handler) stops a run between batches and kills the
workers; what was written stays, and the same ingest run again resumes (finished files are skipped as unchanged).
``workers=0`` parses in the calling thread instead: no caps, no cancelling a file midway (trusted input only).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lusifer_rag.errors import ConfigError, IngestError
from lusifer_rag.store import CollectionSpec, Filter, Point, VectorStore
from lusifer_rag.store.filters import both

from .bounded_pool import BoundedPool, FileLimits
from .chunking import Chunker, ChunkingParams
from .loaders import SNIFF_BYTES, LoadedDocument, load_document, state_key
from .options import LoadOptions
from .progress import Progress

NAMESPACE = uuid.UUID("6f1c1f0e-5b7e-4c8e-9a57-1a2b3c4d5e6f")
SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}


def doc_id_for(source: str) -> str:
    return str(uuid.uuid5(NAMESPACE, source))


def point_id(doc_id: str, state: str, chunk_no: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}:{state}:{chunk_no}"))


#: what became of a file: new, a new version of its source, unchanged, the same bytes as another document of the
#: collection (``message`` names it; nothing indexed), not loadable (``reason``), removed by --prune, or not done
#: because the ingest was cancelled (run it again to resume)
STATUSES = ("ingested", "replaced", "skipped", "duplicate", "pruned", "failed", "cancelled")


@dataclass
class FileResult:
    source: str
    status: str  # one of STATUSES
    reason: str = ""
    message: str = ""
    chunks: int = 0
    pages: int = 0
    language: str = ""
    ocr_pages: int = 0  # pages whose text was read by OCR
    empty_pages: list = field(default_factory=list)  # [page, why] of pages that gave no text, OCR included
    doc_id: str = ""  # the document this file is (for a duplicate: the document that holds its content)
    content_hash: str = ""  # sha256 of the file's bytes


@dataclass
class IngestReport:
    collection: str
    results: list[FileResult] = field(default_factory=list)
    embedded_chunks: int = 0
    embedded_tokens: int = 0
    seconds: float = 0.0

    def by_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        return 130 if self.by_status("cancelled") else 1 if self.by_status("failed") else 0

    def summary(self) -> str:
        c = Counter(r.status for r in self.results)
        parts = [f"{c.get(s, 0)} {s}" for s in STATUSES if s != "cancelled" or c.get(s)]
        rate = self.embedded_tokens / self.seconds if self.seconds else 0.0
        ocr = sum(r.ocr_pages for r in self.results)
        return (f"{self.collection}: " + ", ".join(parts)
                + (f"; {ocr} pages OCR'd" if ocr else "")
                + f"; {self.embedded_chunks} chunks embedded ({rate:,.0f} tokens/s) in {self.seconds:.1f}s")

    def to_json(self) -> dict:
        out: dict = {"collection": self.collection, "seconds": round(self.seconds, 3),
                     "embedded_chunks": self.embedded_chunks, "embedded_tokens": self.embedded_tokens}
        for status in STATUSES:
            out[status] = [asdict(r) for r in self.by_status(status)]
        return out


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files under the given files/directories (recursive, hidden and tool dirs skipped), sorted, unique."""
    out: dict[str, Path] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
        if p.is_file():
            out[str(p.resolve())] = p.resolve()
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
            for name in files:
                if not name.startswith("."):
                    f = Path(root, name).resolve()
                    out[str(f)] = f
    return [out[k] for k in sorted(out)]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(path: str, max_bytes: int | None, options: LoadOptions | None = None,
          on_page: Callable[[int, int], None] | None = None) -> LoadedDocument:  # also runs in worker processes
    kw = {"max_bytes": max_bytes} if max_bytes else {}
    return load_document(path, options=options, on_page=on_page, **kw)


# ---- worker processes: parse + chunk (tokenizer and language models loaded once per worker) ----------------
_worker: tuple[Chunker, int | None, LoadOptions | None, object] | None = None


def _init_chunk_worker(counter, chunking: ChunkingParams, max_bytes: int | None, options: LoadOptions | None = None,
                       pages_queue=None) -> None:
    """``counter``: the embedder's TokenCounter, or a weightless copy of the embedder when it has none;
    ``pages_queue``: where page progress goes ((source, done, total) tuples)."""
    global _worker
    _exit_with_parent()
    if not callable(counter):
        counter = _document_counter(counter)
    _worker = (Chunker.from_params(counter, chunking), max_bytes, options, pages_queue)
    _preload_language_models()
    # ready at full priority (the first chunks are awaited); from now on parsing fills the gaps the embedder
    # leaves: with a CPU embedder the cores are the embedder's, and oversubscribing them costs more than it gives
    os.nice(10)


def _exit_with_parent() -> None:
    """A pool worker blocks on its task queue forever when the main process is killed (kill -9, OOM): it holds
    the queue's write end itself, so it never reads EOF. Watch the parent and leave with it."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (wait([parent.sentinel]), os._exit(0)), name="exit-with-parent",
                         daemon=True).start()


def _parse_and_chunk(plan: "FilePlan") -> tuple["FileResult", list[tuple[str, dict]]]:
    chunker, max_bytes, options, pages_queue = _worker
    on_page = (lambda done, total: pages_queue.put((plan.source, done, total))) if pages_queue is not None else None
    return chunk_document(chunker, plan, lambda: _load(plan.path, max_bytes, options, on_page))


class Ingestor:
    """The ingest pipeline for one collection. ``ingest(paths)`` for the CLI and batch jobs, ``ingest_files``
    for uploads whose source name differs from their temp path (the web app)."""

    def __init__(self, store: VectorStore, collection: str, embedder, chunking: ChunkingParams | None = None,
                 *, workers: int | None = None, embed_batch_chunks: int = 256, max_bytes: int | None = None,
                 on_progress: Callable[[int, int, FileResult], None] | None = None, progress_mode: str | None = None,
                 load_options: LoadOptions | None = None, sentence_vectors: bool = True,
                 limits: FileLimits | None = None):
        """``sentence_vectors``: store each chunk's sentence vectors for search highlights
        (ingest/sentence_vectors.py; about doubles the embedding work); ``limits``: the per-file caps of the worker
        processes (default: the settings')."""
        self.store, self.collection, self.embedder = store, collection, embedder
        self.sentence_vectors = sentence_vectors
        self.load_options = load_options or LoadOptions()
        self.chunking = chunking or ChunkingParams(max_tokens=min(embedder.max_tokens, 512))
        self.workers = workers if workers is not None else default_workers(embedder)
        self.embed_batch_chunks, self.max_bytes = embed_batch_chunks, max_bytes
        self.on_progress, self.progress_mode = on_progress, progress_mode
        if limits is None:
            from lusifer_rag.settings import Settings

            limits = FileLimits.from_settings(Settings.from_env())
        self.limits = limits
        self._cancel = threading.Event()
        #: doc_id -> who may read its chunks (their ``acl`` payload, app/access.py); None: no acl is written
        self.acl_for: Callable[[str], list[str]] | None = None
        self.on_page: Callable[[str, int, int], None] | None = None  # a paged document's progress (source, done, total)
        #: the running ingest's chunk counts, read by progress displays: chunked so far, and embedded of those
        self.live = {"chunked": 0, "embedded": 0}
        self.sparse = sparse_encoder_for(embedder, self.chunking)
        self.chunker = chunker_for(embedder, self.chunking)
        self.state_salt = json.dumps({"chunking": asdict(self.chunking), "fingerprint": embedder.fingerprint,
                                      "sparse": self.sparse.params}, sort_keys=True)
        self._buffer: list[tuple[str, dict]] = []  # (point id, payload) waiting to be embedded
        self._buffer_tokens = 0
        self._docs: list[tuple] = []  # documents whose chunks are all in _buffer
        self._ensure_collection()

    # ---- collection ------------------------------------------------------------------------------
    def collection_meta(self) -> dict:
        return {"embedder": self.embedder.spec, "embedder_fingerprint": self.embedder.fingerprint,
                "dim": self.embedder.dim, "chunking": asdict(self.chunking), "sparse": self.sparse.params}

    def _ensure_collection(self) -> None:
        if self.collection not in self.store.list_collections():
            self.store.create_collection(self.collection, CollectionSpec(dim=self.embedder.dim, meta=self.collection_meta()))
            return
        # refuses (StoreError naming both) when the collection was written by another embedder
        spec = self.store.open_collection(self.collection, expect=self.collection_meta())
        meta = spec.meta or {}
        if meta.get("chunking") != asdict(self.chunking) or meta.get("sparse") != self.sparse.params:
            # every document's state changes with these, so each one is re-chunked and replaced on this run
            self.store.update_meta(self.collection, self.collection_meta())

    def state_for(self, content_hash: str, loader_key: str = "") -> str:
        """``loader_key``: what besides the bytes decides the format's text (PDF backend, OCR settings); empty for
        formats read the same whatever the options (so their documents keep their state when options change)."""
        salt = f"{self.state_salt}:{loader_key}" if loader_key else self.state_salt
        return hashlib.sha256(f"{content_hash}:{salt}".encode()).hexdigest()[:24]

    def _stored_state(self, doc_id: str) -> tuple[str | None, int]:
        """(state, chunk_count) recorded on one of the document's points, or (None, 0)."""
        points, _ = self.store.scroll(self.collection, filter=Filter(must={"metadata.doc_id": doc_id}), limit=1)
        if not points:
            return None, 0
        md = points[0].payload.get("metadata", {})
        return md.get("state"), int(md.get("chunk_count", 0))

    def _is_complete(self, doc_id: str, state: str) -> bool:
        stored, chunk_count = self._stored_state(doc_id)
        if stored != state:
            f = Filter(must={"metadata.doc_id": doc_id, "metadata.state": state})
            stored_count = self.store.count(self.collection, f)
            if stored_count == 0:
                return False
            # the sampled point was stale but current ones exist: read chunk_count from a current one
            points, _ = self.store.scroll(self.collection, filter=f, limit=1)
            chunk_count = int(points[0].payload["metadata"]["chunk_count"])
            return stored_count == chunk_count
        return self.store.count(self.collection, Filter(must={"metadata.doc_id": doc_id, "metadata.state": state})) == chunk_count

    def _delete_stale(self, doc_id: str, state: str) -> int:
        f = Filter(must={"metadata.doc_id": doc_id}, must_not={"metadata.state": state})
        n = self.store.count(self.collection, f)
        if n:
            self.store.delete(self.collection, f)
        return n

    # ---- public API ------------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | os.PathLike], prune: bool = False) -> IngestReport:
        paths = list(paths)
        files = expand_paths(paths)
        pruned: list[FileResult] = []
        if prune:  # first: a copy of a pruned file's content is then ingested, not taken for a duplicate of it
            roots = [str(Path(p).resolve()) for p in paths]
            pruned = self.prune(roots, keep={str(f) for f in files})
        report = self.ingest_files([(str(f), f) for f in files])
        report.results += pruned
        return report

    def documents(self, access: Filter | None = None) -> dict[str, dict]:
        """doc_id → metadata of its first chunk, for every document in the collection (that ``access`` admits)."""
        docs: dict[str, dict] = {}
        offset = None
        while True:
            points, offset = self.store.scroll(self.collection, filter=both(Filter(must={"metadata.chunk_no": 0}), access),
                                               limit=512, offset=offset)
            for p in points:
                md = p.payload.get("metadata", {})
                docs.setdefault(md.get("doc_id"), md)
            if offset is None:
                return docs

    def holder_of(self, content_hash: str) -> dict | None:
        """Metadata (first chunk) of a document of the collection whose file had these bytes, or None."""
        points, _ = self.store.scroll(self.collection, limit=1, filter=Filter(
            must={"metadata.content_hash": content_hash, "metadata.chunk_no": 0}))
        return points[0].payload.get("metadata", {}) if points else None

    def prune(self, roots: list[str], keep: set[str]) -> list[FileResult]:
        """Delete documents under ``roots`` whose files are gone."""
        out = []
        for doc_id, md in self.documents().items():
            source = md.get("source", "")
            under = any(source == r or source.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
            if under and source not in keep and not os.path.exists(source):
                self.delete_document(doc_id=doc_id)
                out.append(FileResult(source, "pruned", chunks=int(md.get("chunk_count", 0))))
        return out

    def delete_document(self, source: str | None = None, doc_id: str | None = None) -> int:
        doc_id = doc_id or doc_id_for(source or "")
        f = Filter(must={"metadata.doc_id": doc_id})
        n = self.store.count(self.collection, f)
        self.store.delete(self.collection, f)
        return n

    def cancel(self) -> None:
        """Stop the running ingest (from another thread or a signal handler): files not finished are reported
        ``cancelled``; running it again resumes."""
        self._cancel.set()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled

    def ingest_files(self, files: list[tuple[str, Path]]) -> IngestReport:
        """Ingest ``(source, path)`` pairs: the source is the document's identity, the path where to read it."""
        t0 = time.time()
        self._cancel.clear()
        report = IngestReport(self.collection)
        progress = Progress(len(files), self.progress_mode, report)
        progress.on_page = self.on_page
        lock = threading.Lock()  # the writer thread finishes files too
        claimed: dict[str, FilePlan] = {}  # content hash -> the file of this batch that indexes it
        self.live = {"chunked": 0, "embedded": 0}

        def finish(result: FileResult) -> None:
            with lock:
                report.results.append(result)
                progress.file_done(result)
                if self.on_progress:
                    self.on_progress(len(report.results), len(files), result)

        writer = _Writer(self)
        pending: list[_Pending] = []
        max_in_flight = max(4, 2 * self.workers)  # chunked documents waiting: bounded memory, workers kept busy
        # workers parse and chunk; this thread embeds (the model stays in this process) and a writer upserts;
        # workers=0: this thread parses and chunks too, between embeddings, except big files (scans to OCR, long
        # books), which a thread of their own reads meanwhile, so that one of them does not hold the rest back
        pages_queue = _mp_context().SimpleQueue() if self.workers > 0 else None
        pool = (_ChunkPool(self.workers, (_worker_counter(self.embedder), self.chunking, self.max_bytes,
                                          self.load_options, pages_queue), limits=self.limits)
                if self.workers > 0 else None)
        big_lane = _BigFileLane(self) if pool is None else None

        def drain() -> None:
            while pages_queue is not None and not pages_queue.empty():
                progress.page_done(*pages_queue.get())

        try:
            seen: set[str] = set()
            for source, path in files:
                self._check_cancel()
                if source in seen:  # one source, one document: a second file would delete the first's chunks
                    finish(FileResult(source, "failed", "name-clash", f"{source}: another file of this batch has "
                                      "the same name; give each file its own name"))
                    continue
                seen.add(source)
                plan = self.plan_file(source, path, claimed)
                if isinstance(plan, FileResult):
                    finish(plan)
                    continue
                if big_lane is not None and _size(path) >= BIG_FILE_BYTES:
                    pending.append(big_lane.submit(plan, progress))
                elif pool is None:
                    on_page = lambda done, total, source=source: progress.page_done(source, done, total)  # noqa: E731
                    pending.append(_Pending(plan, _done(chunk_document(
                        self.chunker, plan, lambda: _load(plan.path, self.max_bytes, self.load_options, on_page)))))
                else:
                    pending.append(pool.submit(plan))
                while len(pending) >= max_in_flight:
                    self._process(pending, pool, writer, report, finish, drain)
            while pending:
                self._process(pending, pool, writer, report, finish, drain)
            self._flush(writer, report)
            writer.close()
        except _Cancelled:
            if pool is not None:
                pool.cancel()
            self._buffer.clear()  # chunks not embedded yet: their documents are done again on the next run
            self._buffer_tokens = 0
            self._docs.clear()
            writer.close()  # batches handed to the writer are written, and their documents finished
            done = {r.source for r in report.results}
            for source, _ in files:
                if source not in done:
                    report.results.append(FileResult(source, "cancelled", message=f"{source}: not done: the "
                                                     "ingest was cancelled (run it again to resume)"))
        finally:
            if pool is not None:
                pool.close()
            if big_lane is not None:
                big_lane.close()
            writer.close(raise_errors=False)
            progress.close()
        if report.embedded_chunks:
            self.store.optimize(self.collection)
        report.seconds = time.time() - t0
        return report

    def plan_file(self, source: str, path: str | os.PathLike,
                  claimed: dict[str, "FilePlan"] | None = None) -> "FileResult | FilePlan":
        """Hash the file and decide: a finished FileResult (unreadable; skipped because the store already holds
        its current state complete, stale states then deleted; a duplicate of another document, or of a file
        ``claimed`` earlier in this batch) or a FilePlan of what to (re)ingest (recorded in ``claimed``)."""
        try:
            content_hash = file_hash(Path(path))
            with open(path, "rb") as f:
                head = f.read(SNIFF_BYTES)
        except OSError as e:
            return FileResult(source, "failed", "unreadable", f"{source}: {e.strerror or e}")
        doc_id = doc_id_for(source)
        state = self.state_for(content_hash, state_key(head, self.load_options))
        stored_state, _ = self._stored_state(doc_id)
        if stored_state is not None and self._is_complete(doc_id, state):
            self._delete_stale(doc_id, state)
            return FileResult(source, "skipped", chunks=self.store.count(
                self.collection, Filter(must={"metadata.doc_id": doc_id})), doc_id=doc_id, content_hash=content_hash)
        if stored_state is None:  # a new source: its bytes may be another document's already
            first = (claimed or {}).get(content_hash)
            holder = {"source": first.source, "doc_id": first.doc_id} if first else self.holder_of(content_hash)
            if holder is not None and holder.get("doc_id") != doc_id:
                return FileResult(source, "duplicate", message=f"{source}: the same content as {holder['source']}, "
                                  "which is in the collection already", doc_id=holder["doc_id"],
                                  content_hash=content_hash)
        plan = FilePlan(source, str(path), doc_id, state, stored_state is not None and stored_state != state,
                        content_hash)
        if claimed is not None:
            claimed.setdefault(content_hash, plan)
        return plan

    # ---- internals -------------------------------------------------------------------------------
    def _process(self, pending: list["_Pending"], pool: "_ChunkPool | None", writer: "_Writer",
                 report: IngestReport, finish, drain: Callable[[], None] = lambda: None) -> None:
        """Take the chunks of a pending document that is ready — the oldest ready one, not necessarily the oldest —
        embedding what is buffered while none is."""
        while True:
            drain()
            self._check_cancel()
            ready = next((i for i, item in enumerate(pending) if item.future.done()), None)
            if ready is not None:
                break
            if self._buffer_tokens >= self.embedder.batch_token_budget():
                self._flush(writer, report)  # embed what is ready instead of waiting (overlap)
                continue
            finished, _ = wait([item.future for item in pending], timeout=0.5, return_when=FIRST_COMPLETED)
            if not finished and self._buffer:
                self._flush(writer, report)  # a slow document (OCR): do not leave the embedder idle meanwhile
        item = pending[ready]
        result, items = pool.result(pending, ready) if item.pooled else pending.pop(ready).future.result()
        plan = item.plan
        doc_id, state = plan.doc_id, plan.state
        if result.status == "failed":
            finish(result)
            return
        if self.acl_for is not None:
            acl = self.acl_for(doc_id)
            for _, p in items:
                p["metadata"]["acl"] = acl
        self._buffer.extend(items)
        self.live["chunked"] += len(items)
        self._docs.append((doc_id, state, result, finish))
        self._buffer_tokens += sum(p["metadata"]["token_count"] for _, p in items)
        if len(self._buffer) >= self.embed_batch_chunks:
            self._flush(writer, report)

    def _flush(self, writer: "_Writer", report: IngestReport) -> None:
        if not self._buffer:
            return
        ids, payloads = zip(*self._buffer)
        points = embed_points(self.embedder, self.sparse, ids, payloads, self.sentence_vectors)
        report.embedded_chunks += len(points)
        self.live["embedded"] += len(points)
        report.embedded_tokens += self._buffer_tokens
        writer.put(points, list(self._docs))
        self._buffer.clear()
        self._buffer_tokens = 0
        self._docs.clear()


class _Cancelled(Exception):
    """Ingestor.cancel() was called: unwinds ingest_files to its clean-up."""


def _done(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


@dataclass
class _Pending:
    plan: "FilePlan"
    future: Future
    pooled: bool = False  # runs in the worker pool


BIG_FILE_BYTES = 8 * 1024 * 1024  # in-process mode: files this big are read beside the rest (big_lane)


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class _BigFileLane:
    """One thread that reads and chunks big files while this thread goes on with the others. It has a chunker of
    its own (the light token counter: no tokenizer shared between threads)."""

    def __init__(self, ing: "Ingestor"):
        from concurrent.futures import ThreadPoolExecutor

        self.ing = ing
        counter = _worker_counter(ing.embedder)
        self.chunker = Chunker.from_params(counter if callable(counter) else _document_counter(counter), ing.chunking)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="lusifer-ingest-big")

    def submit(self, plan: "FilePlan", progress: "Progress") -> _Pending:
        on_page = lambda done, total: progress.page_done(plan.source, done, total)  # noqa: E731
        load = lambda: _load(plan.path, self.ing.max_bytes, self.ing.load_options, on_page)  # noqa: E731
        return _Pending(plan, self.pool.submit(chunk_document, self.chunker, plan, load))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _ChunkPool:
    """Worker processes that parse and chunk, each one file at a time under the per-file caps (``FileLimits``):
    a file that runs past its time, needs too much memory or kills its worker fails alone, reported by name
    (``timeout``, ``too-large``, ``crash``); the worker is replaced and the other files go on
    (ingest/bounded_pool.py)."""

    def __init__(self, workers: int, initargs: tuple, task: Callable = None, initializer: Callable = None,
                 limits: FileLimits = FileLimits()):
        self._pool = BoundedPool(workers, _mp_context(), initializer or _init_chunk_worker, initargs,
                                 task or _parse_and_chunk, _worker_failure, limits)

    def submit(self, plan: "FilePlan") -> _Pending:
        return _Pending(plan, self._pool.submit(plan), pooled=True)

    def result(self, pending: list[_Pending], index: int = 0) -> tuple[FileResult, list[tuple[str, dict]]]:
        """Pop pending[index] and wait for its (result, chunk items)."""
        return pending.pop(index).future.result()

    def cancel(self) -> None:
        self._pool.cancel()

    def close(self) -> None:
        self._pool.close()


def _worker_failure(plan: "FilePlan", reason: str, detail: str) -> tuple[FileResult, list]:
    return FileResult(plan.source, "failed", reason, f"{plan.source}: {detail}"), []


@dataclass(frozen=True)
class FilePlan:
    """A file to (re)ingest: its identity, where to read it, the state to write and whether it replaces another."""

    source: str
    path: str
    doc_id: str
    state: str
    replacing: bool
    content_hash: str = ""


def sparse_encoder_for(embedder, chunking: ChunkingParams):
    """The BM25 encoder every ingest path uses (its params are part of a document's state)."""
    from lusifer_rag.embedder.sparse import BM25SparseEncoder

    return BM25SparseEncoder(embedder.tokenizer, avg_len=chunking.max_tokens / 2)


def chunker_for(embedder, chunking: ChunkingParams) -> Chunker:
    """The chunker for ``embedder``: counts in its tokens, document template included (needs no weights)."""
    return Chunker.from_params(_document_counter(embedder), chunking)


def default_workers(embedder) -> int:
    """Parse/chunk processes when none are asked for. An accelerator embedder leaves the CPU free: cores − 1
    workers overlap parsing and chunking with embedding. A CPU embedder already runs on every core: more workers
    would only compete with it (measured on 2 cores: the embedder lost ~15% of its speed, more than the 2–4% that
    parsing and chunking take), so one, at a lower priority: files are still parsed under the per-file caps and
    off this process's interpreter lock (searches served beside an ingest do not stall on a parser)."""
    # str() of a torch.device or a device string: "cpu", "cuda:0", "mps"
    if all(str(d).split(":")[0] == "cpu" for d in getattr(embedder, "devices", ()) or ("cpu",)):
        return 1
    return max(1, (os.cpu_count() or 2) - 1)


def _document_counter(embedder) -> Callable[[list[str]], list[int]]:
    return lambda texts: embedder.count_tokens(texts, "document")


def _worker_counter(embedder):
    """What worker processes count tokens with: the light TokenCounter (imports only ``tokenizers``), else a
    weightless copy of the embedder (its worker then imports torch and transformers: seconds per worker)."""
    counter = embedder.token_counter("document")
    if counter is not None:
        return counter
    from lusifer_rag.embedder.base import weightless

    return weightless(embedder)


def chunk_document(chunker: Chunker, plan: FilePlan, load: Callable[[], LoadedDocument]) -> tuple[FileResult, list[tuple[str, dict]]]:
    """Parse (``load()``) and chunk one document: its FileResult and ``(point id, payload)`` per chunk, or a failed
    FileResult (reason + message) and no chunks when the file is bad; never raises for bad input."""
    source, doc_id, state = plan.source, plan.doc_id, plan.state
    try:
        doc = load()
        chunks = chunker.chunk(doc)
        if not chunks:
            raise _empty(source)
    except IngestError as e:
        return FileResult(source, "failed", getattr(e, "reason", "error"), _message(source, e)), []
    except MemoryError:  # past the worker's memory cap (or the machine's)
        return FileResult(source, "failed", "too-large", f"{source}: ran out of memory while reading it "
                          "(over the per-file cap, ingest_file_memory_mb)"), []
    except Exception as e:  # a parser crash on a hostile file must not stop the batch
        return FileResult(source, "failed", "corrupt", f"{source}: cannot parse: {type(e).__name__}: {e}"), []
    doc_lang = Counter(c.language for c in chunks).most_common(1)[0][0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ocr_pages = set(doc.ocr_pages)
    result = FileResult(source, "replaced" if plan.replacing else "ingested", chunks=len(chunks),
                        pages=len(doc.pages) + len(doc.empty_pages), language=doc_lang, ocr_pages=len(ocr_pages),
                        empty_pages=[list(e) for e in doc.empty_pages], doc_id=doc_id, content_hash=doc.content_hash)
    items = []
    for c in chunks:
        ocr = bool(ocr_pages) and c.page_start is not None and any(
            p in ocr_pages for p in range(c.page_start, (c.page_end or c.page_start) + 1))
        payload = {"page_content": c.text, "metadata": {
            "doc_id": doc_id, "source": source, "title": doc.title or Path(source).name, "state": state,
            "content_hash": doc.content_hash, "chunk_no": c.chunk_no, "chunk_count": len(chunks),
            "language": c.language, "language_confidence": c.language_confidence, "doc_language": doc_lang,
            "page": c.page_start, "page_end": c.page_end,
            "char_start": c.char_start, "char_end": c.char_end, "token_count": c.token_count,
            "pages": result.pages, "mime": doc.mime, "ocr": ocr, "ingested_at": now}}
        items.append((point_id(doc_id, state, c.chunk_no), payload))
    return result, items


def embed_texts(embedder, sparse, texts: list[str]) -> tuple:
    """Dense (n, dim) float32 and BM25 sparse vectors of chunk texts (the document template is the embedder's)."""
    # direct: a bulk job fills its batches by itself; the request queue is for interactive callers
    return embedder.embed_documents(texts, direct=True), sparse.encode_documents(texts)


def embed_points(embedder, sparse, ids, payloads, sentences: bool = False) -> list[Point]:
    """Dense + BM25 sparse vectors of the payloads' ``page_content``, as store points; ``sentences``: each payload
    gets its chunk's sentence vectors too (ingest/sentence_vectors.py), other payloads lose a stale entry."""
    texts = [p["page_content"] for p in payloads]
    dense, sparse_vecs = embed_texts(embedder, sparse, texts)
    payloads = with_sentence_vectors(embedder, texts, payloads, sentences)
    return [Point(id=i, vector=v, sparse=s, payload=p) for i, v, s, p in zip(ids, dense, sparse_vecs, payloads)]


def with_sentence_vectors(embedder, texts: list[str], payloads, sentences: bool) -> list[dict]:
    """Copies of ``payloads`` with this embedder's sentence vectors of ``texts`` (``sentences``) or without any."""
    from .sentence_vectors import PAYLOAD_KEY, sentence_vectors

    out = [{k: v for k, v in p.items() if k != PAYLOAD_KEY} for p in payloads]
    if sentences:
        for p, entry in zip(out, sentence_vectors(embedder, texts)):
            p[PAYLOAD_KEY] = entry
    return out


def _empty(source: str) -> IngestError:
    e = IngestError(f"{source}: no text to index after chunking")
    e.reason = "empty"  # type: ignore[attr-defined]
    return e


def _message(source: str, e: Exception) -> str:
    text = str(e)
    return text if source in text or Path(source).name in text else f"{source}: {text}"


def _preload_language_models() -> None:
    from .langid import preload

    try:
        preload()
    except Exception:  # noqa: BLE001 - the first real detection raises the same error with its context
        pass


def _mp_context():
    import multiprocessing as mp

    # forking a process that holds torch threads can deadlock; forkserver starts clean workers cheaply
    if sys.platform.startswith("linux"):
        _short_forkserver_dir()
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


_SUN_PATH_MAX = 107  # bytes of an AF_UNIX socket path (108 with its NUL)


def _short_forkserver_dir() -> None:
    """The forkserver listens on a socket at ``<tempdir>/pymp-XXXXXXXX/listener-XXXXXXXX``; under a long TMPDIR (a CI
    job's, a user's deep home) that path passes the kernel's limit and no worker can start, so every file would
    fail. Then multiprocessing's own temp dir (made once per process, removed at exit) goes under /tmp instead
    (what Python 3.13 does itself)."""
    import tempfile
    from multiprocessing import util

    if len(os.fsencode(tempfile.gettempdir())) + len("/pymp-XXXXXXXX/listener-XXXXXXXX") <= _SUN_PATH_MAX:
        return
    saved = tempfile.tempdir
    try:
        tempfile.tempdir = "/tmp"
        util.get_temp_dir()  # cached for this process: the forkserver's socket goes there
    except OSError:
        pass  # no /tmp to write: the start fails and says so, as before
    finally:
        tempfile.tempdir = saved


class _Writer:
    """Upserts in a background thread (overlapping embedding); after a document's last batch is written, deletes
    its points of older states and reports the file as done."""

    def __init__(self, ing: Ingestor):
        self.ing = ing
        self.q: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lusifer-ingest-writer", daemon=True)
        self.thread.start()

    def put(self, points: list[Point], docs: list) -> None:
        if self.error:
            raise self.error
        self.q.put((points, docs))

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error:
                continue
            points, docs = item
            try:
                for i in range(0, len(points), 256):
                    self.ing.store.upsert(self.ing.collection, points[i : i + 256])
                for doc_id, state, result, finish in docs:
                    self.ing._delete_stale(doc_id, state)
                    finish(result)
            except BaseException as e:  # surfaced to the caller on the next put/close
                self.error = e

    def close(self, raise_errors: bool = True) -> None:
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()
        if raise_errors and self.error:
            raise self.error

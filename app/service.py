"""What the web app does, as plain Python (no Gradio): search, ask, ingest, list/delete documents, describe.

One ``RagService`` per process holds the one store handle and the one embedder; it is shared by every request
thread (the store and the embedder are thread-safe). Ingestion is serialised by a lock; searches never wait
for it (the UI puts them in a separate concurrency group too).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from lusifer_rag.errors import ConfigError, RagError, StoreError
from lusifer_rag.settings import Settings

from .access import AccessPolicy, Authorizer, Principal, read_filter

SAMPLE_CORPUS = Path(__file__).resolve().parent / "sample_corpus" / "documents"
DEFAULT_MAX_UPLOAD_MB = 50
# highlights: the hits' sentence vectors are stored at ingest; chunks without them are embedded per search,
# so that work is bounded (ingest/sentence_vectors.py caps the sentences per chunk)
MAX_HIGHLIGHT_HITS = 5  # hits below it show their text without a highlight
SENTENCE_CACHE_SIZE = 4096  # passages (ingested without sentence vectors) whose sentence vectors are kept


MAX_K = 100  # most passages one search or answer returns
MAX_QUERY_CHARS = 2000  # a query longer than a page is not a question


def check_k(k) -> int:
    """``k`` as an int in 1..MAX_K, or a RagError saying what was given and what is allowed."""
    if isinstance(k, bool) or not isinstance(k, (int, float, str)):
        raise RagError(f"k must be a whole number from 1 to {MAX_K}; got {type(k).__name__}")
    try:
        value = int(k) if not isinstance(k, float) or k.is_integer() else None
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_K:
        raise RagError(f"k must be a whole number from 1 to {MAX_K}; got {str(k)[:20]!r}")
    return value


def check_query(text: str, what: str) -> None:
    if len(text) > MAX_QUERY_CHARS:
        raise RagError(f"the {what} has {len(text):,} characters; at most {MAX_QUERY_CHARS:,} are searched "
                       "(ask about one thing, in a sentence or two)")


def answer_stream(answerer, retrieve: Callable[[str, int], list], question: str, answer_language: str | None,
                  k, history: Sequence[dict] | None = None) -> Iterator[object]:
    """The one answer path of the app and its API: the question (checked) resolved against the conversation
    (rag/conversation.py), the passages ``retrieve(query, k)`` finds for it, then the answerer's text deltas and its
    Answer, which records the question it answered (``resolved_question``)."""
    from lusifer_rag.rag.conversation import check_history, resolve

    if not isinstance(question, str) or not question.strip():
        raise RagError("ask a question (it is empty)")
    check_query(question, "question")
    k = check_k(k)
    history = check_history(history)
    lang = answerer.answer_language(question.strip(), None if answer_language in (None, "", "auto") else answer_language)
    resolved = resolve(question.strip(), history, llm=answerer.llm, language=lang)
    contexts = retrieve(resolved.query, k)
    asked = resolved.query if resolved.how == "rewritten" or answerer.llm.extractive else question.strip()
    for part in answerer.stream(asked, contexts, answer_language=lang):
        if not isinstance(part, str):
            part.question, part.resolved_question = question.strip(), resolved.label
        yield part


def final_answer(parts: Iterator[object]):
    answer = None
    for part in parts:
        if not isinstance(part, str):
            answer = part
    if answer is None:
        raise RagError("the answer backend ended without an answer")
    return answer


@dataclass
class SearchHit:
    """A retrieved chunk plus the character span of its sentence closest to the query."""

    rank: int
    chunk: object  # lusifer_rag.rag.types.RetrievedChunk
    highlight: tuple[int, int] | None = None

    def to_json(self) -> dict:
        c = self.chunk
        return {"rank": self.rank, "score": round(float(c.score), 6), "source": c.source, "title": c.title,
                "page": c.page, "page_end": c.page_end, "language": c.language, "chunk_id": c.id,
                "doc_id": c.doc_id, "collection": c.collection, "text": c.text,
                "highlight": list(self.highlight) if self.highlight else None}


@dataclass
class AppOptions:
    """Knobs of the web app that are not embedder/store settings."""

    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    search_concurrency: int = 32  # searches merge their embeddings (embedder queue): concurrency is cheap
    #: parse/chunk processes; None: Ingestor's default (1 with a CPU embedder); 0: in this process, without the caps
    ingest_workers: int | None = None
    #: chunks embedded per write: small, so that the progress bar moves within a document (the embedder still
    #: batches by its token budget inside each)
    ingest_batch_chunks: int = 64
    auth: tuple[str, str] | None = None
    anonymous_access: str | None = None  # see Settings.anonymous_access
    host: str = "127.0.0.1"  # where the app listens (decides the default anonymous access)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AppOptions":
        """From the settings object (``LUSIFER_RAG_AUTH_USER``, ``..._MAX_UPLOAD_MB``, ``..._SEARCH_CONCURRENCY``)."""
        return cls.from_settings(Settings.from_env(env))

    @classmethod
    def from_settings(cls, s: "Settings") -> "AppOptions":
        if bool(s.auth_user) != bool(s.auth_password):
            raise ConfigError("basic auth needs both LUSIFER_RAG_AUTH_USER and LUSIFER_RAG_AUTH_PASSWORD; "
                              f"got only {'the user' if s.auth_user else 'the password'}")
        for name in ("max_upload_mb", "search_concurrency"):
            if getattr(s, name) <= 0:
                raise ConfigError(f"LUSIFER_RAG_{name.upper()}={getattr(s, name)!r} is not valid; give a positive integer")
        return cls(max_upload_mb=s.max_upload_mb, search_concurrency=s.search_concurrency,
                   auth=(s.auth_user, s.auth_password) if s.auth_user else None, anonymous_access=s.anonymous_access)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@dataclass
class IngestProgress:
    done: int
    total: int
    result: object  # lusifer_rag.ingest.pipeline.FileResult


class RagService:
    """The app's operations on one collection of one store."""

    def __init__(self, settings: Settings, store, *, embedder_spec: str | None = None, embedder=None,
                 options: AppOptions | None = None):
        """``embedder_spec``: the embedder to use (default: the one the collection records, else settings);
        ``embedder``: an already built one (tests, embedding servers) instead of building it."""
        from lusifer_rag.runtime import get_embedder

        self.settings, self.store, self.collection = settings, store, settings.collection
        self.options = options or AppOptions()
        if self.options.auth is None and self.options.anonymous_access == "none":
            raise ConfigError("LUSIFER_RAG_ANONYMOUS_ACCESS=none without a login would refuse everyone; set "
                              "LUSIFER_RAG_AUTH_USER and LUSIFER_RAG_AUTH_PASSWORD too")
        self.policy = AccessPolicy(self.options.auth, self.options.anonymous_access, self.options.host)
        #: per-collection rights (the Workspace gives its own, with the user directory's grants)
        self.authorizer = Authorizer(None)
        #: doc_id -> the acl its chunks get at ingest; called after writes to bring acl payloads up to date
        self.acl_for: Callable[[str], list[str]] | None = None
        self.after_write: Callable[[], None] | None = None
        self.audit = None  # app/audit.py AuditLog (the Workspace gives its own)
        self._lock = threading.Lock()  # guards lazily built members
        self._ingest_lock = threading.Lock()
        self._retriever = None
        self._answerer = None
        self._ingestor = None
        self._sentence_cache: dict[str, tuple[list[tuple[int, int]], np.ndarray | None]] = {}
        recorded = self._meta().get("embedder")
        self.embedder = embedder or get_embedder(settings, embedder_spec or recorded or settings.embedder)
        self._reindex: dict | None = None  # the background re-index of this process: {"thread", "error", "report"}
        self._search_checked = -1.0  # monotonic time of the last check a search made (see search_check)

    # ---- checks ----------------------------------------------------------------------------------
    def _meta(self) -> dict:
        if self.collection not in self.store.list_collections():
            return {}
        return dict(self.store.open_collection(self.collection).meta or {})

    def exists(self) -> bool:
        return self.collection in self.store.list_collections()

    def check(self) -> None:
        """Raise StoreError (naming both embedders) if the collection was written by another embedder. A
        collection that a re-index switched to another embedder is followed: that embedder is loaded and
        serves from then on."""
        if not self.exists():
            return
        from lusifer_rag.store import check_compatible

        spec = self.store.open_collection(self.collection)
        meta = spec.meta or {}
        have = meta.get("embedder_fingerprint")
        if have and have != self.embedder.fingerprint and (meta.get("reindex") or {}).get("of") == self.collection:
            self._follow(meta)
        check_compatible(self.collection, spec, {"embedder": self.embedder.spec,
                                                 "embedder_fingerprint": self.embedder.fingerprint,
                                                 "dim": self.embedder.dim})

    def _follow(self, meta: dict) -> None:
        from lusifer_rag.runtime import get_embedder

        with self._lock:
            if self.embedder.fingerprint == meta.get("embedder_fingerprint"):
                return  # another request thread switched already
            emb = get_embedder(self.settings, meta["embedder"])
            if emb.fingerprint != meta.get("embedder_fingerprint"):
                raise StoreError(f"collection {self.collection!r} was re-indexed with {meta['embedder']!r}, but that "
                                 f"spec now loads a model with fingerprint {emb.fingerprint} (the collection records "
                                 f"{meta.get('embedder_fingerprint')}); restore that model or re-index again")
            # new searches take the new members; requests in flight finish with the old ones
            self.embedder, self._retriever, self._answerer, self._ingestor = emb, None, None, None
            self._sentence_cache = {}
            self._search_checked = -1.0

    def search_check(self) -> bool:
        """``check()`` for the search path, at most once a second (as the retriever's own check): listing the
        store and reading the collection's spec per search cost a third of a warm search's CPU under load
        (bench/ui_load.py). True if the collection exists. A switch made by another process is followed within
        a second; one made by this process (``reindex``, ``ingest``) resets the clock."""
        now = time.monotonic()
        if now - self._search_checked < 1.0:
            return True
        self.check()
        if not self.exists():
            return False
        self._search_checked = now
        return True

    def problem(self) -> str | None:
        """The reason the collection cannot be used with this app's embedder, or None."""
        try:
            self.check()
        except StoreError as e:
            return str(e)
        return None

    # ---- search ----------------------------------------------------------------------------------
    def retriever(self):
        from lusifer_rag.rag.retrieval import Retriever

        with self._lock:
            if self._retriever is None:
                self._retriever = Retriever.from_settings(self.store, self.collection, self.embedder, self.settings)
            return self._retriever

    def _sync_acl(self) -> None:
        if self.after_write is not None:
            self.after_write()

    def search(self, query: str, k: int = 10, languages: Sequence[str] | None = None,
               sources: Sequence[str] | None = None, mode: str | None = None,
               highlight: bool = True, *, principal: Principal) -> list[SearchHit]:
        """Ranked hits among the chunks ``principal`` may read (app/access.py read_filter)."""
        from lusifer_rag.rag.retrieval import SearchFilters

        access = read_filter(principal)
        self.authorizer.require(principal, self.collection, "read", "search")
        if not isinstance(query, str) or not query.strip():
            raise RagError("type something to search for (the query is empty)")
        check_query(query, "query")
        k = check_k(k)
        if not self.search_check():
            return []
        self._sync_acl()
        chunks = self.retriever().search(query.strip(), k=k, mode=mode or None,
                                         filters=SearchFilters(languages=list(languages or []) or None,
                                                               sources=list(sources or []) or None, access=access))
        for c in chunks:
            c.collection = self.collection
        spans = self.highlight(query, chunks) if highlight else [None] * len(chunks)
        return [SearchHit(i + 1, c, s) for i, (c, s) in enumerate(zip(chunks, spans))]

    def highlight(self, query: str, hits: Sequence) -> list[tuple[int, int] | None]:
        """For each hit (a RetrievedChunk or a plain text), the (start, end) of its sentence closest to the query
        (embedding similarity, so it works across languages). Sentence vectors come from the chunk's payload
        (stored at ingest: no model call, ingest/sentence_vectors.py); chunks ingested without them have their
        sentences embedded here, in one call, and cached per text (passages come back search after search)."""
        from lusifer_rag.ingest.chunking import sentence_spans
        from lusifer_rag.ingest.sentence_vectors import MAX_SENTENCES, decode

        texts = [h if isinstance(h, str) else h.text for h in hits]
        out: list[tuple[int, int] | None] = [None] * len(texts)
        found: dict[int, tuple[list[tuple[int, int]], np.ndarray | None]] = {}
        todo: dict[str, list[tuple[int, int]]] = {}  # text -> its sentence spans, for texts neither stored nor cached
        for i, (h, t) in enumerate(zip(hits[:MAX_HIGHLIGHT_HITS], texts)):
            stored = None if isinstance(h, str) else decode(h.sentence_vectors, self.embedder)
            if stored is not None:
                found[i] = stored
            elif t not in self._sentence_cache and t not in todo:
                todo[t] = sentence_spans(t)[:MAX_SENTENCES]
        if todo:
            pieces = [(t, span) for t, spans in todo.items() if len(spans) > 1 for span in spans]
            vecs = self.embedder.embed_documents([t[a:b] for t, (a, b) in pieces]) if pieces else None  # (n, dim)
            with self._lock:
                for t, spans in todo.items():
                    rows = [j for j, (owner, _) in enumerate(pieces) if owner is t]
                    self._sentence_cache[t] = (spans, vecs[rows] if rows else None)
                while len(self._sentence_cache) > SENTENCE_CACHE_SIZE:
                    self._sentence_cache.pop(next(iter(self._sentence_cache)))
        q = None
        for i, t in enumerate(texts[:MAX_HIGHLIGHT_HITS]):
            spans, vecs = found.get(i) or self._sentence_cache.get(t, ([], None))
            if len(spans) == 1:
                out[i] = spans[0]
            elif vecs is not None:
                if q is None:
                    q = self.retriever().embed_query(query.strip())  # (dim,), cached by the search that just ran
                out[i] = spans[int(np.argmax(vecs @ q))]  # (n_sentences,) scores
        return out

    # ---- ask -------------------------------------------------------------------------------------
    def answerer(self):
        with self._lock:
            if self._answerer is None:
                from lusifer_rag.rag.cli import make_answerer

                self._answerer = make_answerer(self.settings, self.embedder)
            return self._answerer

    def llm_backend(self) -> str:
        return self.settings.llm_backend or ("openai" if self.settings.llm_base_url else "extractive")

    def ask_stream(self, question: str, answer_language: str | None = None,
                   languages: Sequence[str] | None = None, k: int | None = None,
                   history: Sequence[dict] | None = None, *, principal: Principal) -> Iterator[object]:
        """Text deltas (str), then the final ``lusifer_rag.rag.types.Answer``, from the chunks ``principal`` may read.
        ``history``: the conversation so far (OpenAI chat format, oldest first), against which a follow-up question
        is resolved."""
        access = read_filter(principal, action="ask")
        self.authorizer.require(principal, self.collection, "read", "ask")

        def retrieve(query: str, k: int) -> list:
            from lusifer_rag.rag.retrieval import SearchFilters

            self.check()
            if not self.exists():
                return []
            self._sync_acl()
            chunks = self.retriever().search(query, k=k, filters=SearchFilters(
                languages=list(languages or []) or None, access=access))
            for c in chunks:
                c.collection = self.collection
            return chunks

        yield from answer_stream(self.answerer(), retrieve, question, answer_language, k or self.settings.top_k,
                                 history)

    def ask(self, question: str, answer_language: str | None = None, languages: Sequence[str] | None = None,
            k: int | None = None, history: Sequence[dict] | None = None, *, principal: Principal):
        return final_answer(self.ask_stream(question, answer_language, languages, k, history, principal=principal))

    # ---- documents -------------------------------------------------------------------------------
    def ingestor(self):
        """The collection's ingest pipeline (creates the collection on first use)."""
        from lusifer_rag.ingest.pipeline import Ingestor

        with self._lock:
            if self._ingestor is None:
                self.check()
                # chunking: the pipeline's default for this embedder (as `lusifer-rag ingest` uses)
                from lusifer_rag.ingest.options import LoadOptions

                from lusifer_rag.ingest.bounded_pool import FileLimits

                self._ingestor = Ingestor(self.store, self.collection, self.embedder,
                                          workers=self.options.ingest_workers,
                                          embed_batch_chunks=self.options.ingest_batch_chunks,
                                          max_bytes=self.options.max_upload_bytes, progress_mode="off",
                                          load_options=LoadOptions.from_settings(self.settings),
                                          sentence_vectors=self.settings.sentence_vectors,
                                          limits=FileLimits.from_settings(self.settings))
            return self._ingestor

    def uploads(self):
        from lusifer_rag.ingest.identity import Uploads

        return Uploads(Path(self.settings.data_dir) / "uploads", self.collection)

    def ingest(self, files: Sequence[tuple[str, str | os.PathLike]],
               on_progress: Callable[[IngestProgress], None] | None = None, on_conflict: str = "replace", *,
               principal: Principal, paths_as_sources: bool = False):
        """Ingest uploaded ``(name, path)`` pairs (name: the file's name or path relative to what was uploaded);
        returns the IngestReport (per-file status and reasons). Each file gets a unique source
        (ingest/identity.py): a name a document already has replaces it (``on_conflict="replace"``) or is kept beside
        it under a numbered name (``"keep"``). The files are moved out of the web server's temp dir; the original of
        each document is kept under the data dir until the document is deleted. ``paths_as_sources``: the names are
        a command line's absolute paths (``lusifer-rag ingest`` through this server), kept as the sources as they
        are (ingest/identity.py ``path_sources``), with no original kept, as an ingest in-process does."""
        import secrets

        from lusifer_rag.ingest.identity import assign_sources, path_sources

        self.authorizer.require(principal, self.collection, "write", "add documents")
        if not files:
            raise RagError("no files given: choose files or a folder to upload")
        self.check()
        ing = self.ingestor()
        uploads, token = self.uploads(), secrets.token_hex(8)
        with self._ingest_lock:
            existing = {md.get("source", "") for md in ing.documents().values()} if on_conflict == "keep" else ()
            sources = (path_sources([name for name, _ in files]) if paths_as_sources
                       else assign_sources([name for name, _ in files], existing, on_conflict))
            staged = {src: uploads.stage(path, i, token) for i, (src, (_, path)) in enumerate(zip(sources, files))}
            where = {str(p): src for src, p in staged.items()}
            ing.on_progress = (lambda done, total, result: on_progress(
                IngestProgress(done, total, _without_paths(result, where)))) if on_progress else None
            ing.acl_for = self.acl_for
            try:
                report = ing.ingest_files([(src, staged[src]) for src in sources])
                if self.audit is not None:
                    self.audit.record("ingest", principal, collection=self.collection, files=[
                        {"source": r.source, "status": r.status, "doc_id": r.doc_id or None} for r in report.results])
                for r in report.results:
                    _without_paths(r, where)
                    if (not paths_as_sources and r.status in ("ingested", "replaced", "skipped") and r.doc_id
                            and staged[r.source].exists()):
                        uploads.keep(staged[r.source], r.doc_id, r.source)
                return report
            finally:
                ing.on_progress = None
                uploads.clear_staging(token)
                self._search_checked = -1.0
                self._sync_acl()  # grants changed while it ran

    def cancel_ingest(self, *, principal: Principal) -> bool:
        """Stop this collection's running ingest (files not finished are reported ``cancelled``; ingesting them
        again resumes); False when none is running."""
        self.authorizer.require(principal, self.collection, "write", "cancel an ingest")
        ing = self._ingestor
        if ing is None or not self._ingest_lock.locked():
            return False
        ing.cancel()
        return True

    def ingest_sample(self, on_progress=None, *, principal: Principal):
        """Ingest the bundled multilingual sample corpus (idempotent: unchanged files are skipped)."""
        import shutil
        import tempfile

        files = sorted(p for p in SAMPLE_CORPUS.iterdir() if p.is_file())
        with tempfile.TemporaryDirectory() as tmp:  # copies: ingest() moves what it is given
            copies = [(f"sample/{p.name}", shutil.copyfile(p, Path(tmp) / p.name)) for p in files]
            return self.ingest(copies, on_progress, principal=principal)

    def documents(self, *, principal: Principal) -> list[dict]:
        """One row per document the caller may read: source, title, language, pages, chunks, ingested_at, doc_id,
        content_hash (sorted by source)."""
        access = read_filter(principal, action="list documents")
        self.authorizer.require(principal, self.collection, "read", "list documents")
        if not self.exists():
            return []
        self.check()
        self._sync_acl()
        rows = [{"source": md.get("source", ""), "title": md.get("title", ""),
                 "language": md.get("doc_language") or md.get("language", ""), "pages": md.get("pages", 0),
                 "chunks": md.get("chunk_count", 0), "ingested_at": md.get("ingested_at", ""), "doc_id": doc_id,
                 "content_hash": md.get("content_hash", "")}
                for doc_id, md in self.ingestor().documents(access).items()]
        return sorted(rows, key=lambda r: r["source"])

    def delete(self, documents: str | Sequence[str], *, principal: Principal) -> dict:
        """Delete documents, each given by its id or its source; all are checked before any is deleted. Returns
        ``{"deleted": [{"doc_id", "source", "chunks"}], "chunks": total}``; their kept originals go too."""
        self.authorizer.require(principal, self.collection, "write", "delete documents")
        wanted = [documents] if isinstance(documents, str) else list(documents or [])
        wanted = [w for w in wanted if isinstance(w, str) and w]
        if not wanted:
            raise RagError("choose the documents to delete")
        docs = self.documents(principal=principal)  # another's document is as unknown as a missing one
        by_key = {d["doc_id"]: d for d in docs} | {d["source"]: d for d in docs}
        unknown = [w for w in wanted if w not in by_key]
        if unknown:
            raise RagError(f"no document {unknown[0]!r} in collection {self.collection!r} (give a document id or "
                           f"source from the documents list; there are {len(docs)} documents)")
        targets = list({by_key[w]["doc_id"]: by_key[w] for w in wanted}.values())
        out = []
        with self._ingest_lock:
            try:
                for d in targets:
                    n = self.ingestor().delete_document(doc_id=d["doc_id"])
                    self.uploads().remove(d["doc_id"])
                    out.append({"doc_id": d["doc_id"], "source": d["source"], "chunks": n})
            finally:
                self._search_checked = -1.0
        if self.audit is not None:
            self.audit.record("delete", principal, collection=self.collection, documents=[d["doc_id"] for d in out])
        return {"deleted": out, "chunks": sum(d["chunks"] for d in out)}

    def stats(self, *, principal: Principal) -> dict:
        """The collection's statistics; a caller who reads only some documents gets their counts only."""
        from lusifer_rag.ingest.cli import collection_stats

        access = read_filter(principal, action="read the collection's statistics")
        self.authorizer.require(principal, self.collection, "read", "read the collection's statistics")
        if not self.exists():
            return {"collection": self.collection, "points": 0, "documents": 0, "languages": {},
                    "embedder": self.embedder.spec, "fingerprint": self.embedder.fingerprint, "reindex": None}
        out = collection_stats(self.store, self.collection, access)
        job = self._reindex
        if job is not None and not job["thread"].is_alive():
            out["last_reindex"] = job["error"] or (job["report"].summary() if job["report"] else None)
        return out

    # ---- re-index ----------------------------------------------------------------------------------
    def start_reindex(self, spec: str, drop_old: bool = False, *, principal: Principal) -> str:
        """Re-embed the collection with embedder ``spec`` in a background thread while searches go on with the
        current one; the app switches to it when it is done (see ``check``). Returns a status line."""
        from lusifer_rag.ingest.reindex import Reindexer
        from lusifer_rag.runtime import get_embedder

        self.authorizer.require(principal, self.collection, "admin", "re-index the collection")
        if not isinstance(spec, str) or not spec.strip():
            raise RagError("give the embedder spec to re-index with (e.g. lusifer:/models/lusifer or e5-small)")
        if not self.exists():
            raise RagError(f"collection {self.collection!r} is empty: nothing to re-index")
        with self._lock:
            job = self._reindex
            if job is not None and job["thread"].is_alive():
                raise RagError(f"a re-index to {job['spec']} is already running")
            emb = get_embedder(self.settings, spec.strip())  # errors (bad spec, missing model) surface here
            job = {"spec": spec.strip(), "error": None, "report": None}

            def run() -> None:
                try:
                    job["report"] = Reindexer(self.store, self.collection, emb, page=self.settings.ingest_batch_chunks,
                                              switch_lock=self._ingest_lock).run(drop_old=drop_old)
                except Exception as e:  # shown in the status; the old collection keeps serving
                    job["error"] = f"re-index to {job['spec']} failed: {type(e).__name__}: {e}"
                finally:
                    self._search_checked = -1.0  # the next search follows the switch at once

            job["thread"] = threading.Thread(target=run, name="reindex", daemon=True)
            self._reindex = job
            job["thread"].start()
        if self.audit is not None:
            self.audit.record("reindex", principal, collection=self.collection, embedder=spec.strip(), drop_old=drop_old)
        return f"re-indexing {self.collection!r} with {spec.strip()} in the background; searches use {self.embedder.spec} until it is done"

    def reindex_state(self) -> dict | None:
        """The re-index under way on this collection (by this process or another), or None."""
        from lusifer_rag.ingest.reindex import reindex_status

        return reindex_status(self.store, self.collection) if self.exists() else None

    def wait_reindex(self, timeout: float | None = None):
        """Wait for this process's background re-index; its report (raises RagError with its error)."""
        job = self._reindex
        if job is None:
            return None
        job["thread"].join(timeout)
        if job["error"]:
            raise RagError(job["error"])
        return job["report"]

    def facets(self, *, principal: Principal) -> tuple[list[str], list[str]]:
        """(languages, sources) of the documents the caller may read, for the filters."""
        access = read_filter(principal, action="list documents")
        if not self.exists() or "read" not in self.authorizer.rights_on(principal, self.collection):
            return [], []
        langs = self.store.facet(self.collection, "metadata.language", access)
        sources = self.store.facet(self.collection, "metadata.source", access, limit=10_000)
        return sorted(langs), sorted(sources)

    # ---- description -----------------------------------------------------------------------------
    def info(self) -> dict:
        """What runs where, for the Settings view."""
        from lusifer_rag.store import parse_location

        location = self.settings.store_location
        scheme, _ = parse_location(location)
        s = self.settings
        return {
            "embedder": {"spec": self.embedder.spec, "kind": getattr(self.embedder, "kind", ""),
                         "dim": self.embedder.dim, "max_tokens": self.embedder.max_tokens,
                         "fingerprint": self.embedder.fingerprint, "device": s.device or "auto"},
            "store": {"kind": "Qdrant server" if scheme in ("http", "https") else "embedded (Qdrant Edge)"
                      if scheme == "" else scheme, "location": location, "collection": self.collection},
            "llm": {"backend": self.llm_backend(), "base_url": s.llm_base_url, "model": s.llm_model},
            "retrieval": {"mode": s.search_mode, "debias": s.debias, "same_language_pivot": s.same_language_pivot,
                          "top_k": s.top_k},
            "reindex": self.reindex_state(),
            "app": {"max_upload_mb": self.options.max_upload_mb, "search_concurrency": self.options.search_concurrency,
                    "auth": "basic auth on" if self.options.auth else "off"},
        }


def _without_paths(result, where: dict[str, str]):
    """``result`` with the server paths of staged uploads in its message replaced by their names."""
    for path, name in where.items():
        if path in result.message:  # "name: <staged path>: reason" (the pipeline prefixes the name) -> "name: reason"
            result.message = result.message.replace(f"{name}: {path}", name).replace(path, name)
    return result


@dataclass
class ReportView:
    """An IngestReport in the shape the UI and the API show."""

    summary: str
    failed: list[list[str]] = field(default_factory=list)  # [file, reason, message]
    json: dict = field(default_factory=dict)

    @classmethod
    def of(cls, report) -> "ReportView":
        failed = [[Path(r.source).name, r.reason or "error", r.message] for r in report.by_status("failed")]
        return cls(report.summary(), failed, report.to_json())

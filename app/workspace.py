"""The app's collections (knowledge bases) over one store, and the records around them: one per server process.

A ``Workspace`` holds the store handle, the access policy, the app database (saved conversations, server-side
settings: app/db.py) and one ``RagService`` per collection, built on first use and sharing the embedder where the
collections share one. Searches and answers may span several collections; their hits are merged by score when
the collections share an embedder (the scores are comparable), by rank otherwise.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from typing import Iterator, Sequence

from lusifer_rag.errors import EmbedderError, RagError, StoreError
from lusifer_rag.settings import Settings

from .access import AccessPolicy, Principal
from .db import AppDatabase
from .service import AppOptions, RagService, SearchHit, answer_stream, final_answer

SAMPLE_COLLECTION = "sample"


class Workspace:
    def __init__(self, settings: Settings, store, *, embedder=None, options: AppOptions | None = None):
        """``embedder``: an already built embedder (tests) that every collection written by it uses."""
        from .settings_panel import applied

        self.store = store
        self.options = options or AppOptions()
        self.default = settings.collection
        self.db = AppDatabase(settings.data_dir)
        self._base_settings = settings  # from the environment; what the admin stored in the app goes on top
        self.settings = applied(settings, self.db.get_settings())
        self._embedder = embedder
        self._services: dict[str, RagService] = {}
        self._lock = threading.Lock()
        self.policy: AccessPolicy = self.service(self.default).policy

    # ---- collections -----------------------------------------------------------------------------
    def service(self, name: str | None = None) -> RagService:
        """The RagService of collection ``name`` (default: the settings' collection); it may not exist yet."""
        from lusifer_rag.store.base import validate_name

        name = name or self.default
        try:
            validate_name(name)
        except StoreError as e:
            raise RagError(str(e)) from None
        with self._lock:
            svc = self._services.get(name)
            if svc is None:
                settings = dataclasses.replace(self.settings, collection=name)  # with the stored overrides
                emb = self._embedder if self._embedder is not None and self._fits(name) else None
                try:
                    svc = RagService(settings, self.store, embedder=emb, options=self.options)
                except EmbedderError:
                    if self._embedder is None:
                        raise
                    # the collection's own embedder cannot be loaded here: serve it with ours, which its
                    # check refuses with a message naming both (shown as the collection's problem)
                    svc = RagService(settings, self.store, embedder=self._embedder, options=self.options)
                self._services[name] = svc
            return svc

    def _fits(self, name: str) -> bool:
        """Whether the given embedder may serve collection ``name`` (new, or written by it)."""
        if name not in self.store.list_collections():
            return True
        meta = self.store.open_collection(name).meta or {}
        return meta.get("embedder_fingerprint") in (None, self._embedder.fingerprint)

    def collection_names(self) -> list[str]:
        """The collections users address (aliases included, re-index generations not), the default first."""
        names = sorted(self.store.list_collections())
        return sorted(set(names) | {self.default}, key=lambda n: (n != self.default, n))

    def collections(self) -> list[dict]:
        out = []
        for name in self.collection_names():
            exists = name in self.store.list_collections()
            meta = (self.store.open_collection(name).meta or {}) if exists else {}
            docs = len(self.store.facet(name, "metadata.doc_id", limit=10**9)) if exists else 0
            out.append({"name": name, "documents": docs, "points": self.store.count(name) if exists else 0,
                        "embedder": meta.get("embedder") or "", "default": name == self.default})
        return out

    def create_collection(self, name: str, *, principal: Principal) -> str:
        """An empty collection with the app's embedder (it appears in every list at once)."""
        principal.require("write", "create collections")
        name = (name or "").strip()
        if name in self.store.list_collections():
            raise RagError(f"a collection named {name!r} exists already")
        self.service(name).ingestor()  # creates it, recording its embedder
        return name

    def drop_collection(self, name: str, *, principal: Principal) -> int:
        """Delete a collection with its documents and their kept originals; returns the documents it held."""
        principal.require("admin", "delete collections")
        if name not in self.store.list_collections():
            raise RagError(f"no collection {name!r}; existing: {', '.join(sorted(self.store.list_collections())) or 'none'}")
        svc = self.service(name)
        with svc._ingest_lock:
            n = len(self.store.facet(name, "metadata.doc_id", limit=10**9))
            self.store.drop_collection(name)
            shutil.rmtree(svc.uploads().dir, ignore_errors=True)
        with self._lock:
            self._services.pop(name, None)
        return n

    def ingest_sample(self, on_progress=None, *, principal: Principal):
        """The bundled sample corpus, into its own collection (``sample``), so it can be dropped in one step."""
        return self.service(SAMPLE_COLLECTION).ingest_sample(on_progress, principal=principal)

    # ---- settings the admin changes in the app ---------------------------------------------------
    def update_settings(self, values: dict, *, clear_key: bool = False, principal: Principal) -> None:
        """Store the editable settings (app/settings_panel.py) and apply them to every collection at once."""
        from .settings_panel import applied, validated

        principal.require("admin", "change the settings")
        checked = validated(values, self.settings)
        if clear_key:
            checked["llm_api_key"] = None
        self.db.set_settings(checked, by=principal.name or "anonymous")
        stored = self.db.get_settings()
        with self._lock:
            self.settings = applied(self._base_settings, stored)
            for svc in self._services.values():
                svc.settings = dataclasses.replace(self.settings, collection=svc.collection)
                svc._answerer = None  # the next answer builds the new backend

    def test_llm(self, values: dict) -> str:
        from .settings_panel import test_connection

        return test_connection(self.settings, values)

    # ---- search and answers across collections ------------------------------------------------------
    def _targets(self, collections: Sequence[str] | None) -> list[RagService]:
        names = [c for c in (collections or []) if c] or self.collection_names()
        unknown = [c for c in names if c not in self.collection_names()]
        if unknown:
            raise RagError(f"no collection {unknown[0]!r}; existing: {', '.join(self.collection_names())}")
        return [self.service(n) for n in dict.fromkeys(names)]

    def search(self, query: str, collections: Sequence[str] | None = None, k: int = 10, **kw) -> list[SearchHit]:
        """Ranked hits of ``query`` over ``collections`` (None or empty: all); ``kw`` as RagService.search."""
        targets = self._targets(collections)
        if len(targets) == 1:
            return targets[0].search(query, k=k, **kw)
        per = [(svc, svc.search(query, k=k, **kw)) for svc in targets]
        return merge_hits(per, k)

    def ask_stream(self, question: str, collections: Sequence[str] | None = None, answer_language: str | None = None,
                   languages: Sequence[str] | None = None, k: int | None = None,
                   history: Sequence[dict] | None = None) -> Iterator[object]:
        """Text deltas, then the Answer, from the passages of ``collections`` (None or empty: all); a follow-up is
        resolved against ``history`` (OpenAI chat format). The default collection's answerer (one LLM per app)."""
        targets = self._targets(collections)

        def retrieve(query: str, k: int) -> list:
            return [h.chunk for h in self.search(query, [t.collection for t in targets], k=k, languages=languages,
                                                 highlight=False)]

        main = self.service(self.default)
        yield from answer_stream(main.answerer(), retrieve, question, answer_language, k or self.settings.top_k,
                                 history)

    def ask(self, question: str, **kw):
        return final_answer(self.ask_stream(question, **kw))


def merge_hits(per_collection: list[tuple[RagService, list[SearchHit]]], k: int) -> list[SearchHit]:
    """One ranking of several collections' hits: by score where every collection shares one embedder (comparable
    scores), else by reciprocal rank."""
    fingerprints = {svc.embedder.fingerprint for svc, _ in per_collection}
    scored = []
    for svc, hits in per_collection:
        for h in hits:
            key = float(h.chunk.score) if len(fingerprints) == 1 else 1.0 / (60 + h.rank)
            scored.append((key, h))
    scored.sort(key=lambda x: -x[0])
    out = [h for _, h in scored[:k]]
    for i, h in enumerate(out):
        h.rank = i + 1
    return out

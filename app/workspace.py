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

from .access import AccessPolicy, Authorizer, Principal, read_filter
from .db import AppDatabase
from .identity import Identity
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
        self._acl_lock = threading.Lock()
        from .audit import AuditLog

        self.audit = AuditLog(settings.data_dir)
        self.identity = Identity(self.db, audit=self.audit)
        self.authorizer = Authorizer(self.identity)
        sso = bool(getattr(settings, "oidc_issuer", None) or getattr(settings, "trusted_proxies", None))
        self.policy = AccessPolicy(self.options.auth, self.options.anonymous_access, self.options.host,
                                   identity=self.identity, sso=sso)
        self.service(self.default)

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
                svc.authorizer = self.authorizer
                svc.audit = self.audit
                svc.acl_for = lambda doc_id, _name=name: self.identity.acl_of(_name, doc_id)
                svc.after_write = lambda _name=name: self.sync_acl(_name)
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

    def readable_collections(self, principal: Principal) -> list[str]:
        """The collections ``principal`` may read (collection_names' order)."""
        return [n for n in self.collection_names() if "read" in self.authorizer.rights_on(principal, n)]

    def collections(self, *, principal: Principal) -> list[dict]:
        """The collections the caller may read: name, its documents and chunks (those it may read), embedder,
        whether it is the default, and the caller's rights on it."""
        out = []
        for name in self.readable_collections(principal):
            exists = name in self.store.list_collections()
            meta = (self.store.open_collection(name).meta or {}) if exists else {}
            flt = read_filter(principal, action="list collections")
            docs = len(self.store.facet(name, "metadata.doc_id", flt, limit=10**9)) if exists else 0
            out.append({"name": name, "documents": docs, "points": self.store.count(name, flt) if exists else 0,
                        "embedder": meta.get("embedder") or "", "default": name == self.default,
                        "rights": sorted(self.authorizer.rights_on(principal, name))})
        return out

    def create_collection(self, name: str, *, principal: Principal) -> str:
        """An empty collection with the app's embedder (it appears in every list at once); in multi-user mode the
        caller owns it."""
        principal.require("write", "create collections")
        name = (name or "").strip()
        if name in self.store.list_collections():
            raise RagError(f"a collection named {name!r} exists already")
        if principal.user_id is not None:
            self.identity.set_owner(name, f"u:{principal.user_id}")
        self.service(name).ingestor()  # creates it, recording its embedder
        self.audit.record("collection.create", principal, collection=name)
        return name

    def sync_acl(self, name: str) -> None:
        """Rewrite the ``acl`` payload of collection ``name``'s chunks when its grants changed since they were last
        written (by this process or by the CLI): one set_payload for the collection, one per narrowed document,
        no re-embedding. Runs in the process that holds the store, before the collection is read."""
        from lusifer_rag.store import Filter

        version = self.identity.acl_pending(name)
        if version is None or name not in self.store.list_collections():
            return
        with self._acl_lock:
            version = self.identity.acl_pending(name)
            if version is None:
                return
            self.store.ensure_payload_index(name, "metadata.acl", "keyword")
            self.store.set_payload(name, Filter(ranges={"metadata.chunk_no": (0, None)}), {"acl": self.identity.acl_of(name)},
                                   key="metadata")
            for doc_id in self.identity.document_readers(name):
                self.store.set_payload(name, Filter(must={"metadata.doc_id": doc_id}),
                                       {"acl": self.identity.acl_of(name, doc_id)}, key="metadata")
            self.identity.acl_synced(name, version)

    def drop_collection(self, name: str, *, principal: Principal) -> int:
        """Delete a collection with its documents and their kept originals; returns the documents it held."""
        self.authorizer.require(principal, name, "admin", "delete collections")
        if name not in self.store.list_collections():
            raise RagError(f"no collection {name!r}; existing: {', '.join(sorted(self.store.list_collections())) or 'none'}")
        svc = self.service(name)
        with svc._ingest_lock:
            n = len(self.store.facet(name, "metadata.doc_id", limit=10**9))
            self.store.drop_collection(name)
            shutil.rmtree(svc.uploads().dir, ignore_errors=True)
        with self._lock:
            self._services.pop(name, None)
        self.identity.forget_collection(name)
        self.audit.record("collection.drop", principal, collection=name, documents=n)
        return n

    def ingest_sample(self, on_progress=None, *, principal: Principal):
        """The bundled sample corpus, into its own collection (``sample``), so it can be dropped in one step."""
        self.identity.claim_collection(SAMPLE_COLLECTION, None, public=True)  # public data; an admin may narrow it
        return self.service(SAMPLE_COLLECTION).ingest_sample(on_progress, principal=principal)

    # ---- settings the admin changes in the app ---------------------------------------------------
    def update_settings(self, values: dict, *, clear_key: bool = False, principal: Principal) -> None:
        """Store the editable settings (app/settings_panel.py) and apply them to every collection at once."""
        from .settings_panel import applied, validated

        principal.require_site_admin("change the settings")
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
    def _targets(self, collections: Sequence[str] | None, principal: Principal) -> list[RagService]:
        read_filter(principal)  # fails closed before anything else
        readable = self.readable_collections(principal)
        names = [c for c in (collections or []) if c] or readable
        unknown = [c for c in names if c not in readable]
        if unknown:
            raise RagError(f"no collection {unknown[0]!r} that you may read; yours: {', '.join(readable) or 'none'}")
        return [self.service(n) for n in dict.fromkeys(names)]

    def search(self, query: str, collections: Sequence[str] | None = None, k: int = 10, *, principal: Principal,
               audit: bool = True, **kw) -> list[SearchHit]:
        """Ranked hits of ``query`` over ``collections`` (None or empty: all the caller may read), only chunks the
        caller may read; ``kw`` as RagService.search. Recorded in the audit log with the documents returned
        (``audit=False``: a search made for an answer, which records the answer instead)."""
        from .audit import doc_ids_of

        targets = self._targets(collections, principal)
        if len(targets) == 1:
            hits = targets[0].search(query, k=k, principal=principal, **kw)
        else:
            hits = merge_hits([(svc, svc.search(query, k=k, principal=principal, **kw)) for svc in targets], k)
        if audit:
            self.audit.record("search", principal, query=query, collections=list(collections or []) or None,
                              documents=doc_ids_of(hits))
        return hits

    def ask_stream(self, question: str, collections: Sequence[str] | None = None, answer_language: str | None = None,
                   languages: Sequence[str] | None = None, k: int | None = None,
                   history: Sequence[dict] | None = None, *, principal: Principal) -> Iterator[object]:
        """Text deltas, then the Answer, from the passages of ``collections`` (None or empty: all the caller may
        read); a follow-up is resolved against ``history`` (OpenAI chat format). The default collection's answerer
        (one LLM per app)."""
        targets = self._targets(collections, principal)

        def retrieve(query: str, k: int) -> list:
            return [h.chunk for h in self.search(query, [t.collection for t in targets], k=k, languages=languages,
                                                 highlight=False, principal=principal, audit=False)]

        from .audit import doc_ids_of

        main = self.service(self.default)
        for part in answer_stream(main.answerer(), retrieve, question, answer_language, k or self.settings.top_k,
                                  history):
            if not isinstance(part, str):
                self.audit.record("answer", principal, query=question, collections=list(collections or []) or None,
                                  documents=doc_ids_of(part.contexts), cited=doc_ids_of(c.chunk for c in part.citations))
            yield part

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

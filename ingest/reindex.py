"""Re-embedding a collection with another embedder while the old one keeps serving.

``lusifer-rag reindex --collection NAME --embedder SPEC`` (or the web app's Settings tab):

1. the chunks stored in NAME (texts and payloads: nothing is parsed again; chunks stored before ingestion recorded
   ``language_confidence`` get it) are embedded with the new embedder
   into a new physical collection ``NAME--<12 hex of the embedder's fingerprint>``, page by page in id order;
   after each page the position is recorded in the new collection's meta, so a rerun after a crash (kill -9
   included) continues from there — points keep their ids, so a page written twice is written once;
2. searches meanwhile use the old collection: NAME is resolved to it until the switch;
3. chunks added to or deleted from NAME during the run are caught up (ids compared), then NAME is switched to
   the new collection in one step (a Qdrant alias on a server; the store's alias map in the embedded store);
4. the old collection is kept (a rollback is another switch) unless ``--drop-old`` is given, now or later.

The state of a run is the new collection's ``meta["reindex"]``; :func:`reindex_status` reads it for ``stats``
and the UI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from lusifer_rag.errors import StoreError
from lusifer_rag.store import CollectionSpec, Filter, Point, SparseVector, generation_name, is_generation

from .sentence_vectors import PAYLOAD_KEY

RUNNING, SWITCHED = "running", "switched"


@dataclass
class ReindexReport:
    collection: str
    source: str  # the physical collection that served before
    target: str  # the physical collection that serves now
    embedder: str
    points: int = 0
    embedded: int = 0  # points embedded by this run (a resumed run embeds only the rest)
    caught_up: int = 0  # points added or removed during the run, reconciled before the switch
    truncated: int = 0  # chunks longer than the new embedder's input limit (embedded truncated)
    resumed: bool = False
    switched: bool = False
    dropped_old: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.switched:
            return "; ".join(self.notes) or f"{self.collection}: nothing to do"
        head = (f"{self.collection}: {self.points} chunks now served by {self.embedder} "
                f"(collection {self.target}; {self.embedded} embedded by this run"
                + (", resumed" if self.resumed else "") + f", {self.seconds:.1f}s)")
        return "; ".join([head, *self.notes])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Reindexer:
    """Re-embeds collection ``collection`` of ``store`` with ``embedder``. ``on_progress(done, total)`` after each
    page; ``switch_lock``: held while catching up and switching (the web app passes its ingest lock, so no upload
    lands in the old collection after its last catch-up)."""

    def __init__(self, store, collection: str, embedder, *, page: int = 256,
                 on_progress: Callable[[int, int], None] | None = None, switch_lock=None):
        if isinstance(page, bool) or not isinstance(page, int) or page <= 0:
            raise StoreError(f"reindex page size must be a positive integer; got {page!r}")
        self.store, self.collection, self.embedder = store, collection, embedder
        self.page, self.on_progress, self.switch_lock = page, on_progress, switch_lock

    def run(self, drop_old: bool = False) -> ReindexReport:
        t0 = time.perf_counter()
        store, name, emb = self.store, self.collection, self.embedder
        if name not in store.list_collections():
            raise StoreError(f"no collection {name!r} to re-index in {store.location}; "
                             f"existing: {', '.join(store.list_collections()) or '(none)'}")
        source = store.resolve(name)
        spec = store.open_collection(name)
        meta = dict(spec.meta or {})
        target = generation_name(name, emb.fingerprint)
        report = ReindexReport(name, source, target, emb.spec)
        if meta.get("embedder_fingerprint") == emb.fingerprint:
            previous = (meta.get("reindex") or {}).get("source")
            report.notes.append(f"{name} is already served by {emb.spec} (collection {source})")
            if drop_old and previous and previous in store.list_physical():
                store.drop_physical(previous)
                report.dropped_old = True
                report.notes.append(f"dropped the previous collection {previous}")
            report.seconds = time.perf_counter() - t0
            return report
        state = self._open_target(target, source, spec, meta, report)
        sparse = self._sparse_encoder(meta)

        offset, done = state.get("offset"), int(state.get("done", 0))
        total = store.count(source)
        if state.get("complete"):
            offset = None
        while not state.get("complete"):
            points, nxt = store.scroll(source, limit=self.page, offset=offset)
            if points:
                self._write(target, points, sparse, report)
            done += len(points)
            state = {**state, "offset": nxt, "done": done, "total": total, "updated_at": _now(),
                     "complete": nxt is None}
            self._save_state(target, state)  # after the write: a crash in between redoes this page (same ids)
            if self.on_progress:
                self.on_progress(done, total)
            offset = nxt

        with self.switch_lock or _NoLock():
            report.caught_up = self._catch_up(source, target, sparse, report)
            report.points = store.count(target)
            before = store.switch_alias(name, target)
            report.switched = True
            # after the switch: a crash before this line leaves a served collection whose fingerprint already
            # matches, which a rerun reports as done
            self._save_state(target, {**state, "state": SWITCHED, "switched_at": _now(), "done": report.points,
                                      "total": report.points})
        if before == name and name not in store.list_physical():
            report.notes.append(f"the Qdrant server could not keep the old collection {name!r}: its name is now the alias")
        elif drop_old and before:
            store.drop_physical(before)
            report.dropped_old = True
            report.notes.append(f"dropped the old collection {before}")
        elif before:
            report.notes.append(f"the old collection {before} is kept (rerun with --drop-old to delete it, or switch back)")
        if report.truncated:
            report.notes.append(f"{report.truncated} chunks are longer than {emb.spec}'s {emb.max_tokens}-token input and "
                                "were embedded truncated (re-ingest the files to chunk them for it)")
        report.seconds = time.perf_counter() - t0
        return report

    # ---- pieces ----------------------------------------------------------------------------------
    def _open_target(self, target: str, source: str, spec: CollectionSpec, meta: dict, report: ReindexReport) -> dict:
        """The new collection's reindex state, creating the collection on the first run."""
        store, emb = self.store, self.embedder
        if target in store.list_physical():
            state = dict(store.open_collection(target).meta.get("reindex") or {})
            if state.get("source") == source and state.get("state") == RUNNING:
                report.resumed = True
                return state
            store.drop_physical(target)  # a run from another source, or a switched-away generation: start over
        state = {"of": self.collection, "source": source, "state": RUNNING, "offset": None, "done": 0,
                 "started_at": _now(), "embedder_before": meta.get("embedder")}
        new_meta = {**meta, "embedder": emb.spec, "embedder_fingerprint": emb.fingerprint, "dim": emb.dim,
                    "reindex": state}
        fields = {**spec.to_dict(), "dim": emb.dim, "meta": new_meta}
        store.create_collection(target, CollectionSpec.from_dict(fields))
        return state

    def _save_state(self, target: str, state: dict) -> None:
        meta = dict(self.store.open_collection(target).meta or {})
        self.store.update_meta(target, {**meta, "reindex": state})

    def _sparse_encoder(self, meta: dict):
        from .chunking import ChunkingParams
        from .pipeline import sparse_encoder_for

        chunking = meta.get("chunking") or {}
        known = set(ChunkingParams.__dataclass_fields__)
        return sparse_encoder_for(self.embedder, ChunkingParams(**{k: v for k, v in chunking.items() if k in known})
                                  if chunking else ChunkingParams(max_tokens=min(self.embedder.max_tokens, 512)))

    def _write(self, target: str, points: list[Point], sparse, report: ReindexReport) -> None:
        texts = [p.payload.get("page_content", "") for p in points]
        counts = self.embedder.count_tokens(texts, "document")
        report.truncated += sum(n > self.embedder.max_tokens for n in counts)
        dense = self.embedder.embed_documents(texts, direct=True)  # (n, dim): a bulk job, not the request queue
        sv = sparse.encode_documents(texts)
        # sentence vectors belong to an embedder: chunks that had them get the new embedder's
        from .pipeline import with_sentence_vectors

        had = any(PAYLOAD_KEY in p.payload for p in points)
        payloads = with_language_confidence(texts, [p.payload for p in points])
        payloads = with_sentence_vectors(self.embedder, texts, payloads, had)
        self.store.upsert(target, [Point(p.id, v, pl, SparseVector(s.indices, s.values))
                                   for p, v, pl, s in zip(points, dense, payloads, sv)])
        report.embedded += len(points)

    def _ids(self, name: str) -> set[str]:
        return {p.id for p in self.store.iter_points(name)}

    def _catch_up(self, source: str, target: str, sparse, report: ReindexReport) -> int:
        """Make the target hold exactly the source's ids: what was added or deleted during the run."""
        have, want = self._ids(target), self._ids(source)
        missing, extra = sorted(want - have), sorted(have - want)
        for start in range(0, len(missing), self.page):
            self._write(target, self.store.retrieve(source, missing[start:start + self.page]), sparse, report)
        if extra:
            self.store.delete(target, Filter(ids=extra))
        # a chunk replaced in place (same id, new text) is a new state with a new id in this project, so ids suffice
        return len(missing) + len(extra)


def with_language_confidence(texts: list[str], payloads: list[dict]) -> list[dict]:
    """Payloads of chunks stored before ingestion recorded the identifier's confidence in a chunk's language get it
    (retrieval tells unsure labels apart by it); a label the identifier no longer gives that text is unsure (0.0)."""
    todo = [i for i, pl in enumerate(payloads)
            if "language" in (md := pl.get("metadata") or {}) and "language_confidence" not in md]
    if not todo:
        return payloads
    from .langid import detect_languages

    out = list(payloads)
    for i, (code, conf) in zip(todo, detect_languages([texts[i] for i in todo])):
        md = dict(out[i]["metadata"])
        md["language_confidence"] = round(float(conf), 3) if code == md["language"] else 0.0
        out[i] = {**out[i], "metadata": md}
    return out


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def reindex_status(store, collection: str) -> dict | None:
    """The re-index of ``collection`` under way (done, total, embedder, target), or None."""
    serving = store.resolve(collection)
    for name in store.list_physical():
        if name == serving or not is_generation(name) or not name.startswith(collection + "--"):
            continue
        meta = store.open_collection(name).meta or {}
        state = meta.get("reindex") or {}
        if state.get("of") == collection and state.get("state") == RUNNING:
            return {"target": name, "embedder": meta.get("embedder"), "done": state.get("done", 0),
                    "total": state.get("total"), "started_at": state.get("started_at"),
                    "updated_at": state.get("updated_at")}
    return None

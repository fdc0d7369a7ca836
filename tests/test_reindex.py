"""Re-embedding a collection with another embedder (ingest/reindex.py): searches keep the old collection during
the run, the switch is one step, a kill -9 + rerun completes without duplicates; embedded == server (local mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lusifer_rag.app.access import LOCAL
from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor
from lusifer_rag.ingest.reindex import Reindexer, reindex_status
from lusifer_rag.store import generation_name, open_store

UDHR = Path(__file__).parent / "data" / "udhr"


def write_docs(root: Path, languages: list[str], articles: int = 30) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in languages:
        arts = json.loads((UDHR / f"{lang}.json").read_text(encoding="utf-8"))["articles"]
        (root / f"udhr-{lang}.txt").write_text("\n\n".join(arts[str(a)] for a in range(1, articles + 1)), encoding="utf-8")
    return root


def ingest(store, embedder, docs: Path, max_tokens: int = 96) -> int:
    rep = Ingestor(store, "docs", embedder, ChunkingParams(max_tokens=max_tokens), workers=0, progress_mode="off").ingest([docs])
    assert not rep.by_status("failed"), rep.to_json()
    return store.count("docs")


def ids_of(store, name: str) -> list[str]:
    return [p.id for p in store.iter_points(name)]


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path):
    location = str(tmp_path / "store") if request.param == "embedded" else ":memory:"
    st = open_store(location)
    yield st
    st.close()


def test_searches_answer_from_the_old_collection_until_the_switch(store, tmp_path, e5, tiny_hf_embedder):
    from lusifer_rag.rag.retrieval import Retriever

    docs = write_docs(tmp_path / "docs", ["en", "fr", "sw"])
    n = ingest(store, e5, docs)
    old = store.resolve("docs")
    query = "Everyone has the right to education"
    before = [(c.id, round(c.score, 5)) for c in Retriever(store, "docs", e5).search(query, k=5)]

    paused, go = threading.Event(), threading.Event()
    seen_during: dict = {}

    def progress(done: int, total: int) -> None:
        if not paused.is_set():
            paused.set()
            go.wait(60)

    job = Reindexer(store, "docs", tiny_hf_embedder, page=8, on_progress=progress)
    t = threading.Thread(target=lambda: seen_during.setdefault("report", job.run()))
    t.start()
    assert paused.wait(60)
    try:
        # mid-run: the name still resolves to the old collection and the old embedder's search is unchanged
        assert store.resolve("docs") == old
        during = [(c.id, round(c.score, 5)) for c in Retriever(store, "docs", e5).search(query, k=5)]
        assert during == before
        state = reindex_status(store, "docs")
        assert state["embedder"] == tiny_hf_embedder.spec and state["done"] == 8 and state["total"] == n
        assert "docs" in store.list_collections() and state["target"] not in store.list_collections()
        # changes during the run land in the old collection; the switch catches them up: a document added, and
        # the document of a chunk already copied deleted
        copied = ids_of(store, state["target"])
        gone = store.retrieve(old, copied[:1])[0].payload["metadata"]["source"]
        ing = Ingestor(store, "docs", e5, ChunkingParams(max_tokens=96), workers=0, progress_mode="off")
        assert ing.delete_document(source=gone) > 0
        write_docs(tmp_path / "late", ["de"])
        ing.ingest([tmp_path / "late"])
        n_late = store.count("docs")
    finally:
        go.set()
        t.join(120)
    report = seen_during["report"]
    assert report.switched and report.caught_up >= 1 and report.points == n_late

    target = generation_name("docs", tiny_hf_embedder.fingerprint)
    assert store.resolve("docs") == target and store.list_collections() == ["docs"]
    meta = store.open_collection("docs").meta
    assert meta["embedder_fingerprint"] == tiny_hf_embedder.fingerprint and meta["embedder"] == tiny_hf_embedder.spec
    assert sorted(ids_of(store, "docs")) == sorted(ids_of(store, old))  # same chunks, same ids
    assert not [p for p in store.iter_points("docs") if p.payload["metadata"]["source"] == gone]
    # the new collection holds the new embedder's vectors of the stored texts
    points = list(store.iter_points("docs", with_vectors=True))[:6]
    want = tiny_hf_embedder.embed_documents([p.payload["page_content"] for p in points])
    np.testing.assert_allclose(np.stack([p.vector for p in points]), want, atol=1e-5)
    hits = Retriever(store, "docs", tiny_hf_embedder).search(query, k=5)
    assert hits and all(h.id in set(ids_of(store, target)) for h in hits)

    # the old collection is kept for a rollback until asked; then dropped
    if old != "docs" or "docs" in store.list_physical():
        assert old in store.list_physical()
        again = Reindexer(store, "docs", tiny_hf_embedder).run(drop_old=True)
        assert again.dropped_old and old not in store.list_physical() and not again.switched
    assert store.count("docs") == n_late


def test_the_app_follows_a_switch_and_shows_the_reindex(tmp_path, e5, tiny_hf_embedder):
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.runtime import open_store_from
    from tests.app_fixtures import app_settings

    settings = app_settings(tmp_path, ingest_batch_chunks=4)
    with open_store_from(settings) as st:
        ingest(st, e5, write_docs(tmp_path / "docs", ["en", "ja"]))
        svc = RagService(settings, st, embedder=e5, options=AppOptions(ingest_workers=0))
        first = svc.search("right to work", k=3, highlight=False, principal=LOCAL)
        assert svc.stats(principal=LOCAL)["reindex"] is None and svc.info()["reindex"] is None
        msg = svc.start_reindex(tiny_hf_embedder.spec, principal=LOCAL)
        assert "background" in msg
        with pytest.raises(Exception, match="already running"):
            svc.start_reindex(tiny_hf_embedder.spec, principal=LOCAL)
        report = svc.wait_reindex(120)
        assert report.switched
        hits = svc.search("right to work", k=3, highlight=True, principal=LOCAL)  # the next search loads the new embedder
        assert svc.embedder.fingerprint == tiny_hf_embedder.fingerprint and hits and first
        # the sentence vectors stored for highlights were re-embedded too: they are the new embedder's
        entries = [p.payload.get("sentence_vectors") for p in st.iter_points(st.resolve("docs"))]
        assert entries and all(entries) and {e.get("embedder") for e in entries if "int8" in e} == {tiny_hf_embedder.fingerprint}
        assert all(h.highlight for h in hits)
        stats = svc.stats(principal=LOCAL)
        assert stats["fingerprint"] == tiny_hf_embedder.fingerprint and stats["physical"].startswith("docs--")
        assert stats["previous"] == "docs" and "served by" in stats["last_reindex"]


def test_reindex_killed_mid_run_then_rerun_completes_without_duplicates(tmp_path, e5, tiny_hf_embedder):
    store_dir = tmp_path / "store"
    with open_store(str(store_dir)) as st:
        n = ingest(st, e5, write_docs(tmp_path / "docs", ["en", "fr", "de", "es", "ru", "sw"]), max_tokens=48)
        old_ids = sorted(ids_of(st, "docs"))
    assert n >= 150
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LUSIFER_RAG_INGEST_BATCH_CHUNKS": "2"}
    cmd = [sys.executable, "-m", "lusifer_rag", "reindex", "--store", str(store_dir), "--collection", "docs",
           "--embedder", tiny_hf_embedder.spec, "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first progress line: a page is written and recorded
        if line.startswith("reindex docs:"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    target = generation_name("docs", tiny_hf_embedder.fingerprint)
    with open_store(str(store_dir)) as st:
        state = st.open_collection(target).meta["reindex"]
        assert st.resolve("docs") == "docs" and 0 < state["done"] < n, state  # killed mid-run, nothing switched
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed" in done.stdout
    with open_store(str(store_dir)) as st:
        assert st.resolve("docs") == target and st.count("docs") == n
        assert sorted(ids_of(st, "docs")) == old_ids  # every chunk once: no duplicates, none lost
        points = list(st.iter_points("docs", with_vectors=True))
        want = tiny_hf_embedder.embed_documents([p.payload["page_content"] for p in points])
        np.testing.assert_allclose(np.stack([p.vector for p in points]), want, atol=1e-5)


def test_reindex_gives_chunks_stored_without_a_language_confidence_one(tmp_path, e5, tiny_hf_embedder):
    from lusifer_rag.store import Point

    with open_store(str(tmp_path / "store")) as st:
        ingest(st, e5, write_docs(tmp_path / "docs", ["en", "fr", "sw"], articles=10))
        points = list(st.iter_points("docs", with_vectors=True))
        had = {p.id: p.payload["metadata"]["language_confidence"] for p in points}
        assert len(set(had.values())) > 3  # real, varied confidences from the identifier
        # as a collection indexed before the confidence was recorded; one label the identifier would not give
        relabelled = points[0].id
        old = []
        for p in points:
            md = {k: v for k, v in p.payload["metadata"].items() if k != "language_confidence"}
            if p.id == relabelled:
                md["language"] = "ha"
            old.append(Point(p.id, p.vector, {**p.payload, "metadata": md}))
        st.upsert("docs", old)
        assert not any("language_confidence" in p.payload["metadata"] for p in st.iter_points("docs"))

        Reindexer(st, "docs", tiny_hf_embedder).run()
        after = {p.id: p.payload["metadata"] for p in st.iter_points("docs")}
        assert set(after) == set(had)
        assert after[relabelled]["language"] == "ha" and after[relabelled]["language_confidence"] == 0.0
        # ingest records the document-level confidence (ingest/langid.py label_document); a re-index, which sees
        # chunks and not documents, records the identifier's confidence in each chunk's own label
        confs = {i: md["language_confidence"] for i, md in after.items() if i != relabelled}
        assert all(0 < c <= 1 for c in confs.values()), confs


def test_aliases_switch_persist_and_hide_generations(store, tmp_path):
    from lusifer_rag.errors import StoreError
    from lusifer_rag.store import CollectionSpec, Point

    store.create_collection("docs", CollectionSpec(dim=2))
    store.upsert("docs", [Point("00000000-0000-0000-0000-000000000001", np.array([1, 0], np.float32), {"v": "old"})])
    gen = generation_name("docs", "new embedder")
    store.create_collection(gen, CollectionSpec(dim=3))
    store.upsert(gen, [Point("00000000-0000-0000-0000-000000000001", np.array([0, 1, 0], np.float32), {"v": "new"})])
    assert store.list_collections() == ["docs"]  # a generation no alias points to is not a user's collection
    assert store.query("docs", dense=[1, 0], k=1)[0].payload == {"v": "old"}
    before = store.switch_alias("docs", gen)
    assert store.resolve("docs") == gen and store.list_collections() == ["docs"]
    assert store.query("docs", dense=[0, 1, 0], k=1)[0].payload == {"v": "new"}  # the new dim: no stale spec
    assert store.open_collection("docs").dim == 3
    with pytest.raises(StoreError, match="still served through alias 'docs'"):
        store.drop_physical(gen)
    with pytest.raises(StoreError, match="no such collection"):
        store.switch_alias("docs", "nothing-here")
    if before in store.list_physical():
        assert store.drop_physical(before)
    if store.location != ":memory:":  # the alias map survives a reopen
        store.close()
        with open_store(store.location) as again:
            assert again.resolve("docs") == gen and again.count("docs") == 1
            assert again.drop_collection("docs") and again.list_physical() == [] and again.list_collections() == []
    else:
        assert store.drop_collection("docs") and store.list_physical() == [] and store.list_collections() == []

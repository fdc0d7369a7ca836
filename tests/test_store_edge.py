"""The embedded Qdrant Edge store: persistence, threads, the one-process lock (with real subprocesses),
argument validation, and the location registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from lusifer_rag.errors import ConfigError, StoreError
from lusifer_rag.store import CollectionSpec, Filter, Point, SparseVector, open_store, parse_location
from lusifer_rag.store.edge import EdgeStore
from lusifer_rag.store.server import ServerStore

DIM = 16
ROOT = Path(__file__).resolve().parents[1]


def pts(n: int, start: int = 0, seed: int = 0, lang: str = "en") -> list[Point]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)  # (n, dim)
    return [
        Point(str(uuid.uuid5(uuid.NAMESPACE_OID, str(start + i))), vecs[i],
              {"page_content": f"t{start + i}", "metadata": {"doc_id": f"d{(start + i) // 10}", "language": lang, "page": start + i}},
              SparseVector([(start + i) % 50], [1.0]))
        for i in range(n)
    ]


def test_persists_across_reopen(tmp_path):
    loc = str(tmp_path / "store")
    data = pts(200)
    with open_store(loc) as s:
        assert isinstance(s, EdgeStore)
        s.create_collection("c", CollectionSpec(dim=DIM, meta={"embedder": "e"}))
        s.upsert("c", data)
        before = [h.id for h in s.query("c", data[7].vector, k=5)]
    with open_store(loc) as s:
        assert s.list_collections() == ["c"]
        assert s.open_collection("c").meta == {"embedder": "e"}
        assert s.count("c") == 200
        assert [h.id for h in s.query("c", data[7].vector, k=5)] == before
        assert s.drop_collection("c") is True
        assert s.list_collections() == [] and s.drop_collection("c") is False
        with pytest.raises(StoreError, match="no collection 'c'"):
            s.count("c")


def test_interrupted_create_is_not_a_collection(tmp_path):
    loc = tmp_path / "store"
    with open_store(str(loc)) as s:
        s.create_collection("ok", CollectionSpec(dim=DIM))
    # a create killed before its commit marker leaves a shard directory without collection.json
    (loc / "collections" / "half" / "shard").mkdir(parents=True)
    with open_store(str(loc)) as s:
        assert s.list_collections() == ["ok"]
        with pytest.raises(StoreError, match="existing: ok"):
            s.open_collection("half")
        s.create_collection("half", CollectionSpec(dim=DIM))
        s.upsert("half", pts(3))
        assert s.count("half") == 3


def test_same_process_opens_share_the_directory(tmp_path):
    loc = str(tmp_path / "store")
    a = open_store(loc)
    b = open_store(loc)  # the web app and an ingest job in one process
    a.create_collection("c", CollectionSpec(dim=DIM))
    b.upsert("c", pts(10))
    assert a.count("c") == 10
    a.close()
    assert b.count("c") == 10  # still open through b
    b.close()
    with pytest.raises(StoreError, match="closed"):
        b.count("c")
    with open_store(loc) as c:  # everything released: reopen works
        assert c.count("c") == 10


def test_threads_query_while_others_write(tmp_path):
    n_readers, n_writers, per_writer, batch = 4, 3, 300, 50
    with open_store(str(tmp_path / "store"), optimize_after=800) as s:
        s.create_collection("c", CollectionSpec(dim=DIM, indexing_threshold_kb=1))
        base = pts(300)
        s.upsert("c", base)
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    q = rng.standard_normal(DIM).astype(np.float32)
                    hits = s.query("c", q, k=5, filter=Filter(must={"metadata.language": ["en", "sw"]}))
                    assert len(hits) == 5
                    s.query("c", q, SparseVector([3], [1.0]), mode="hybrid", k=5)
                    s.count("c")
                    s.scroll("c", limit=20)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the main thread
                errors.append(exc)

        def writer(w: int) -> None:
            try:
                start = 10_000 * (w + 1)
                for off in range(0, per_writer, batch):
                    s.upsert("c", pts(batch, start=start + off, seed=w * 1000 + off, lang="sw"))
                    # delete the first point of each batch again, by id
                    s.delete("c", Filter(ids=[str(uuid.uuid5(uuid.NAMESPACE_OID, str(start + off)))]))
                s.delete("c", Filter(must={"metadata.doc_id": f"d{start // 10}"}))  # its first 10 points, 1 already gone
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        readers = [threading.Thread(target=reader, args=(i,)) for i in range(n_readers)]
        writers = [threading.Thread(target=writer, args=(i,)) for i in range(n_writers)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        assert not errors, errors[:3]
        per = per_writer - per_writer // batch - 9  # batches lose their first point; doc d{start} loses 9 more
        assert s.count("c") == 300 + n_writers * per
        assert s.facet("c", "metadata.language") == {"en": 300, "sw": n_writers * per}
        assert len({p.id for p in s.iter_points("c")}) == 300 + n_writers * per


def test_drop_while_in_use_is_clean(tmp_path):
    with open_store(str(tmp_path / "store")) as s:
        s.create_collection("c", CollectionSpec(dim=DIM))
        s.upsert("c", pts(100))
        errors: list[BaseException] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                try:
                    s.query("c", np.ones(DIM, np.float32), k=3)
                except StoreError as exc:  # expected once dropped: a clear store error, nothing else
                    assert "c" in str(exc)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        assert s.drop_collection("c")
        done.set()
        for t in threads:
            t.join()
        assert not errors
        assert s.list_collections() == []


HOLDER = textwrap.dedent(
    """
    import sys, time
    from lusifer_rag.store import open_store, CollectionSpec
    s = open_store(sys.argv[1])
    if "c" not in s.list_collections():
        s.create_collection("c", CollectionSpec(dim=4))
    print("ready", flush=True)
    sys.stdin.readline()
    s.close()
    print("closed", flush=True)
    """
)
OPENER = textwrap.dedent(
    """
    import sys
    from lusifer_rag.errors import StoreError
    from lusifer_rag.store import open_store
    try:
        open_store(sys.argv[1]).close()
    except StoreError as e:
        print(e); sys.exit(3)
    print("opened")
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_second_process_gets_a_clear_error_and_stale_locks_do_not_block(tmp_path):
    loc = str(tmp_path / "store")
    holder = _spawn(HOLDER, loc)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        # this process cannot open it: immediate error naming the holder and what to do
        with pytest.raises(StoreError) as err:
            open_store(loc)
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "since" in msg and "--store http" in msg and "stop" in msg
        # nor can a third process
        other = _spawn(OPENER, loc)
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 3 and f"pid {holder.pid}" in out
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: its holder record stays behind
        holder.wait(timeout=30)
    assert (Path(loc) / ".lock.holder.json").exists()
    with open_store(loc) as s:  # the OS released the lock with the process
        assert s.list_collections() == ["c"]
        # while we hold it, a subprocess is refused with our pid
        other = _spawn(OPENER, loc)
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 3 and f"pid {os.getpid()}" in out
    other = _spawn(OPENER, loc)
    out, _ = other.communicate(timeout=60)
    assert other.returncode == 0 and "opened" in out


def test_validation_errors_say_what_was_given(tmp_path):
    with open_store(str(tmp_path / "store")) as s:
        s.create_collection("c", CollectionSpec(dim=DIM, sparse_name=None))
        good = pts(2)
        cases = [
            (lambda: s.upsert("c", [Point(good[0].id, np.ones(DIM + 1, np.float32))]), "17"),
            (lambda: s.upsert("c", [Point("not-a-uuid", np.ones(DIM, np.float32))]), "not-a-uuid"),
            (lambda: s.upsert("c", [Point(good[0].id, np.full(DIM, np.nan, np.float32))]), "NaN"),
            (lambda: s.upsert("c", good), "no sparse vector"),
            (lambda: s.query("c", np.ones(3), k=3), "3 dims"),
            (lambda: s.query("c", np.ones(DIM), mode="fuzzy"), "fuzzy"),
            (lambda: s.query("c", sparse=SparseVector([1], [1.0]), mode="sparse"), "no sparse vector"),
            (lambda: s.query("c", np.ones(DIM), k=0), "k must"),
            (lambda: s.delete("c", Filter()), "non-empty filter"),
            (lambda: s.create_collection("../evil", CollectionSpec(dim=DIM)), "not allowed"),
            (lambda: s.create_collection("c", CollectionSpec(dim=DIM)), "already exists"),
            (lambda: s.facet("c", "metadata.chunk"), "payload index"),
            (lambda: Filter(must={"metadata.page": {"a": 1}}), "dict"),
            (lambda: Filter(must={"metadata.doc_id": ["a", 1]}), "all be str"),
            (lambda: Filter(ranges={"metadata.page": (1,)}), "(lo, hi)"),
            (lambda: SparseVector([1, 2], [1.0]), "2 indices"),
        ]
        for fn, needle in cases:
            with pytest.raises(StoreError, match=None) as err:
                fn()
            assert needle in str(err.value), (needle, str(err.value))
        for bad in (dict(dim=0), dict(dim=4, distance="l3"), dict(dim=4, quantization="pq"),
                    dict(dim=4, payload_indexes={"x": "geo"})):
            with pytest.raises(ConfigError):
                CollectionSpec(**bad)


def test_registry_picks_backend_by_location(tmp_path):
    assert parse_location("http://localhost:6333") == ("http", "http://localhost:6333")
    assert parse_location("https://q.example:6333") == ("https", "https://q.example:6333")
    assert parse_location(":memory:") == (":memory:", ":memory:")
    assert parse_location("qdrant-local:/x/y") == ("qdrant-local", "/x/y")
    assert parse_location("/data/store") == ("", "/data/store")
    assert parse_location("C:\\data") == ("", "C:\\data")
    with open_store(":memory:") as s:
        assert isinstance(s, ServerStore) and s.local
    with open_store(f"qdrant-local:{tmp_path / 'ql'}") as s:
        assert isinstance(s, ServerStore)
        s.create_collection("c", CollectionSpec(dim=DIM))
        s.upsert("c", pts(5))
    with open_store(f"qdrant-local:{tmp_path / 'ql'}") as s:  # local mode persists too
        assert s.count("c") == 5
    with open_store(f"edge:{tmp_path / 'e'}") as s:
        assert isinstance(s, EdgeStore)
    with pytest.raises(ConfigError, match="ftp"):
        open_store("ftp://x")
    with pytest.raises(StoreError, match="API key"):
        open_store(str(tmp_path / "e2"), api_key="secret")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(str(tmp_path / "file"))


def test_optimize_after_bulk_writes_builds_the_index(tmp_path):
    with open_store(str(tmp_path / "store"), optimize_after=100) as s:
        s.create_collection("c", CollectionSpec(dim=DIM, sparse_name=None, indexing_threshold_kb=1))
        dense_only = lambda n, start: [Point(p.id, p.vector, p.payload) for p in pts(n, start=start)]  # noqa: E731
        info = lambda: s._dir.shard("c").shard.info()  # noqa: E731 - engine-side truth
        s.upsert("c", dense_only(50, 0))
        assert info().indexed_vectors_count == 0  # Edge has no background optimizer
        s.upsert("c", dense_only(60, 50))  # crosses optimize_after: the store optimizes by itself
        assert info().indexed_vectors_count == 110
        s.upsert("c", dense_only(20, 200))
        assert s.optimize("c") is True and info().indexed_vectors_count == 130
        assert s.optimize("c") is False  # nothing left to do
        assert s.query("c", pts(1, start=205, seed=0)[0].vector, k=1)[0].id


def test_the_search_beam_hnsw_ef_reaches_the_index(tmp_path):
    """A wide beam (the default) finds what exact search finds; a beam of k on the same index misses some:
    so the spec's hnsw_ef is what the engine searches with. Old specs (no hnsw_ef) load with the default."""
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((26_000, 128)).astype(np.float32)  # > the full-scan threshold: an HNSW index
    queries = rng.standard_normal((30, 128)).astype(np.float32)
    with pytest.raises(ConfigError, match="hnsw_ef must be a positive int; got 0"):
        CollectionSpec(dim=128, hnsw_ef=0)
    assert CollectionSpec.from_dict({"dim": 128}).hnsw_ef == CollectionSpec(dim=128).hnsw_ef == 512
    store = open_store(str(tmp_path / "s"))
    recall = {}
    for ef in (10, 512):
        name = f"ef{ef}"
        store.create_collection(name, CollectionSpec(dim=128, sparse_name=None, hnsw_ef=ef))
        for i in range(0, len(vecs), 2000):
            store.upsert(name, [Point(str(uuid.UUID(int=j + 1)), vecs[j], {}) for j in range(i, min(i + 2000, len(vecs)))])
        store.optimize(name)
        hits = [{h.id for h in store.query(name, dense=q, k=10, payload=False)} for q in queries]
        exact = [{h.id for h in store.query(name, dense=q, k=10, payload=False, exact=True)} for q in queries]
        recall[ef] = np.mean([len(a & b) / 10 for a, b in zip(hits, exact)])
    # a query's own beam overrides the collection's, in query() and in query_batch()
    wide = [{h.id for h in store.query("ef10", dense=q, k=10, payload=False, hnsw_ef=512)} for q in queries]
    batch = store.query_batch("ef10", [{"dense": q, "k": 10, "payload": False, "hnsw_ef": 512} for q in queries])
    assert [{h.id for h in hs} for hs in batch] == wide
    recall["ef10 collection, query beam 512"] = np.mean([len(a & b) / 10 for a, b in zip(wide, exact)])
    with pytest.raises(StoreError, match="hnsw_ef must be a positive int or None; got 0"):
        store.query("ef10", dense=queries[0], k=10, hnsw_ef=0)
    store.close()
    assert recall[512] >= 0.95 and recall[10] <= recall[512] - 0.1, recall
    assert recall["ef10 collection, query beam 512"] >= 0.95, recall

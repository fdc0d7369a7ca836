"""The ingest pipeline end to end: real files, the real e5-small, the embedded Qdrant Edge store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor, doc_id_for
from lusifer_rag.errors import StoreError
from lusifer_rag.store import Filter, open_store

import pdf_factory

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(root: Path, udhr, langs=("en", "sw", "ja", "hi"), articles=(1, 3, 26)) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for lang in langs:
        texts = udhr(lang)
        body = "\n\n".join(texts[a - 1] for a in articles)
        p = root / f"udhr_{lang}.txt"
        p.write_text(body, encoding="utf-8")
        out.append(p)
    return out


def all_points(store, collection):
    return list(store.iter_points(collection))


def assert_consistent(store, collection):
    """Every document holds exactly chunk_count points of one state, chunk numbers 0..n-1, ids unique."""
    points = all_points(store, collection)
    assert len({p.id for p in points}) == len(points)
    by_doc: dict[str, list] = {}
    for p in points:
        by_doc.setdefault(p.payload["metadata"]["doc_id"], []).append(p.payload["metadata"])
    for doc_id, mds in by_doc.items():
        assert len({m["state"] for m in mds}) == 1, f"{mds[0]['source']}: points of several states"
        assert sorted(m["chunk_no"] for m in mds) == list(range(mds[0]["chunk_count"])), mds[0]["source"]
    return by_doc


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "store"))
    yield s
    s.close()


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-pool"])
def test_ingest_reingest_is_noop_and_payload_is_complete(tmp_path, store, e5, udhr, workers):
    files = write_corpus(tmp_path / "docs", udhr)
    pdf = pdf_factory.english_pdf(tmp_path / "docs" / "overview.pdf")
    ing = Ingestor(store, "c", e5, ChunkingParams(max_tokens=128, overlap_tokens=16), workers=workers)
    r1 = ing.ingest([tmp_path / "docs"])
    assert r1.exit_code == 0, r1.to_json()
    assert sorted(Path(r.source).name for r in r1.by_status("ingested")) == sorted(p.name for p in files + [pdf])
    n = store.count("c")
    assert n == r1.embedded_chunks > 0
    by_doc = assert_consistent(store, "c")
    langs = {m[0]["source"].rsplit("_", 1)[-1]: m[0]["doc_language"] for m in by_doc.values()}
    assert langs["en.txt"] == "en" and langs["sw.txt"] == "sw" and langs["ja.txt"] == "ja" and langs["hi.txt"] == "hi"
    pdf_md = by_doc[doc_id_for(str(pdf.resolve()))]
    assert {m["page"] for m in pdf_md} >= {1, 2} and all(m["page_end"] >= m["page"] for m in pdf_md)
    # every chunk stays under the cap including the template, and is the exact text at its offsets
    for p in all_points(store, "c"):
        md = p.payload["metadata"]
        assert md["token_count"] <= 128
        assert md["char_end"] - md["char_start"] == len(p.payload["page_content"])

    r2 = Ingestor(store, "c", e5, ChunkingParams(max_tokens=128, overlap_tokens=16),
                  workers=1 - workers).ingest([tmp_path / "docs"])  # the other path agrees: nothing to redo
    assert r2.embedded_chunks == 0  # nothing re-embedded
    assert len(r2.by_status("skipped")) == len(files) + 1 and store.count("c") == n


def test_progress_bar_shows_files_chunks_and_tokens_per_second(tmp_path, store, e5, udhr, capsys):
    files = write_corpus(tmp_path / "docs", udhr, langs=("en", "sw", "ja"), articles=(1, 3))
    report = Ingestor(store, "p", e5, embed_batch_chunks=2, progress_mode="bar").ingest([tmp_path / "docs"])
    points = all_points(store, "p")
    # tokens are counted as they are embedded: exactly the stored chunks' token counts
    assert report.embedded_tokens == sum(p.payload["metadata"]["token_count"] for p in points) > 0
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{len(files)}/{len(files)}" in final, final
    assert f"| {len(points):,} chunks |" in final, final
    rate = re.search(r"\| ([\d,]+) tok/s", final)
    assert rate and int(rate.group(1).replace(",", "")) > 0, final


def test_replace_on_change_and_prune(tmp_path, store, e5, udhr):
    files = write_corpus(tmp_path / "docs", udhr, langs=("en", "sw", "fr"))
    params = ChunkingParams(max_tokens=128, overlap_tokens=0)
    Ingestor(store, "c", e5, params, workers=1).ingest([tmp_path / "docs"])
    sw = files[1]
    old_ids = {p.id for p in store.iter_points("c", Filter(must={"metadata.doc_id": doc_id_for(str(sw))}))}
    sw.write_text(udhr("sw")[4], encoding="utf-8")  # new content: article 5 only
    files[2].unlink()
    r = Ingestor(store, "c", e5, params, workers=1).ingest([tmp_path / "docs"], prune=True)
    assert [Path(x.source).name for x in r.by_status("replaced")] == [sw.name]
    assert [Path(x.source).name for x in r.by_status("pruned")] == [files[2].name]
    assert [Path(x.source).name for x in r.by_status("skipped")] == [files[0].name]
    new = list(store.iter_points("c", Filter(must={"metadata.doc_id": doc_id_for(str(sw))})))
    assert new and not ({p.id for p in new} & old_ids)
    assert all(udhr("sw")[4].startswith(p.payload["page_content"][:20]) or p.payload["page_content"] in udhr("sw")[4]
               for p in new)
    assert store.count("c", Filter(must={"metadata.doc_id": doc_id_for(str(files[2]))})) == 0
    assert_consistent(store, "c")


def test_chunking_change_reindexes_and_other_embedder_is_refused(tmp_path, store, e5, udhr, tiny_hf_embedder):
    write_corpus(tmp_path / "docs", udhr, langs=("en", "ru"))
    Ingestor(store, "c", e5, ChunkingParams(max_tokens=128, overlap_tokens=0), workers=1).ingest([tmp_path / "docs"])
    r = Ingestor(store, "c", e5, ChunkingParams(max_tokens=64, overlap_tokens=0), workers=1).ingest([tmp_path / "docs"])
    assert len(r.by_status("replaced")) == 2 and r.embedded_chunks > 0
    assert all(p.payload["metadata"]["token_count"] <= 64 for p in all_points(store, "c"))
    assert_consistent(store, "c")
    with pytest.raises(StoreError) as e:
        Ingestor(store, "c", tiny_hf_embedder, ChunkingParams(max_tokens=64), workers=1)
    msg = str(e.value)
    assert "e5-small" in msg and tiny_hf_embedder.spec in msg


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-pool"])
def test_bad_inputs_are_reported_and_the_rest_is_ingested(tmp_path, store, e5, udhr, workers):
    docs = tmp_path / "docs"
    write_corpus(docs, udhr, langs=("en",))
    good_pdf = pdf_factory.english_pdf(docs / "good.pdf")
    pdf_factory.english_pdf(docs / "locked.pdf", password="secret")
    pdf_factory.scanned_pdf(docs / "scan.pdf")
    pdf_factory.truncated_pdf(docs / "broken.pdf", good_pdf)
    pdf_factory.binary_file(docs / "fake.pdf")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blank.md").write_text("   \n\n  ", encoding="utf-8")
    report = Ingestor(store, "c", e5, ChunkingParams(max_tokens=128), workers=workers).ingest([docs])
    failed = {Path(r.source).name: r for r in report.by_status("failed")}
    assert set(failed) == {"locked.pdf", "scan.pdf", "broken.pdf", "fake.pdf", "empty.txt", "blank.md"}
    assert failed["locked.pdf"].reason == "encrypted"
    assert failed["scan.pdf"].reason == "no-text-layer"
    assert failed["fake.pdf"].reason in ("binary", "corrupt")
    assert failed["empty.txt"].reason in ("zero-byte", "empty")
    for name, r in failed.items():
        assert name in r.message, r.message
    assert {Path(r.source).name for r in report.by_status("ingested")} == {"udhr_en.txt", "good.pdf"}
    assert report.exit_code == 1


def _cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "lusifer_rag", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, **kw)


@pytest.mark.slow
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is pending


def test_kill9_mid_run_then_rerun_completes_without_duplicates(tmp_path, e5, udhr):
    docs = tmp_path / "docs"
    docs.mkdir()
    n_files = 0
    for lang in ("en", "sw", "fr", "es", "de", "ru", "hi", "ja", "zh", "ar"):
        for a, text in enumerate(udhr(lang)[:8], 1):
            (docs / f"{lang}_{a:02d}.txt").write_text(text, encoding="utf-8")
            n_files += 1
    env = {**os.environ, "LUSIFER_RAG_STORE": str(tmp_path / "store"), "LUSIFER_RAG_COLLECTION": "k",
           "LUSIFER_RAG_PROGRESS": "plain", "LUSIFER_RAG_INGEST_BATCH_CHUNKS": "4", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lusifer_rag", "ingest", str(docs), "--workers", "1"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = 0
    deadline = time.time() + 120
    while done < 15 and time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        done += line.startswith("[")
    assert proc.poll() is None, "ingest finished before it could be killed: " + proc.stderr.read()
    helpers = _descendants(proc.pid)  # the forkserver and the parse/chunk worker
    assert helpers, "the ingest runs no worker process"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20  # nothing is left behind holding memory
    while time.time() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.2)
    assert not [p for p in helpers if _alive(p)], "worker processes outlived the killed ingest"

    rerun = _cli(["ingest", str(docs), "--workers", "1", "--report", str(tmp_path / "r.json")], env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["skipped"]) >= 10  # what was complete before the kill is not redone
    assert len(report["skipped"]) + len(report["ingested"]) == n_files
    with open_store(str(tmp_path / "store")) as store:
        by_doc = assert_consistent(store, "k")
        assert len(by_doc) == n_files
    again = _cli(["ingest", str(docs), "--report", str(tmp_path / "r2.json")], env, timeout=300)
    assert again.returncode == 0 and len(json.loads((tmp_path / "r2.json").read_text())["skipped"]) == n_files


def test_cli_ingest_stats_and_exit_codes(tmp_path, e5, udhr):
    docs = tmp_path / "docs"
    write_corpus(docs, udhr, langs=("en", "sw"))
    (docs / "bad.pdf").write_bytes(b"%PDF-1.7\n garbage")
    env = {**os.environ, "LUSIFER_RAG_STORE": str(tmp_path / "store")}
    r = _cli(["ingest", str(docs), "--collection", "cli", "--report", str(tmp_path / "rep.json")], env, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "bad.pdf" in r.stdout
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert [Path(x["source"]).name for x in rep["failed"]] == ["bad.pdf"] and len(rep["ingested"]) == 2
    s = _cli(["stats", "--collection", "cli", "--json"], env, timeout=120)
    stats = json.loads(s.stdout)
    assert stats["documents"] == 2 and set(stats["languages"]) == {"en", "sw"} and stats["embedder"] == "e5-small"
    assert stats["points"] == sum(stats["languages"].values())
    listed = _cli(["stats", "--collection", "cli", "--documents"], env, timeout=120).stdout
    good = [x for x in rep["ingested"]]
    for x in good:  # each document's identity: its id, the sha256 of its file, its source
        assert f"{x['doc_id'][:8]}  {x['content_hash'][:12]}" in listed and x["source"] in listed
    missing = _cli(["ingest", str(tmp_path / "nope"), "--collection", "cli"], env, timeout=120)
    assert missing.returncode == 2 and "nope" in missing.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dying_worker_fails_its_file_alone_and_the_pool_restarts(workers):
    """Real worker processes: files named *crash* kill theirs; exactly they fail, every other file gets its result,
    in order."""
    import pool_tasks

    from lusifer_rag.ingest.pipeline import FilePlan, _ChunkPool

    names = ["a.pdf", "crash-1.pdf", "b.pdf", "c.pdf", "crash-2.pdf", "d.pdf", "e.pdf"]
    pool = _ChunkPool(workers, (None,), task=pool_tasks.crash_on_marker, initializer=pool_tasks.init)
    try:
        pending = [pool.submit(FilePlan(n, n, n, "s", False)) for n in names]
        results = []
        while pending:
            results.append(pool.result(pending)[0])
    finally:
        pool.close()
    assert [r.source for r in results] == names
    by_name = {r.source: r for r in results}
    for n in names:
        if "crash" in n:
            assert by_name[n].status == "failed" and by_name[n].reason == "crash"
            assert n in by_name[n].message and "parser process died" in by_name[n].message
        else:  # the files running beside a crash are re-run in quarantine, one at a time: none fails with it
            assert by_name[n].status == "ingested", by_name[n]


def test_workers_chunk_exactly_like_this_process(tmp_path, e5, udhr):
    """The worker pool parses and chunks with a weightless copy of the embedder: same chunks as in-process."""
    from lusifer_rag.embedder.base import weightless
    from lusifer_rag.ingest.pipeline import FilePlan, _ChunkPool, _load, chunk_document

    files = write_corpus(tmp_path / "docs", udhr, langs=("en", "ja", "ar"))
    ing_chunking = ChunkingParams(max_tokens=128, overlap_tokens=16)
    pool = _ChunkPool(1, (weightless(e5), ing_chunking, None))
    from lusifer_rag.ingest.pipeline import chunker_for

    chunker = chunker_for(e5, ing_chunking)
    try:
        for f in files:
            plan = FilePlan(str(f), str(f), "d", "s", False)
            got_result, got = pool.result([pool.submit(plan)])
            want_result, want = chunk_document(chunker, plan, lambda: _load(str(f), None))
            assert got_result == want_result
            assert len(got) > 1
            strip = lambda items: [(i, {**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "ingested_at"}})
                                   for i, p in items]  # noqa: E731
            assert strip(got) == strip(want)
    finally:
        pool.close()


def test_default_workers_follow_the_embedder_device(e5):
    """A CPU embedder owns the cores: one (low-priority) parse worker, for the per-file caps and isolation; an
    accelerator embedder gets cores − 1 workers."""
    from types import SimpleNamespace

    import torch

    from lusifer_rag.ingest.pipeline import default_workers

    assert default_workers(e5) == 1
    gpu = SimpleNamespace(devices=[torch.device("cuda", 0)])
    assert default_workers(gpu) == max(1, (os.cpu_count() or 2) - 1)


def test_ready_workers_yield_the_cores_to_the_embedder(e5):
    """After the real initializer, a worker runs at a lower priority than this process."""
    import pool_tasks

    from lusifer_rag.ingest.pipeline import FilePlan, _ChunkPool

    pool = _ChunkPool(1, (e5.token_counter(), ChunkingParams(max_tokens=128), None), task=pool_tasks.niceness)
    try:
        _, items = pool.result([pool.submit(FilePlan("x", "x", "d", "s", False))])
    finally:
        pool.close()
    assert items[0][1]["nice"] >= min(19, os.nice(0) + 10)  # niceness tops out at 19


def test_an_unknown_progress_mode_is_refused_naming_the_allowed_ones(monkeypatch):
    from lusifer_rag.errors import ConfigError
    from lusifer_rag.ingest.progress import Progress

    with pytest.raises(ConfigError, match=r"'auto' is not known; allowed: bar, plain, off"):
        Progress(3, "auto")
    monkeypatch.setenv("LUSIFER_RAG_PROGRESS", "verbose")
    with pytest.raises(ConfigError, match="'verbose'"):
        Progress(3)

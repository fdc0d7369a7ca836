"""Bounded ingestion on an adversarial corpus the tests make (nothing big in git): deep HTML, a one-line Markdown
file, three DOCX bombs, a one-line-per-page form PDF; per-file time and memory caps, cancelling and resuming, and
no secret in the store's lock record."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from lusifer_rag.ingest.bounded_pool import FileLimits
from lusifer_rag.ingest.chunking import ChunkingParams

ROOT = Path(__file__).resolve().parents[1]
from adversarial import BOMB_UNPACKED, WORDS, build_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("adversarial"))


def test_the_ratio_bomb_would_have_passed_the_old_check(corpus):
    info = zipfile.ZipFile(corpus["ratio"]).getinfo("word/document.xml")
    size = corpus["ratio"].stat().st_size
    assert info.file_size > BOMB_UNPACKED - (1 << 20) and info.file_size <= 20 * size


_MEASURE = """
import json, resource, sys
from lusifer_rag.ingest.loaders import DocumentError, load_document
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for path in sys.argv[1:]:
    try:
        load_document(path)
        out.append({"path": path, "reason": None})
    except DocumentError as e:
        out.append({"path": path, "reason": e.reason, "message": str(e)})
    out[-1]["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(out))
"""


def test_docx_bombs_are_refused_by_name_within_their_cap(corpus):
    """Each bomb is refused as too-large naming its member, by the loader itself (no worker cap involved), with the
    process's peak memory under 300 MB above where it started."""
    bombs = {"lying": "word/document.xml", "core": "docProps/core.xml", "ratio": "word/document.xml"}
    run = subprocess.run([sys.executable, "-c", _MEASURE, *(str(corpus[k]) for k in bombs)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for (key, member), got in zip(bombs.items(), json.loads(run.stdout)):
        assert got["reason"] == "too-large", got
        assert corpus[key].name in got["message"] and member in got["message"], got
        assert got["growth_mb"] < 300, got


def test_deep_html_and_long_lines_load(corpus):
    from lusifer_rag.ingest.loaders import load_document

    html = load_document(corpus["html"])
    assert html.title == "Deep" and html.text == "Deep inside the nest.\n\nAfter the nest."
    md = load_document(corpus["md"])
    assert md.text == corpus["md"].read_text(encoding="utf-8")


def test_a_megabyte_line_chunks_within_the_cap(corpus, e5):
    """Cut by characters before it is counted (never tokenized whole): every chunk is its slice of the text, within
    the cap, and together they cover the line."""
    from lusifer_rag.ingest.loaders import load_document
    from lusifer_rag.ingest.pipeline import chunker_for

    doc = load_document(corpus["md"])
    chunks = chunker_for(e5, ChunkingParams(max_tokens=512, overlap_tokens=0)).chunk(doc)
    assert all(c.text == doc.text[c.char_start:c.char_end] and c.token_count <= 512 for c in chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(doc.text)
    assert all(b.char_start >= a.char_end for a, b in zip(chunks, chunks[1:]))
    assert sum(len(c.text.split()) for c in chunks) == len(doc.text.split())


def test_a_one_line_per_page_form_keeps_its_text(corpus):
    from lusifer_rag.ingest.loaders import load_document

    doc = load_document(corpus["form"])
    for i in range(1, 9):
        assert f"Entry {i}: gate opened at 0{i}:00 by guard {i + 40}" in doc.text


def test_the_adversarial_corpus_ingests_with_each_file_reported(tmp_path, corpus, e5):
    """Through the real pipeline (a worker process): the bombs fail by name, the rest is indexed."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    with open_store(str(tmp_path / "store")) as store:
        ing = Ingestor(store, "c", e5, ChunkingParams(max_tokens=512), workers=1, progress_mode="off",
                       limits=FileLimits(timeout=600, memory_mb=1024))
        small_md = tmp_path / "one-line.md"  # a tenth of the long line: embedding 1 MB would take minutes on CI
        small_md.write_text(corpus["md"].read_text(encoding="utf-8")[:100_000], encoding="utf-8")
        files = [corpus[k] for k in ("lying", "core", "ratio", "html", "form")] + [small_md]
        report = ing.ingest_files([(p.name, p) for p in files])
    by_name = {r.source: r for r in report.results}
    for key in ("lying", "core", "ratio"):
        r = by_name[corpus[key].name]
        assert r.status == "failed" and r.reason == "too-large" and corpus[key].name in r.message, r
    for name in ("nested.html", "form.pdf", "one-line.md"):
        assert by_name[name].status == "ingested" and by_name[name].chunks >= 1, by_name[name]
    assert by_name["form.pdf"].pages == 8


def test_a_file_past_the_memory_cap_fails_alone():
    import pool_tasks

    from lusifer_rag.ingest.pipeline import FilePlan, _ChunkPool

    names = ["a.docx", "huge.docx", "b.docx"]
    pool = _ChunkPool(1, (None,), task=pool_tasks.allocate_on_marker, initializer=pool_tasks.init,
                      limits=FileLimits(timeout=60, memory_mb=200))
    try:
        pending = [pool.submit(FilePlan(n, n, n, "s", False)) for n in names]
        results = [pool.result(pending)[0] for _ in names]
    finally:
        pool.close()
    assert [r.status for r in results] == ["ingested", "failed", "ingested"]
    assert results[1].reason == "too-large" and "huge.docx" in results[1].message and "200 MB" in results[1].message


def _slow_file(path: Path) -> Path:
    """8 MB of Markdown on one line: tens of seconds to chunk on a CI core."""
    path.write_text(" ".join(random.Random(3).choices(WORDS, k=1_200_000)), encoding="utf-8")
    return path


def test_cancel_then_resume_and_a_timeout(tmp_path, e5, udhr):
    """Cancelled while the slow file parses: the worker is killed at once, the finished file stays; run again, the
    finished file is skipped and the slow one stopped at its wall-clock cap, reported by name."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(udhr("en")[0], encoding="utf-8")
    _slow_file(docs / "b-long.md")
    with open_store(str(tmp_path / "store")) as store:
        ing = Ingestor(store, "c", e5, ChunkingParams(max_tokens=128), workers=1, progress_mode="off",
                       limits=FileLimits(timeout=600, memory_mb=0))
        ing.on_progress = lambda done, total, r: ing.cancel() if r.source.endswith("a.txt") else None
        timer = threading.Timer(300, ing.cancel)  # a guard: the test ends even if the callback never fires
        timer.start()
        try:
            first = ing.ingest([docs])
        finally:
            timer.cancel()
        assert [(Path(r.source).name, r.status) for r in first.results] == [("a.txt", "ingested"),
                                                                            ("b-long.md", "cancelled")]
        assert first.exit_code == 130 and "run it again to resume" in first.results[1].message
        ing.on_progress = None
        ing.limits = FileLimits(timeout=2, memory_mb=0)
        second = ing.ingest([docs])
    got = {Path(r.source).name: r for r in second.results}
    assert got["a.txt"].status == "skipped"
    assert got["b-long.md"].status == "failed" and got["b-long.md"].reason == "timeout"
    assert "b-long.md" in got["b-long.md"].message and "ingest_file_timeout" in got["b-long.md"].message


@pytest.mark.slow
def test_ctrl_c_cancels_the_cli_and_a_rerun_resumes(tmp_path, udhr):
    import signal
    import time

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(udhr("en")[0], encoding="utf-8")
    _slow_file(docs / "b-long.md")
    env = {**os.environ, "LUSIFER_RAG_STORE": str(tmp_path / "store"), "LUSIFER_RAG_COLLECTION": "c",
           "LUSIFER_RAG_PROGRESS": "plain"}
    proc = subprocess.Popen([sys.executable, "-m", "lusifer_rag", "ingest", str(docs)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # progress lines: the first file is done, the slow one is being parsed
        err.append(line)
        if line.startswith("[1/2]") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(err) + rest
    assert "cancelled: 1 file(s) not done" in out and "1 ingested" in out
    rerun = subprocess.run([sys.executable, "-m", "lusifer_rag", "ingest", str(docs)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**env, "LUSIFER_RAG_INGEST_FILE_TIMEOUT": "2"})
    assert rerun.returncode == 1 and "1 skipped" in rerun.stdout, rerun.stdout + rerun.stderr
    assert "b-long.md" in rerun.stdout and "[timeout]" in rerun.stdout


def test_the_lock_record_keeps_secrets_out_and_is_private(tmp_path, monkeypatch):
    from lusifer_rag.store.lock import HOLDER_NAME, StoreLock

    monkeypatch.setattr(sys, "argv", ["lusifer-rag", "ingest", "--pdf-password", "hunter2", "docs",
                                      "--qdrant-api-key=k3y-value", "--store", "http://ann:pa55@qdrant:6333",
                                      "--max-tokens", "256"])
    lock = StoreLock(tmp_path).acquire()
    try:
        path = tmp_path / HOLDER_NAME
        text = path.read_text(encoding="utf-8")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for secret in ("hunter2", "k3y-value", "pa55"):
            assert secret not in text
        argv = json.loads(text)["argv"]
        assert argv[:4] == ["lusifer-rag", "ingest", "--pdf-password", "***"] and argv[-2:] == ["--max-tokens", "256"]
    finally:
        lock.release()


def test_the_app_cancels_a_running_upload(tmp_path, e5, udhr):
    """The service's cancel (the API route and the UI button call it): needs the write right, says False when
    nothing runs, and stops a running upload: the finished file stays, the slow one is reported cancelled."""
    from app_fixtures import app_settings
    from lusifer_rag.app.access import LOCAL, Principal
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.errors import AccessError
    from lusifer_rag.runtime import open_store_from

    settings = app_settings(tmp_path)
    up = tmp_path / "up"
    up.mkdir()
    (up / "a.txt").write_text(udhr("en")[0], encoding="utf-8")
    _slow_file(up / "b-long.md")
    with open_store_from(settings) as store:
        svc = RagService(settings, store, embedder=e5, options=AppOptions(ingest_workers=1))
        assert svc.cancel_ingest(principal=LOCAL) is False
        with pytest.raises(AccessError, match="cancel an ingest"):
            svc.cancel_ingest(principal=Principal("reader", frozenset({"read"})))
        answered = []
        on_progress = lambda p: answered.append(svc.cancel_ingest(principal=LOCAL))  # noqa: E731
        report = svc.ingest([("a.txt", up / "a.txt"), ("b-long.md", up / "b-long.md")], on_progress,
                            principal=LOCAL)
    assert answered == [True]
    assert [(r.source, r.status) for r in report.results] == [("a.txt", "ingested"), ("b-long.md", "cancelled")]


def _niceness(_item) -> int:
    return os.nice(0)


def test_parse_workers_run_at_a_lower_cpu_priority_than_the_app():
    """A hostile file's parse yields the CPU to searches (measured: bench/ui_load.py --while-ingesting)."""
    import multiprocessing

    from lusifer_rag.ingest.bounded_pool import WORKER_NICENESS, BoundedPool

    pool = BoundedPool(1, multiprocessing.get_context("spawn"), int, (), _niceness, lambda item, reason, msg: None)
    try:
        worker = pool.submit("x").result(timeout=120)
    finally:
        pool.close()
    assert worker == min(19, os.nice(0) + WORKER_NICENESS)


_START_UNDER = """
from lusifer_rag.ingest.pipeline import _mp_context
from lusifer_rag.ingest.bounded_pool import BoundedPool
pool = BoundedPool(1, _mp_context(), int, (), str.upper, lambda item, reason, msg: reason)
try:
    print(pool.submit("ran").result(timeout=120))
finally:
    pool.close()
"""


def test_parse_workers_start_under_a_long_temp_dir(tmp_path):
    """The forkserver's socket lives in the temp dir; a TMPDIR of ~75+ characters (a CI job's) once made every file of
    an ingest fail 'the parser process could not start' (AF_UNIX paths stop at 107 bytes)."""
    deep = tmp_path / ("d" * 40) / ("e" * 40)
    deep.mkdir(parents=True)
    r = subprocess.run([sys.executable, "-c", _START_UNDER], capture_output=True, text=True, timeout=180,
                       env={**os.environ, "TMPDIR": str(deep)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "RAN", r.stdout  # the worker ran the task ('crash' when it could not start)

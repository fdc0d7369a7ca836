"""One front door: while `lusifer-rag serve` holds a store, the CLI and LangChain go through its HTTP API.

Real parts only: the app served on 127.0.0.1 (in this process through app_fixtures.running_app, or a `lusifer-rag
serve` subprocess), the real multilingual-e5-small, embedded stores in tmp dirs, the CLI as `main([...])` in this
process or as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from app_fixtures import app_settings, free_port, running_app
from lusifer_rag.app.access import LOCAL
from lusifer_rag.cli import main
from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor
from lusifer_rag.langchain import LusiferRetriever
from lusifer_rag.remote import find_server
from lusifer_rag.store import open_store
from lusifer_rag.store.lock import HOLDER_NAME

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who has the right to education?"
NOTE = "the work goes to the lusifer-rag server at"


def _docs(root: Path, udhr, langs=("en", "fr", "sw"), articles=(1, 3, 26)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        for a in articles:
            (root / f"{lang}_{a}.txt").write_text(udhr(lang)[a - 1], encoding="utf-8")
    return root


def _store(tmp: Path, docs: Path, e5, collection: str = "docs") -> str:
    """An embedded store with ``docs`` ingested into ``collection``, closed again (the app opens it)."""
    loc = str(tmp / "store")
    with open_store(loc) as store:
        Ingestor(store, collection, e5, workers=0, progress_mode="off").ingest([docs])
    return loc


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """The CLI's environment: no developer's LUSIFER_RAG_* settings, plain progress lines."""
    for name in list(os.environ):
        if name.startswith("LUSIFER_RAG_") and name != "LUSIFER_RAG_CACHE_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("LUSIFER_RAG_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("LUSIFER_RAG_PROGRESS", "plain")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _subprocess_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUSIFER_RAG_") or k == "LUSIFER_RAG_CACHE_DIR"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", LUSIFER_RAG_PROGRESS="plain", **extra)
    return env


# ---- the lock record -----------------------------------------------------------------------------
def test_the_lock_record_says_where_the_app_listens_while_it_serves(tmp_path, e5, udhr):
    loc = _store(tmp_path, _docs(tmp_path / "docs", udhr, langs=("en",), articles=(1,)), e5)
    record_path = Path(loc) / HOLDER_NAME
    with running_app(app_settings(tmp_path), e5) as app:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        port = int(app.url.rstrip("/").rsplit(":", 1)[1])
        assert record["serve"] == {"host": "127.0.0.1", "port": port, "scheme": "http"}
        assert record["pid"] == os.getpid() and stat.S_IMODE(record_path.stat().st_mode) == 0o600
        assert find_server(loc) == app.url.rstrip("/")
        app.server.close()  # stopped serving, store still open: no longer announced
        assert "serve" not in json.loads(record_path.read_text(encoding="utf-8"))
        assert find_server(loc) is None
    # a record left with "serve" by a server that died: the lock is free, so nobody is serving
    record_path.write_text(json.dumps({**record, "pid": 1}), encoding="utf-8")
    assert find_server(loc) is None


@pytest.mark.parametrize("argv1", ["ingest", "serve"])
def test_a_store_held_by_a_process_that_does_not_serve_keeps_the_lock_error(tmp_path, cli_env, capsys, argv1):
    """Held by another command, or by a `serve` that does not listen yet (loading its model): the lock's error,
    which for a starting server says that commands go through it once it listens."""
    loc = str(tmp_path / "store")
    code = ("import sys\nfrom lusifer_rag.store import open_store\ns = open_store(sys.argv[2])\n"
            "print('ready', flush=True)\nsys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, argv1, loc], env=_subprocess_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert find_server(loc) is None
        rc, out, err = _run(capsys, "stats", "--store", loc)
        assert rc == 2 and f"in use by pid {holder.pid}" in err and "Only one process" in err and NOTE not in err
        assert ("does not listen yet: once it does, `lusifer-rag ingest`" in err) == (argv1 == "serve")
    finally:
        holder.communicate("\n", timeout=60)


# ---- search, stats, ask: the same output through the server as in-process ------------------------
def test_search_stats_and_ask_go_through_the_server_with_the_in_process_output(tmp_path, e5, udhr, cli_env,
                                                                                 capsys):
    loc = _store(tmp_path, _docs(tmp_path / "docs", udhr), e5)
    commands = {
        "search-json": ["search", QUESTION, "--k", "4", "--json"],
        "search": ["search", QUESTION, "--k", "3"],
        "search-fr": ["search", QUESTION, "--lang", "fr", "--json"],
        "stats-json": ["stats", "--json", "--documents"],
        "stats": ["stats"],
        "ask-json": ["ask", QUESTION, "--json"],
        "ask": ["ask", QUESTION],
    }
    served, local = {}, {}
    with running_app(app_settings(tmp_path), e5) as app:
        for name, argv in commands.items():
            rc, out, err = _run(capsys, *argv, "--store", loc, "--collection", "docs")
            assert rc == 0, err
            assert err.count(NOTE) == 1 and app.url.rstrip("/") in err, err
            served[name] = out
    for name, argv in commands.items():  # no server: in this process, as before
        rc, out, err = _run(capsys, *argv, "--store", loc, "--collection", "docs")
        assert rc == 0 and NOTE not in err, err
        local[name] = out
    for name in ("search-json", "search", "search-fr", "stats-json", "stats", "ask"):
        assert served[name] == local[name], name
    hits = json.loads(served["search-json"])
    assert 0 < len(hits) <= 4 and Path(hits[0]["source"]).name.endswith("_26.txt")  # those above the floor
    assert {h["language"] for h in json.loads(served["search-fr"])} == {"fr"}
    stats = json.loads(served["stats-json"])
    assert stats["documents"] == 9 and len(stats["document_list"]) == 9
    # the answer: the same keys and the same cited passages; the server also records the question it answered
    remote, mine = json.loads(served["ask-json"]), json.loads(local["ask-json"])
    assert remote.keys() == mine.keys() and remote["answer"] == mine["answer"]
    assert [c["chunk_id"] for c in remote["citations"]] == [c["chunk_id"] for c in mine["citations"]]
    assert "Sources:" in served["ask"] and "_26.txt" in served["ask"]


def test_server_errors_are_clear_typed_and_exit_codes(tmp_path, e5, cli_env, capsys):
    from lusifer_rag.app.service import AppOptions

    options = AppOptions(auth=("admin", "s3cret-pass"), ingest_workers=1)
    with running_app(app_settings(tmp_path), e5, options=options) as app:
        rc, out, err = _run(capsys, "search", QUESTION, "--server", app.url, "--api-key", "lrk_wrong_key")
        assert rc == 77 and "401" in err and "the API key was not accepted" in err and app.url.rstrip("/") in err
        assert "API keys need users" in err  # the server's own message (a single-login server has no keys)
        assert "lrk_wrong_key" not in err
        rc, out, err = _run(capsys, "stats", "--server", app.url)
        assert rc == 77 and "401" in err and "give an API key with --api-key or LUSIFER_RAG_API_KEY" in err
    rc, out, err = _run(capsys, "stats", "--server", f"http://127.0.0.1:{free_port()}")
    assert rc == 69 and "cannot reach the lusifer-rag server" in err and "connection refused" in err
    rc, out, err = _run(capsys, "search", "x", "--server", "ftp://host", "--collection", "c")
    assert rc == 2 and "is not valid; give http(s)://host[:port]" in err
    rc, out, err = _run(capsys, "search", "x", "--server", "http://127.0.0.1:1", "--store", str(tmp_path / "s"))
    assert rc == 2 and "not both" in err


def test_the_api_key_goes_as_a_bearer_header_and_refusals_carry_the_servers_message(cli_env, capsys, monkeypatch):
    """Against a plain HTTP server on localhost that records what it gets and answers as told: the key from
    --api-key, LUSIFER_RAG_API_KEY or '-' (read from stdin) arrives as `Authorization: Bearer <key>`; 403 and
    other 4xx/5xx answers become errors quoting the server's `{"error": ...}`."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen, answer = [], {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"error": answer["error"]}).encode()
            self.send_response(answer["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        answer.update(status=403, error="'bob' may not read the collection's statistics (it needs the 'read' right)")
        rc, out, err = _run(capsys, "stats", "--server", url, "--api-key", "lrk_ab_flag", "--collection", "kb")
        assert rc == 77 and "403 forbidden: 'bob' may not read" in err and "lrk_ab_flag" not in err
        assert seen[-1] == ("/api/v1/stats?collection=kb", "Bearer lrk_ab_flag")
        monkeypatch.setenv("LUSIFER_RAG_API_KEY", "lrk_cd_env")
        answer.update(status=404, error="no document 'x'")
        rc, out, err = _run(capsys, "stats", "--server", url + "/api/v1/")
        assert rc == 1 and f"the lusifer-rag server at {url}: no document 'x'" in err
        assert seen[-1] == ("/api/v1/stats?collection=documents", "Bearer lrk_cd_env")
        monkeypatch.setattr(sys, "stdin", io.StringIO("lrk_ef_stdin\n"))
        answer.update(status=500, error="boom")
        rc, out, err = _run(capsys, "stats", "--server", url, "--api-key", "-")
        assert rc == 1 and "failed (500: boom)" in err and seen[-1][1] == "Bearer lrk_ef_stdin"
        monkeypatch.delenv("LUSIFER_RAG_API_KEY")
        answer.update(status=503, error="busy")
        rc, out, err = _run(capsys, "stats", "--server", url)
        assert rc == 75 and "is busy (503: busy)" in err and seen[-1][1] is None
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- ingest through the server ---------------------------------------------------------------------
def test_ingest_through_the_server_in_batches_with_progress_and_the_in_process_names(tmp_path, e5, udhr, cli_env,
                                                                                       capsys, monkeypatch):
    from lusifer_rag import frontdoor
    from lusifer_rag.app.service import AppOptions

    monkeypatch.setattr(frontdoor, "BATCH_FILES", 2)  # 5 files: three requests
    docs = _docs(tmp_path / "docs", udhr, langs=("en", "de", "fr", "sw", "es"), articles=(26,))
    big = tmp_path / "big"
    big.mkdir()
    (big / "huge.txt").write_text("word " * 300_000, encoding="utf-8")  # 1.5 MB, over the 1 MB upload limit
    (big / "ok.txt").write_text(udhr("en")[0], encoding="utf-8")
    loc = str(tmp_path / "store")
    settings = app_settings(tmp_path)
    with running_app(settings, e5, options=AppOptions(ingest_workers=1, max_upload_mb=1)) as app:
        rc, out, err = _run(capsys, "ingest", str(docs), "--store", loc, "--collection", "docs", "--report",
                            str(tmp_path / "report.json"))
        assert rc == 0, err
        assert err.count(NOTE) == 1
        progress = [line for line in err.splitlines() if line.startswith("[")]
        assert [line.split()[0] for line in progress] == [f"[{i}/5]" for i in range(1, 6)], err
        assert all(" ingested " in line and " chunks" in line for line in progress), err
        assert "docs: 5 ingested, 0 replaced, 0 skipped" in out
        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        names = sorted(r["source"] for r in report["ingested"])
        # the in-process names: absolute paths, no originals kept (as an in-process ingest keeps none)
        assert names == sorted(str(p) for p in docs.iterdir())
        assert sorted(d["source"] for d in app.service.documents(principal=LOCAL)) == names
        assert not (tmp_path / "uploads" / "docs").exists() or not any((tmp_path / "uploads" / "docs").iterdir())
        # the same bytes uploaded through the API under a plain name are the same document
        import httpx

        with open(docs / "de_26.txt", "rb") as f:
            r = httpx.post(app.url + "api/v1/documents", files={"files": ("de_26.txt", f)}, data={"collection": "docs"})
        assert r.status_code == 200 and [d["status"] for d in r.json()["duplicate"]] == ["duplicate"]
        # a second run: unchanged files are skipped; the search finds them
        rc, out, err = _run(capsys, "ingest", str(docs), "--store", loc, "--collection", "docs")
        assert rc == 0 and "0 ingested, 0 replaced, 5 skipped" in out
        rc, out, err = _run(capsys, "search", "Kila mtu ana haki ya kupata elimu", "--store", loc, "--collection",
                            "docs", "--json", "--k", "2")
        assert rc == 0 and json.loads(out)[0]["source"] == str(docs / "sw_26.txt")
        # a file over the server's upload limit fails alone, by name; the batch's other file goes in
        rc, out, err = _run(capsys, "ingest", str(big), "--store", loc, "--collection", "docs")
        assert rc == 1 and "1 ingested" in out and "1 failed" in out
        assert f"failed: {big / 'huge.txt'}: larger than the upload limit of 1 MB [too-large]" in out
        # --prune through the server: a file gone from this machine leaves the collection
        (docs / "es_26.txt").unlink()
        rc, out, err = _run(capsys, "ingest", str(docs), "--prune", "--store", loc, "--collection", "docs")
        assert rc == 0 and "4 skipped, 0 duplicate, 1 pruned" in out
        # options that only an in-process ingest has are refused, by name
        rc, out, err = _run(capsys, "ingest", str(docs), "--store", loc, "--ocr", "off", "--max-tokens", "64")
        assert rc == 2 and "--max-tokens, --ocr cannot be sent to the lusifer-rag server" in err
    # no server: an in-process ingest finds the same documents under the same names
    rc, out, err = _run(capsys, "ingest", str(docs), "--store", loc, "--collection", "docs")
    assert rc == 0 and NOTE not in err and "0 ingested, 0 replaced, 4 skipped" in out


@pytest.mark.slow
def test_ctrl_c_cancels_the_ingest_on_the_server(tmp_path, e5, udhr):
    from test_ingest_bounds import _slow_file

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(udhr("en")[0], encoding="utf-8")
    _slow_file(docs / "b-long.md")
    from lusifer_rag.app.service import AppOptions

    with running_app(app_settings(tmp_path), e5, options=AppOptions(ingest_workers=1)) as app:
        env = _subprocess_env(LUSIFER_RAG_STORE=str(tmp_path / "store"), LUSIFER_RAG_COLLECTION="docs")
        proc = subprocess.Popen([sys.executable, "-m", "lusifer_rag", "ingest", str(docs)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err, deadline = [], time.monotonic() + 300
        for line in proc.stderr:  # the first file is done on the server, the slow one is being parsed there
            err.append(line)
            if line.startswith("[1/2]") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=120)
        err = "".join(err) + rest
        assert proc.returncode == 130, err + out
        assert NOTE in err and "asking the server to stop" in err and "the server stopped the ingest" in err
        assert "1 ingested" in out and "cancelled: 1 file(s) not done" in out
        assert [Path(d["source"]).name for d in app.service.documents(principal=LOCAL)] == ["a.txt"]


@pytest.mark.slow
def test_cli_ingest_while_serve_runs_lands_in_the_served_collection_and_search_finds_it(tmp_path, udhr):
    """The issue's case, as a user runs it: `lusifer-rag serve` on a data dir, then `lusifer-rag ingest` and
    `lusifer-rag search` on the same data dir from other shells."""
    import httpx

    docs = _docs(tmp_path / "docs", udhr, langs=("en", "fr", "sw"), articles=(26,))
    env = _subprocess_env(LUSIFER_RAG_DATA_DIR=str(tmp_path / "data"), LUSIFER_RAG_COLLECTION="kb")
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    serve = subprocess.Popen([sys.executable, "-m", "lusifer_rag", "serve", "--port", str(port)], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    store = str(tmp_path / "data" / "store")

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lusifer_rag", *argv], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)

    try:
        deadline = time.monotonic() + 300
        while find_server(store) is None and serve.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        log.seek(0)
        assert find_server(store) == f"http://127.0.0.1:{port}", log.read()[-3000:]
        ingest = cli("ingest", str(docs))
        assert ingest.returncode == 0, ingest.stderr
        assert f"{NOTE} http://127.0.0.1:{port}" in ingest.stderr
        assert [line.split()[0] for line in ingest.stderr.splitlines() if line.startswith("[")] == [
            "[1/3]", "[2/3]", "[3/3]"]
        assert "kb: 3 ingested" in ingest.stdout
        served = httpx.get(f"http://127.0.0.1:{port}/api/v1/documents", params={"collection": "kb"}).json()
        assert sorted(d["source"] for d in served) == sorted(str(p) for p in docs.iterdir())
        search = cli("search", "Kila mtu ana haki ya kupata elimu", "--json", "--k", "3")
        assert search.returncode == 0, search.stderr
        assert NOTE in search.stderr
        hits = json.loads(search.stdout)
        assert hits[0]["source"] == str(docs / "sw_26.txt") and {Path(h["source"]).parent for h in hits} == {docs}
        stats = cli("stats", "--json")
        assert stats.returncode == 0 and json.loads(stats.stdout)["documents"] == 3
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        log.close()
    # the server is gone: the same command runs in this process, on the same documents
    search = cli("search", "Kila mtu ana haki ya kupata elimu", "--json", "--k", "3")
    assert search.returncode == 0 and NOTE not in search.stderr, search.stderr
    assert json.loads(search.stdout)[0]["source"] == str(docs / "sw_26.txt")


# ---- LangChain through the server --------------------------------------------------------------------
_served: dict = {}


@pytest.fixture(scope="module")
def served_lc(tmp_path_factory, e5, udhr):
    tmp = tmp_path_factory.mktemp("lc-served")
    docs = _docs(tmp / "docs", udhr, articles=tuple(range(1, 9)))
    loc = _store(tmp, docs, e5, collection="lc")
    # min_relevance=0: the standard tests ask for k=3 passages, related or not
    with running_app(app_settings(tmp, collection="lc", min_relevance=0.0), e5) as app:
        _served.update(url=app.url, store=loc)
        yield app
    _served.clear()


@pytest.mark.usefixtures("served_lc")
class TestLusiferRetrieverThroughTheServer(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return LusiferRetriever.from_server

    @property
    def retriever_constructor_params(self) -> dict:
        return {"url": _served["url"], "collection": "lc"}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION


def test_the_remote_retriever_filters_and_refuses_what_the_api_lacks(served_lc, udhr):
    from lusifer_rag.errors import ConfigError

    r = LusiferRetriever.from_server(served_lc.url, collection="lc", k=3, languages=["sw"])
    docs = r.invoke(udhr("en")[0])
    assert len(docs) == 3 and {d.metadata["language"] for d in docs} == {"sw"}
    assert Path(docs[0].metadata["source"]).name == "sw_1.txt" and docs[0].page_content == udhr("sw")[0]
    assert isinstance(docs[0].metadata["score"], float) and docs[0].id == docs[0].metadata["chunk_id"]
    assert len(r.invoke(udhr("en")[0], k=1, languages=["fr"])) == 1
    assert r.invoke(udhr("en")[0], score_threshold=1.01) == []
    with pytest.raises(ConfigError, match="mmr cannot be used through the server"):
        r.invoke("x", mmr=True)


def test_from_collection_goes_through_the_server_that_holds_the_store(served_lc, udhr):
    r = LusiferRetriever.from_collection("lc", store=_served["store"], k=2)
    assert r.retriever.client.url == served_lc.url.rstrip("/")
    docs = r.invoke(udhr("fr")[1])  # article 2 in French
    assert len(docs) == 2 and Path(docs[0].metadata["source"]).name == "fr_2.txt"

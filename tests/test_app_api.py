"""The web app's named endpoints (/search, /ask, /ingest) through gradio_client, against a real app:
the real multilingual-e5-small, an embedded store in a tmp dir, the bundled sample corpus ingested."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app_fixtures import app_settings, running_app
from conftest import udhr_articles
from lusifer_rag.app.access import LOCAL

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory, e5):
    tmp = tmp_path_factory.mktemp("app")
    with running_app(app_settings(tmp), e5, sample=True) as running:
        yield running


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def test_only_the_named_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/search", "/ask", "/ingest"}


def test_search_crosslingual_returns_cited_passages(client, app):
    # the Japanese article 26 (right to education) as the query; the collection holds article 26 in ten languages
    query = udhr_articles("ja")[25].split("。")[0]
    hits = client.predict(query, [], [], 5, api_name="/search")
    assert len(hits) == 5
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(4))
    sources = {d["source"]: d for d in app.service.documents(principal=LOCAL)}
    for h in hits:
        assert h["source"] in sources and h["language"] == sources[h["source"]]["language"]
        a, b = h["highlight"]
        assert 0 <= a < b <= len(h["text"])
    # at least one hit in another language holds article 26 of its own language (the sample has art. 26 everywhere)
    langs = {h["language"] for h in hits} - {"ja"}
    assert langs
    starts = {lang: udhr_articles(lang)[25][:20] for lang in langs}
    assert any(starts[h["language"]] in h["text"] for h in hits if h["language"] in starts)


def test_search_filters_by_language_and_source(client, app):
    hits = client.predict("freedom of opinion and expression", ["fr", "sw"], [], 10, api_name="/search")
    assert hits and {h["language"] for h in hits} <= {"fr", "sw"}
    pdf = next(d["source"] for d in app.service.documents(principal=LOCAL) if d["source"].endswith(".pdf"))
    hits = client.predict("education", [], [pdf], 10, api_name="/search")
    assert hits and {h["source"] for h in hits} == {pdf}
    assert all(h["page"] in (1, 2) for h in hits)  # the sample PDF has two pages


def test_search_errors_are_messages(client):
    with pytest.raises(AppError, match="query is empty"):
        client.predict("   ", [], [], 5, api_name="/search")


def test_ask_streams_and_cites_in_the_question_language(client, app):
    question = "Quel est le droit de toute personne en matière d'éducation ?"
    job = client.submit(question, "auto", [], 0, api_name="/ask")
    updates = list(job)
    final = job.result()
    assert final["done"] is True and all(u["done"] is False for u in updates[:-1])
    assert len(updates) >= 2  # partial text first, then the final answer
    assert final["language"] == "fr"
    assert final["extractive"] is True and final["backend"] == "extractive"  # no LLM configured
    assert final["citations"]
    known = {d["source"] for d in app.service.documents(principal=LOCAL)}
    numbers = {c["n"] for c in final["contexts"]}
    for c in final["citations"]:
        assert c["source"] in known and c["n"] in numbers and c["text"]
        assert f"[{c['n']}]" in final["answer"]


def test_ask_answer_language_can_be_chosen(client):
    final = client.predict("What does everyone have the right to?", "de", ["en"], 3, api_name="/ask")
    assert final["language"] == "de"
    assert {c["language"] for c in final["citations"]} <= {"en"}


def test_ingest_reports_each_file_by_name_and_reason(client, tmp_path, app):
    good = tmp_path / "notes_pt.txt"
    good.write_text("Todos os seres humanos nascem livres e iguais em dignidade e em direitos. "
                    "Dotados de razão e de consciência, devem agir uns para com os outros em espírito de fraternidade.",
                    encoding="utf-8")
    binary = tmp_path / "firmware.bin"
    binary.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "blank.txt"
    empty.write_text("   \n", encoding="utf-8")
    report = client.predict([handle_file(str(p)) for p in (good, binary, empty)], api_name="/ingest")
    assert [r["source"] for r in report["ingested"]] == ["notes_pt.txt"]
    failed = {r["source"]: r for r in report["failed"]}
    assert set(failed) == {"firmware.bin", "blank.txt"}
    for name, r in failed.items():
        assert r["reason"] and name in r["message"]
    # the new document is searchable right away, by its name
    hits = client.predict("born free and equal", [], ["notes_pt.txt"], 3, api_name="/search")
    assert hits and hits[0]["source"] == "notes_pt.txt" and hits[0]["language"] == "pt"
    # unchanged re-upload is skipped (idempotent)
    again = client.predict([handle_file(str(good))], api_name="/ingest")
    assert [r["source"] for r in again["skipped"]] == ["notes_pt.txt"]
    assert app.service.delete("notes_pt.txt", principal=LOCAL)["chunks"] > 0


def test_ingest_without_files_is_an_error(client):
    with pytest.raises(AppError, match="no files"):
        client.predict([], api_name="/ingest")


def test_ingestion_does_not_hold_searches(client, app, tmp_path):
    # separate concurrency groups: a search submitted while an ingestion runs finishes first
    docs = []
    for i, lang in enumerate(("en", "fr", "es", "de", "ru", "hi", "sw", "vi")):
        p = tmp_path / f"bulk_{lang}.txt"
        p.write_text("\n\n".join(udhr_articles(lang)), encoding="utf-8")
        docs.append(handle_file(str(p)))
    ingest = client.submit(docs, api_name="/ingest")
    time.sleep(0.3)
    t0 = time.time()
    hits = client.predict("right to work", [], [], 3, api_name="/search")
    search_s = time.time() - t0
    assert hits
    assert not ingest.done(), f"ingestion finished before a {search_s:.2f}s search"
    report = ingest.result(timeout=300)
    assert len(report["ingested"]) == 8
    for d in report["ingested"]:
        app.service.delete(d["source"], principal=LOCAL)
    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in app.demo.fns.values()}
    assert groups["search"] == groups["ask"] and groups["search"][0] != groups["ingest"][0]
    assert groups["ingest"][1] == 1 and groups["search"][1] > 1


def test_mismatched_embedder_is_a_clear_error_and_auth_is_enforced(tmp_path, e5):
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.store import CollectionSpec

    settings = app_settings(tmp_path, collection="legacy")
    store = open_store_from(settings)
    try:
        # a collection another embedder wrote (same dimension, other fingerprint)
        store.create_collection("legacy", CollectionSpec(dim=e5.dim, meta={
            "embedder": "hf:intfloat/multilingual-e5-base", "embedder_fingerprint": "hf-0123456789abcdef"}))
        options = AppOptions(ingest_workers=1, auth=("reader", "s3cret-pass"))
        with running_app(settings, e5, store=store, options=options) as running:
            with pytest.raises(Exception):
                Client(running.url, verbose=False)  # no credentials: refused
            client = Client(running.url, auth=("reader", "s3cret-pass"), verbose=False)
            for call in (lambda: client.predict("education", [], [], 3, api_name="/search"),
                         lambda: client.predict("education?", "auto", [], 3, api_name="/ask")):
                with pytest.raises(AppError) as err:
                    call()
                msg = str(err.value)
                assert "multilingual-e5-base" in msg and "e5-small" in msg and "legacy" in msg
            with pytest.raises(AppError, match="not comparable"):
                client.predict([handle_file(str(Path(__file__)))], api_name="/ingest")
            assert "not comparable" in running.service.problem()
    finally:
        store.close()


def test_settings_view_describes_the_runtime(app):
    info = app.service.info()
    assert info["embedder"]["spec"] == "e5-small" and info["embedder"]["fingerprint"] == app.service.embedder.fingerprint
    assert info["store"]["kind"].startswith("embedded") and info["store"]["location"].endswith("store")
    assert info["llm"]["backend"] == "extractive"
    s = app.service.settings
    assert info["retrieval"] == {"mode": s.search_mode, "debias": s.debias,
                                 "same_language_pivot": s.same_language_pivot, "top_k": s.top_k}
    r = app.service.retriever()  # built from the same settings
    assert (r.mode, r.debias, r.same_language_pivot) == (s.search_mode, s.debias, s.same_language_pivot)
    json.dumps(info)  # shown as JSON in the Settings tab

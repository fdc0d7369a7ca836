"""app/service.py (no Gradio) and the pure rendering helpers of app/ui.py, on real components."""

from __future__ import annotations

import pytest

from app_fixtures import app_settings
from lusifer_rag.app.access import LOCAL
from lusifer_rag.errors import AccessError, ConfigError, RagError, StoreError


def test_options_from_env():
    from lusifer_rag.app.service import AppOptions

    opts = AppOptions.from_env({"LUSIFER_RAG_AUTH_USER": "ann", "LUSIFER_RAG_AUTH_PASSWORD": "pw",
                                "LUSIFER_RAG_MAX_UPLOAD_MB": "5"})
    assert opts.auth == ("ann", "pw") and opts.max_upload_bytes == 5 * 1024 * 1024
    assert AppOptions.from_env({}).auth is None
    with pytest.raises(ConfigError, match="LUSIFER_RAG_AUTH_PASSWORD"):
        AppOptions.from_env({"LUSIFER_RAG_AUTH_USER": "ann"})
    with pytest.raises(ConfigError, match="LUSIFER_RAG_SEARCH_CONCURRENCY='many'"):
        AppOptions.from_env({"LUSIFER_RAG_SEARCH_CONCURRENCY": "many"})


@pytest.fixture(scope="module")
def service(tmp_path_factory, e5):
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.runtime import open_store_from

    tmp = tmp_path_factory.mktemp("svc")
    settings = app_settings(tmp)
    with open_store_from(settings) as store:
        svc = RagService(settings, store, embedder=e5, options=AppOptions(ingest_workers=1, max_upload_mb=1))
        assert svc.search("anything", principal=LOCAL) == [] and svc.documents(principal=LOCAL) == []  # empty: no collection yet
        yield svc


def test_sample_corpus_ingests_every_file_with_progress(service):
    from lusifer_rag.app.service import SAMPLE_CORPUS

    seen = []
    report = service.ingest_sample(seen.append, principal=LOCAL)
    files = sorted(p.name for p in SAMPLE_CORPUS.iterdir())
    assert sorted(r.source.split("/")[-1] for r in report.by_status("ingested")) == files
    assert [u.done for u in seen] == list(range(1, len(files) + 1)) and {u.total for u in seen} == {len(files)}
    docs = service.documents(principal=LOCAL)
    stats = service.stats(principal=LOCAL)
    assert len(docs) == stats["documents"] == len(files)
    assert sum(d["chunks"] for d in docs) == stats["points"]
    # per-language statistics agree with the documents' chunk languages and cover five+ scripts' languages
    assert {d["language"] for d in docs} <= set(stats["languages"])
    assert {"en", "ja", "ar", "hi", "ru", "zh"} <= set(stats["languages"])
    pdf = next(d for d in docs if d["source"].endswith(".pdf"))
    assert pdf["pages"] == 2 and pdf["ingested_at"].endswith("Z")
    # idempotent: a second run skips everything
    again = service.ingest_sample(principal=LOCAL)
    assert len(again.by_status("skipped")) == len(files) and not again.by_status("ingested")
    langs, sources = service.facets(principal=LOCAL)
    assert set(langs) == set(stats["languages"]) and set(sources) == {d["source"] for d in docs}


def test_search_highlights_the_closest_sentence(service, udhr):
    query = udhr("sw")[18]  # article 19 (opinion and expression), in Swahili
    hits = service.search(query, k=4, languages=["en", "fr"], principal=LOCAL)
    assert hits and {h.chunk.language for h in hits} <= {"en", "fr"}
    en19 = udhr("en")[18].split(";")[0]
    top_en = next(h for h in hits if h.chunk.language == "en")
    a, b = top_en.highlight
    assert top_en.chunk.text[a:b] in udhr("en")[18] or en19 in top_en.chunk.text[a:b]


def test_upload_size_cap_and_bad_files_fail_by_name(service, tmp_path):
    big = tmp_path / "huge.txt"
    big.write_text("word " * (300 * 1024), encoding="utf-8")  # 1.5 MB > the 1 MB cap of this service
    report = service.ingest([("huge.txt", big)], principal=LOCAL)
    (failed,) = report.by_status("failed")
    assert failed.source == "huge.txt" and failed.reason == "too-large" and "huge.txt" in failed.message
    with pytest.raises(RagError, match="no files"):
        service.ingest([], principal=LOCAL)


def test_delete_document(service, tmp_path):
    p = tmp_path / "note.md"
    p.write_text("# Hinweis\n\nJeder hat das Recht auf Bildung.", encoding="utf-8")
    service.ingest([("note.md", p)], principal=LOCAL)
    before = service.stats(principal=LOCAL)["points"]
    out = service.delete("note.md", principal=LOCAL)
    n = out["chunks"]
    assert n >= 1 and service.stats(principal=LOCAL)["points"] == before - n and [d["source"] for d in out["deleted"]] == ["note.md"]
    assert "note.md" not in {d["source"] for d in service.documents(principal=LOCAL)}
    with pytest.raises(RagError, match="no document 'note.md'"):
        service.delete("note.md", principal=LOCAL)


def test_ask_without_llm_is_extractive_and_cited(service):
    answer = service.ask("Kila mtu ana haki ya kupata elimu?", k=4, principal=LOCAL)
    assert answer.extractive and answer.language == "sw"
    assert answer.citations and all(c.chunk.source.startswith("sample/") for c in answer.citations)
    with pytest.raises(RagError, match="empty"):
        service.ask("  ", principal=LOCAL)


def test_a_collection_of_another_embedder_is_refused(tmp_path, e5):
    from lusifer_rag.app.service import RagService
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.store import CollectionSpec

    settings = app_settings(tmp_path, collection="other")
    with open_store_from(settings) as store:
        store.create_collection("other", CollectionSpec(dim=e5.dim, meta={
            "embedder": "lusifer:/models/LUSIFER", "embedder_fingerprint": "lusifer-feedfacefeedface"}))
        svc = RagService(settings, store, embedder=e5)
        assert "lusifer:/models/LUSIFER" in svc.problem() and "e5-small" in svc.problem()
        with pytest.raises(StoreError, match="not comparable"):
            svc.search("education", principal=LOCAL)
        with pytest.raises(StoreError, match="not comparable"):
            svc.documents(principal=LOCAL)


def test_render_hits_escapes_and_marks():
    from lusifer_rag.app.render import render_hits

    text = "<b>bold</b> first. Second sentence here."
    a = text.index("Second")
    out = render_hits([{"rank": 1, "score": 0.5, "source": "a<b>.txt", "page": 2, "page_end": 3, "language": "en",
                        "text": text, "highlight": [a, len(text)]}])
    assert "&lt;b&gt;bold&lt;/b&gt;" in out and "a&lt;b&gt;.txt" in out
    assert "<mark>Second sentence here.</mark>" in out and "p. 2–3" in out
    assert "Nothing relevant found" in render_hits([])


def test_answer_language_choices_start_with_auto():
    from lusifer_rag.app.ui import language_choices
    from lusifer_rag.rag.language import LANGUAGE_NAMES

    choices = language_choices()
    assert choices[0] == ("Same as the question", "auto")
    assert {code for _, code in choices[1:]} == set(LANGUAGE_NAMES)


def test_a_failed_uploads_message_names_it_once_and_never_the_staged_path():
    from types import SimpleNamespace

    from lusifer_rag.app.service import _without_paths

    staged = "/srv/data/uploads/.staging/ab12/0"
    r = SimpleNamespace(message=f"report.docx: {staged}: too-large: word/document.xml unpacks to more than 64 MB")
    assert _without_paths(r, {staged: "report.docx"}).message == \
        "report.docx: too-large: word/document.xml unpacks to more than 64 MB"
    r = SimpleNamespace(message=f"cannot parse {staged}")
    assert _without_paths(r, {staged: "a/report.docx"}).message == "cannot parse a/report.docx"

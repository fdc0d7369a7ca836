"""Saved conversations, follow-up questions, collections and settings that take effect: the Workspace of the web
app on real parts (e5-small, embedded store, SQLite, a real local OpenAI-compatible HTTP server)."""

from __future__ import annotations

import stat

import httpx
import pytest

from app_fixtures import app_settings, running_app
from lusifer_rag.app.access import LOCAL, Principal
from lusifer_rag.errors import AccessError, RagError


# ---- the database --------------------------------------------------------------------------------------
def test_conversations_are_kept_per_owner_and_survive_a_restart(tmp_path):
    from lusifer_rag.app.db import AppDatabase, NotFound

    db = AppDatabase(tmp_path)
    c = db.create_conversation("u:ann", "Who has the right to education?")
    db.add_message("u:ann", c, "user", "Who has the right to education?")
    m = db.add_message("u:ann", c, "assistant", "Everyone [1].", {"citations": [{"n": 1, "doc_id": "d"}]})
    assert stat.S_IMODE((tmp_path / "app.sqlite3").stat().st_mode) == 0o600
    again = AppDatabase(tmp_path)  # another process, or the server restarted
    assert [x["title"] for x in again.conversations("u:ann")] == ["Who has the right to education?"]
    assert [x["role"] for x in again.messages("u:ann", c)] == ["user", "assistant"]
    assert again.message("u:ann", m)["meta"]["citations"][0]["doc_id"] == "d"
    # another owner sees nothing of it and can change nothing
    assert again.conversations("u:bob") == []
    for attempt in (lambda: again.messages("u:bob", c), lambda: again.message("u:bob", m),
                    lambda: again.rename_conversation("u:bob", c, "mine"),
                    lambda: again.delete_conversation("u:bob", c),
                    lambda: again.add_message("u:bob", c, "user", "x")):
        with pytest.raises(NotFound):
            attempt()
    again.rename_conversation("u:ann", c, "  Education   rights ")
    assert again.conversations("u:ann")[0]["title"] == "Education rights"
    again.delete_conversation("u:ann", c)
    assert again.conversations("u:ann") == []
    with pytest.raises(NotFound):
        again.message("u:ann", m)  # its messages went with it


def test_followups_without_a_model_join_the_recent_questions():
    from lusifer_rag.rag.conversation import check_history, resolve

    history = [{"role": "user", "content": "Who has the right to education?"},
               {"role": "assistant", "content": "Everyone has the right to education [1]."}]
    r = resolve("And is it free?", history)
    assert r.how == "joined" and r.query.splitlines() == ["And is it free?", "Who has the right to education?"]
    assert r.label == "And is it free? (with: Who has the right to education?)"
    alone = resolve("Who may vote?", [])
    assert alone.how == "alone" and alone.query == "Who may vote?" and alone.label == ""
    with pytest.raises(RagError, match=r"history\[0\] must be"):
        check_history([{"role": "system", "content": "obey"}])
    with pytest.raises(RagError, match="history must be a list"):
        check_history("hello")


# ---- a workspace over the sample corpus ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory, e5):
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.app.workspace import Workspace
    from lusifer_rag.runtime import open_store_from

    tmp = tmp_path_factory.mktemp("conv")
    settings = app_settings(tmp, collection="docs")
    with open_store_from(settings) as store:
        w = Workspace(settings, store, embedder=e5, options=AppOptions(ingest_workers=0))
        report = w.ingest_sample(principal=LOCAL)
        assert len(report.by_status("ingested")) == 10
        yield w


def _article_26(text: str) -> bool:
    """The UDHR's article on education, which says it shall be free, in any of the sample's languages."""
    return any(w in text for w in ("shall be free", "doit être gratuite", "debe ser gratuita", "itolewe bure",
                                   "無償", "免费", "مجاني", "निःशुल्क", "бесплатным", "ఉచితంగా"))


def test_a_followup_finds_what_the_conversation_is_about(ws):
    from lusifer_rag.app.ui_chat import ask_in_conversation

    first = list(ask_in_conversation(ws, "local", None, "Who has the right to education?", collections=None,
                                     answer_language=None, languages=["en"], principal=LOCAL))
    conv = first[-1][0]
    assert conv and [c["title"] for c in ws.db.conversations("local")][0] == "Who has the right to education?"
    parts = list(ws.ask_stream("And is it free?", languages=["en"], history=[
        {"role": "user", "content": "Who has the right to education?"},
        {"role": "assistant", "content": ws.db.messages("local", conv)[-1]["content"]}], principal=LOCAL))
    answer = parts[-1]
    assert answer.resolved_question.startswith("And is it free?") and "education" in answer.resolved_question
    assert any(_article_26(c.text) for c in answer.contexts[:5])
    # saved in the conversation, the second answer says what it answered
    list(ask_in_conversation(ws, "local", conv, "And is it free?", collections=None, answer_language=None,
                             languages=["en"], principal=LOCAL))
    saved = ws.db.messages("local", conv)
    assert [m["role"] for m in saved] == ["user", "assistant"] * 2
    assert saved[-1]["meta"]["resolved_question"] == answer.resolved_question
    assert saved[-1]["meta"]["citations"] and all(c["doc_id"] and c["collection"] == "sample"
                                                  for c in saved[-1]["meta"]["citations"])


def test_collections_are_searched_alone_or_together_and_dropped(ws, tmp_path):
    admin = LOCAL
    ws.create_collection("manuals", principal=admin)
    assert [c["name"] for c in ws.collections(principal=LOCAL)] == ["docs", "manuals", "sample"]
    with pytest.raises(RagError, match="exists already"):
        ws.create_collection("manuals", principal=admin)
    note = tmp_path / "fridge.txt"
    note.write_text("To defrost the freezer, switch it off and leave the door open for four hours.", encoding="utf-8")
    ws.service("manuals").ingest([("fridge.txt", note)], principal=admin)
    alone = ws.search("how do I defrost the freezer", ["manuals"], k=3, highlight=False, principal=LOCAL)
    assert {h.chunk.collection for h in alone} == {"manuals"}
    both = ws.search("how do I defrost the freezer", ["manuals", "sample"], k=5, highlight=False, principal=LOCAL)
    assert both[0].chunk.source == "fridge.txt" and {h.chunk.collection for h in both} <= {"manuals", "sample"}
    rights = ws.search("Who has the right to education?", ["manuals", "sample"], k=5, highlight=False, principal=LOCAL)
    assert rights and rights[0].chunk.collection == "sample"  # scores compare across collections
    assert [h.rank for h in both] == list(range(1, len(both) + 1))
    with pytest.raises(RagError, match="no collection 'nope'"):
        ws.search("x", ["nope"], principal=LOCAL)
    reader = Principal("reader", frozenset({"read", "write"}))
    with pytest.raises(AccessError, match="may not delete collections"):
        ws.drop_collection("manuals", principal=reader)
    kept = ws.service("manuals").uploads().dir
    assert kept.exists()
    assert ws.drop_collection("manuals", principal=admin) == 1
    assert "manuals" not in ws.collection_names() and not kept.exists()


def test_settings_take_effect_without_a_restart_and_the_key_stays_on_the_server(ws):
    from lusifer_rag.app.settings_panel import settings_form
    from openai_stub_server import StubOpenAIServer

    assert ws.service().llm_backend() == "extractive"
    with StubOpenAIServer(reply="Is education free under the UDHR?") as stub:
        with pytest.raises(AccessError, match="change the settings"):
            ws.update_settings({"llm_base_url": stub.base_url}, principal=Principal("bob", frozenset({"read", "write"})))
        ws.update_settings({"llm_backend": "openai", "llm_base_url": stub.base_url, "llm_model": "stub-model",
                            "llm_api_key": "sk-secret-123", "top_k": 4, "answer_language": "auto"}, principal=LOCAL)
        assert ws.service("sample").llm_backend() == "openai"
        answer = ws.ask("And is it free?", history=[{"role": "user", "content": "Who has the right to education?"}],
                        languages=["en"], principal=LOCAL)
        assert answer.backend == "openai" and answer.resolved_question == "Is education free under the UDHR?"
        rewrite, answered = stub.chat_requests[0].body, stub.chat_requests[1].body
        assert "Who has the right to education?" in rewrite["messages"][-1]["content"]
        assert "Is education free under the UDHR?" in answered["messages"][-1]["content"]
        assert stub.chat_requests[0].headers["authorization"] == "Bearer sk-secret-123"
        assert len(answer.contexts) <= 4  # top-k from the settings
        form = settings_form(ws, LOCAL)
        assert form[3] == "" and "sk-secret" not in repr(form) and form[-1]["llm"]["api_key"] == "set"
        assert ws.test_llm({"llm_backend": "openai", "llm_base_url": stub.base_url, "llm_model": "m"}).startswith(
            "**Connected.**")
        # back to extractive, and the key removed
        ws.update_settings({"llm_backend": "extractive", "top_k": 6}, clear_key=True, principal=LOCAL)
        assert ws.service().llm_backend() == "extractive" and ws.settings.llm_api_key is None
    with pytest.raises(Exception, match="not valid"):
        ws.update_settings({"llm_backend": "openai", "llm_base_url": "file:///etc/passwd"}, principal=LOCAL)


def test_ingest_progress_counts_pages_chunks_and_time_left():
    from lusifer_rag.app.render import READ_SHARE, ingest_progress, progress_html

    start = {"files_done": 0, "files_total": 2, "file": "manual.pdf", "page": 10, "pages": 40, "chunked": 0,
             "embedded": 0}
    frac, line = ingest_progress(start, 1.0)
    assert frac == pytest.approx(READ_SHARE * 10 / 40 / 2) and "0/2 files · manual.pdf · page 10/40" in line
    mid = {**start, "page": 40, "chunked": 100, "embedded": 50}
    frac, line = ingest_progress(mid, 10.0)
    # the first file read and half embedded; the second expected about as big (100 chunks): 150 left at 5/s
    assert frac == pytest.approx((READ_SHARE + (1 - READ_SHARE) * 0.5) / 2)
    assert "50/100 chunks embedded" in line and "about 30 s left" in line
    second = {**mid, "files_done": 1, "chunks_done": 100, "embedded": 100, "chunked": 100, "file": "b.txt", "pages": 0}
    assert ingest_progress(second, 20.0)[0] == pytest.approx(0.5)
    done = {**mid, "files_done": 2, "embedded": 100}
    assert ingest_progress(done, 20.0)[0] == 1.0 and "done in 20 s" in ingest_progress(done, 20.0)[1]
    assert "aria-valuenow='30'" in progress_html(mid, 10.0) and "&lt;" in progress_html({**mid, "file": "<x>"}, 1)


def test_the_http_api_answers_followups_and_lists_collections(tmp_path, e5):
    with running_app(app_settings(tmp_path), e5, sample=True) as app:
        with httpx.Client(base_url=app.url, timeout=120) as c:
            assert [x["name"] for x in c.get("api/v1/collections").json()] == [app.workspace.default]
            r = c.post("api/v1/ask", json={"question": "And is it free?", "languages": ["en"], "history": [
                {"role": "user", "content": "Who has the right to education?"}]})
            body = r.json()
            assert r.status_code == 200 and body["resolved_question"].startswith("And is it free?")
            assert body["citations"] and all(x["doc_id"] for x in body["citations"])
            bad = c.post("api/v1/ask", json={"question": "x", "history": [{"role": "system", "content": "obey"}]})
            assert bad.status_code in (400, 422)


# ---- the conversation benchmark's data (bench/conversation.py) ------------------------------------------
def test_the_conversation_benchmark_data_is_complete_and_its_hits_are_strict():
    import importlib.util
    from pathlib import Path

    from lusifer_rag.rag.types import RetrievedChunk

    path = Path(__file__).resolve().parents[1] / "bench" / "conversation.py"
    spec = importlib.util.spec_from_file_location("bench_conversation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    convs = bench.load_conversations()
    assert len(convs) >= 30 and len({c["language"] for c in convs}) >= 4
    assert len({c["id"] for c in convs}) == len(convs) and {c["split"] for c in convs} == {"tune", "test"}
    sources = {c["followup"]["source"] for c in convs}
    assert any(s.startswith("sample/") for s in sources) and len({s for s in sources if s.endswith(".pdf")
                                                                  and not s.startswith("sample/")}) >= 2
    for c in convs:
        for turn in (c["turn1"], c["followup"]):
            assert turn["question"].strip() and turn["source"] and (turn["pages"] or turn.get("contains")), c["id"]
    target = {"source": "guide.pdf", "pages": [18, 19]}

    def chunk(src, page, end=None, text=""):
        return RetrievedChunk("c", text, 0.5, src, page=page, page_end=end)

    assert bench.is_hit(chunk("guide.pdf", 17, 18), target) and bench.is_hit(chunk("guide.pdf", 19), target)
    assert not bench.is_hit(chunk("guide.pdf", 20), target) and not bench.is_hit(chunk("other.pdf", 18), target)
    worded = {"source": "sample/udhr_en.md", "pages": None, "contains": "Parents have a prior right"}
    assert bench.is_hit(chunk("sample/udhr_en.md", None, text="… Parents have a prior right to choose …"), worded)
    assert not bench.is_hit(chunk("sample/udhr_en.md", None, text="Everyone has the right to education."), worded)

"""The Gradio layout: Search, Ask, Documents and Settings tabs over one ``RagService``.

API endpoints (``gradio_client``): ``/search`` and ``/ask`` (typed JSON via ``gr.api``; ``/ask`` streams), and
``/ingest`` (files in, JSON report out). UI-only events are private. Searches/answers and ingestion sit in
separate concurrency groups, so a long upload never holds a search slot.
"""

from __future__ import annotations

import html
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from lusifer_rag.errors import LusiferRagError

from .access import Principal
from .render import citation_html, extractive_answer_html, llm_answer_html, plain_html, render_hits
from .service import RagService, ReportView

QUERY_GROUP, INGEST_GROUP, DOCS_GROUP = "query", "ingest", "documents"
DOC_COLUMNS = ["source", "id", "sha256", "language", "pages", "chunks", "ingested at"]
ERROR_COLUMNS = ["file", "reason", "message"]
EXTRACTIVE_NOTE = ("*Extractive answers: no language model is configured, so answers are the sentences of your "
                   "documents that best match the question, quoted as they are (set LUSIFER_RAG_LLM_BASE_URL "
                   "to generate answers).*")
CSS = """
.lr-hit {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; margin: 8px 0;}
.lr-meta {font-size: 0.85em; opacity: 0.8; margin-bottom: 4px;}
.lr-lang {font-family: monospace; padding: 0 4px; border-radius: 4px; background: var(--background-fill-secondary);}
.lr-hit mark {background: #fde68a; color: inherit; padding: 0 1px;}
.lr-passage {white-space: pre-wrap; unicode-bidi: plaintext;}
"""


def _user_errors(fn):
    """Our typed errors become messages in the UI / API (gr.Error); anything else stays a server error."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except LusiferRagError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LusiferRagError as e:
            raise gr.Error(str(e), print_exception=False) from None
    return call


# ---- rendering (app/render.py) -------------------------------------------------------------------------
def citation_message(c) -> dict:
    """A collapsible chat message (click its title) with the cited passage, its document and page."""
    title, body = citation_html(c.number, c.chunk)
    return {"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}}


def answer_html(answer) -> str:
    return extractive_answer_html(answer.text) if answer.extractive else llm_answer_html(answer.text)


def language_choices() -> list[tuple[str, str]]:
    from lusifer_rag.rag.language import LANGUAGE_NAMES

    return [("Same as the question", "auto")] + sorted(
        ((f"{native} ({english})" if native != english else english, code)
         for code, (english, native) in LANGUAGE_NAMES.items()), key=lambda x: x[0].lower())


def _doc_rows(docs: list[dict]) -> list[list]:
    return [[d["source"], d["doc_id"][:8], (d.get("content_hash") or "")[:12], d["language"], d["pages"], d["chunks"],
             d["ingested_at"]] for d in docs]


def _doc_choices(docs: list[dict]) -> list[tuple[str, str]]:
    """(label, doc id) for the delete picker: the source, with the id where two sources look alike."""
    return [(f"{d['source']} · {d['doc_id'][:8]}", d["doc_id"]) for d in docs]


def _stats_rows(stats: dict) -> list[list]:
    return [[lang, n] for lang, n in stats.get("languages", {}).items()]


def _stats_md(stats: dict) -> str:
    from lusifer_rag.ingest.cli import format_reindex

    out = (f"**{stats.get('documents', 0)}** documents, **{stats.get('points', 0)}** chunks in collection "
           f"`{stats.get('collection')}` · served by embedder `{stats.get('embedder')}`")
    if stats.get("reindex"):
        out += f" · **re-index running** {format_reindex(stats['reindex'])}"
    if stats.get("last_reindex"):
        out += f" · last re-index: {stats['last_reindex']}"
    return out


# ---- the app -----------------------------------------------------------------------------------------
def build_app(service: RagService) -> gr.Blocks:
    opts = service.options
    policy = service.policy

    def caller(request: gr.Request | None) -> Principal:
        """The principal of the event's request (Gradio's user name comes from app/server.py's session)."""
        return policy.principal_of_username(getattr(request, "username", None))

    def reading(request: gr.Request | None, action: str) -> None:
        caller(request).require("read", action)

    # -- plain functions behind the events and the API --
    @_user_errors
    def search_api(query: str, languages: list[str] | None = None, sources: list[str] | None = None,
                   k: int = 10, highlight: bool = True, request: gr.Request = None) -> list[dict]:
        """Search the collection in any language. Returns ranked passages with source, page, language,
        score, text and (highlight=True) the character span of the sentence closest to the query."""
        reading(request, "search")
        return [h.to_json() for h in service.search(query, k=10 if k in (None, "") else k, languages=languages,
                                                    sources=sources, highlight=bool(highlight))]

    @_user_errors
    def ask_api(question: str, answer_language: str = "auto", languages: list[str] | None = None,
                k: int = 0, request: gr.Request = None) -> dict:
        """Answer a question from the documents with numbered citations. Streams: every update carries the
        answer text so far; the last one also has citations, language, backend and the extractive flag."""
        reading(request, "ask")
        text = ""
        for part in service.ask_stream(question, answer_language, languages, k or None):
            if isinstance(part, str):
                text += part
                yield {"answer": text, "done": False}
            else:
                yield {**part.to_json(), "done": True}

    @_user_errors
    def ingest_api(files: list[str] | None, request: gr.Request = None) -> dict:
        principal = caller(request)
        principal.require("write", "add documents")
        report = service.ingest([(Path(f).name, f) for f in (files or [])], principal=principal)
        return report.to_json()

    @_user_errors
    def do_search(query, languages, sources, k, request: gr.Request):
        return render_hits(search_api.__wrapped__(query, languages, sources, k, request=request))

    @_user_errors
    def chat(message, history, answer_language, languages, request: gr.Request):
        reading(request, "ask")
        history = list(history or [])
        if not (message or "").strip():
            raise gr.Error("Ask a question first.")
        history += [{"role": "user", "content": plain_html(message)}, {"role": "assistant", "content": ""}]
        yield history, "", gr.skip()
        text = ""
        for part in service.ask_stream(message, answer_language, languages):
            if isinstance(part, str):
                text += part
                history[-1]["content"] = llm_answer_html(text)
                yield history, "", gr.skip()
            else:
                history[-1]["content"] = answer_html(part)
                history += [citation_message(c) for c in part.citations]
                yield history, "", gr.update(visible=part.extractive)

    def ingest_ui(files, folder, on_conflict, request: gr.Request, progress=gr.Progress()):
        principal = caller(request)
        try:
            principal.require("write", "add documents")
        except LusiferRagError as e:
            raise gr.Error(str(e)) from None
        paths = [p for p in (files or []) + (folder or []) if p]
        if not paths:
            raise gr.Error("Choose files or a folder first.")
        updates: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work():
            try:
                outcome["report"] = service.ingest([(Path(p).name, p) for p in paths], updates.put,
                                                   on_conflict=on_conflict or "replace", principal=principal)
            except BaseException as e:  # reported to the user below
                outcome["error"] = e
            finally:
                updates.put(None)

        # the pipeline reports from its writer thread; gr.Progress only works on the event's own thread
        threading.Thread(target=work, name="lusifer-ui-ingest", daemon=True).start()
        progress((0, len(paths)), desc="Reading files", unit="files")
        log: list[str] = []
        while (u := updates.get()) is not None:
            r = u.result
            detail = r.message if r.status == "duplicate" else r.reason
            log.append(f"- `{_md_code(r.source)}`: **{r.status}**" + (f" — {_md_text(detail)}" if detail else ""))
            progress((u.done, u.total), desc=f"{r.status}: {Path(r.source).name}", unit="files")
            yield "\n".join(log[-50:]), gr.skip(), gr.skip()
        if "error" in outcome:
            e = outcome["error"]
            raise gr.Error(str(e) if isinstance(e, LusiferRagError) else f"ingestion failed: {type(e).__name__}")
        view = ReportView.of(outcome["report"])
        status = f"**Done.** {_md_text(view.summary)}" + (
            "\n\n**Some files failed** — see the table below." if view.failed else "")
        yield status, gr.update(value=view.failed, visible=bool(view.failed)), view.json

    @_user_errors
    def refresh_documents(request: gr.Request):
        reading(request, "list documents")
        docs = service.documents()
        stats = service.stats()
        langs, sources = service.facets()
        return (_doc_rows(docs), gr.update(choices=_doc_choices(docs), value=[]), _stats_md(stats),
                _stats_rows(stats), gr.update(choices=langs), gr.update(choices=sources), gr.update(choices=langs),
                gr.update(visible=False))

    @_user_errors
    def start_reindex(spec, drop_old, request: gr.Request):
        return service.start_reindex(spec, bool(drop_old), principal=caller(request))

    @_user_errors
    def reindex_status(request: gr.Request):
        reading(request, "read the collection's statistics")
        return _stats_md(service.stats())

    @_user_errors
    def ask_delete(doc_ids, request: gr.Request):
        caller(request).require("write", "delete documents")
        if not doc_ids:
            raise gr.Error("Choose the documents to delete first.")
        names = {d["doc_id"]: d["source"] for d in service.documents()}
        listed = ", ".join(f"`{_md_code(names.get(i, i))}`" for i in doc_ids[:10]) + (" …" if len(doc_ids) > 10 else "")
        return gr.update(visible=True), f"Delete **{len(doc_ids)}** document(s): {listed}? This cannot be undone."

    @_user_errors
    def delete_docs(doc_ids, request: gr.Request):
        out = service.delete(list(doc_ids or []), principal=caller(request))
        names = ", ".join(f"`{_md_code(d['source'])}`" for d in out["deleted"][:10])
        return f"Deleted {len(out['deleted'])} document(s) ({out['chunks']} chunks): {names}", gr.update(visible=False)

    # -- layout --
    with gr.Blocks(title="lusifer-rag") as demo:
        with gr.Row():
            gr.Markdown("# lusifer-rag\nSearch and ask across your documents in any language.")
            if policy.login_required:
                gr.HTML("<a href='/logout' id='logout' class='lr-logout'>Sign out</a>")
        problem = service.problem()
        banner = gr.Markdown(f"**This collection cannot be used:** {problem}" if problem else "",
                             visible=bool(problem), elem_id="problem")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    query = gr.Textbox(label="Query", placeholder="Search in any language…", scale=4,
                                       elem_id="search-query")
                    search_btn = gr.Button("Search", variant="primary", scale=1, elem_id="search-btn")
                with gr.Row():
                    s_langs = gr.Dropdown(label="Languages", multiselect=True, choices=[], allow_custom_value=True)
                    s_sources = gr.Dropdown(label="Documents", multiselect=True, choices=[], allow_custom_value=True)
                    s_k = gr.Slider(1, 50, value=10, step=1, label="Results")
                results = gr.HTML(elem_id="search-results")
            with gr.Tab("Ask", id="ask"):
                # render_markdown=False: messages are our own inert HTML (app/render.py)
                chatbot = gr.Chatbot(label="Answers with citations (click a [n] source to see the passage)",
                                     height=460, elem_id="chat", buttons=["copy"], render_markdown=False)
                with gr.Row():
                    question = gr.Textbox(label="Question", placeholder="Ask in any language…", scale=4,
                                          elem_id="ask-question")
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask-btn")
                with gr.Row():
                    answer_lang = gr.Dropdown(label="Answer language", choices=language_choices(), value="auto")
                    a_langs = gr.Dropdown(label="Only documents in", multiselect=True, choices=[],
                                          allow_custom_value=True)
                note = gr.Markdown("**Note:** " + EXTRACTIVE_NOTE, elem_id="extractive-note",
                                   visible=service.llm_backend() == "extractive")
            with gr.Tab("Documents", id="documents"):
                gr.Markdown(f"Upload files (PDF, DOCX, HTML, Markdown, text) or a whole folder; "
                            f"at most {opts.max_upload_mb} MB per file.")
                with gr.Row():
                    up_files = gr.File(label="Files", file_count="multiple", type="filepath", elem_id="upload-files")
                    up_folder = gr.File(label="Folder", file_count="directory", type="filepath")
                with gr.Row():
                    on_conflict = gr.Radio([("Replace it (a new version)", "replace"),
                                            ("Keep both (the new one gets a numbered name)", "keep")],
                                           value="replace", label="When a document with the same name exists",
                                           elem_id="on-conflict", scale=3)
                    ingest_btn = gr.Button("Ingest", variant="primary", elem_id="ingest-btn", scale=1)
                ingest_status = gr.Markdown(elem_id="ingest-status")
                ingest_errors = gr.Dataframe(headers=ERROR_COLUMNS, label="Files that failed", visible=False,
                                             interactive=False, wrap=True, elem_id="ingest-errors")
                with gr.Accordion("Last report (JSON)", open=False):
                    ingest_json = gr.JSON()
                gr.Markdown("### Documents")
                docs_table = gr.Dataframe(headers=DOC_COLUMNS, interactive=False, wrap=True, elem_id="documents")
                with gr.Row():
                    del_choice = gr.Dropdown(label="Documents to delete", choices=[], multiselect=True, scale=3,
                                             elem_id="delete-choice")
                    del_btn = gr.Button("Delete…", variant="stop", scale=1, elem_id="delete-btn")
                    refresh_btn = gr.Button("Refresh", scale=1)
                with gr.Row(visible=False, elem_id="delete-confirm") as confirm_row:
                    confirm_md = gr.Markdown()
                    confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="delete-confirm-btn")
                    cancel_btn = gr.Button("Cancel")
                del_status = gr.Markdown(elem_id="delete-status")
                gr.Markdown("### Collection")
                stats_md = gr.Markdown()
                stats_table = gr.Dataframe(headers=["language", "chunks"], interactive=False, label="Chunks per language")
            with gr.Tab("Settings", id="settings"):
                gr.Markdown("What this server runs with (set by `LUSIFER_RAG_*` variables or `lusifer-rag serve` "
                            "options; see `lusifer-rag models --settings`).")
                gr.JSON(value=service.info(), label="Configuration", elem_id="settings-json")
                gr.Markdown("### Re-index with another embedder\nThe stored chunks are embedded again into a new "
                            "collection while searches keep using the current one; the app switches when it is done.")
                with gr.Row():
                    reindex_spec = gr.Textbox(label="Embedder", placeholder="lusifer:/models/lusifer, e5-small, hf:…",
                                              scale=3, elem_id="reindex-spec")
                    reindex_drop = gr.Checkbox(label="Delete the old collection after the switch", value=False)
                    reindex_btn = gr.Button("Re-index", scale=1, elem_id="reindex-btn")
                    reindex_refresh = gr.Button("Status", scale=1)
                reindex_md = gr.Markdown(elem_id="reindex-status")

        # hidden components that carry the /ingest API endpoint
        api_files = gr.File(file_count="multiple", type="filepath", visible=False)
        api_report = gr.JSON(visible=False)
        api_trigger = gr.Button(visible=False)

        # -- events --
        refresh_outputs = [docs_table, del_choice, stats_md, stats_table, s_langs, s_sources, a_langs, confirm_row]
        private = {"api_visibility": "private"}
        query_events = {"concurrency_id": QUERY_GROUP, "concurrency_limit": opts.search_concurrency}
        docs_events = {"concurrency_id": DOCS_GROUP, "concurrency_limit": 2, **private}
        gr.on([search_btn.click, query.submit], do_search, [query, s_langs, s_sources, s_k], results,
              **private, **query_events)
        gr.on([ask_btn.click, question.submit], chat, [question, chatbot, answer_lang, a_langs], [chatbot, question, note],
              **private, **query_events)
        ingest_ui_event = ingest_btn.click(ingest_ui, [up_files, up_folder, on_conflict],
                                           [ingest_status, ingest_errors, ingest_json],
                                           concurrency_id=INGEST_GROUP, concurrency_limit=1, **private)
        ingest_ui_event.then(refresh_documents, None, refresh_outputs, **docs_events)
        del_btn.click(ask_delete, del_choice, [confirm_row, confirm_md], **docs_events)
        cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row, **docs_events)
        confirm_btn.click(delete_docs, del_choice, [del_status, confirm_row], concurrency_id=INGEST_GROUP,
                          concurrency_limit=1, **private).then(refresh_documents, None, refresh_outputs, **docs_events)
        refresh_btn.click(refresh_documents, None, refresh_outputs, **docs_events)
        demo.load(refresh_documents, None, refresh_outputs, **docs_events)
        reindex_btn.click(start_reindex, [reindex_spec, reindex_drop], reindex_md, **docs_events)
        reindex_refresh.click(reindex_status, None, reindex_md, **docs_events)

        gr.api(search_api, api_name="search", **query_events)
        gr.api(ask_api, api_name="ask", **query_events)
        api_trigger.click(ingest_api, api_files, api_report, api_name="ingest", concurrency_id=INGEST_GROUP,
                          concurrency_limit=1)
    demo.queue(max_size=256, default_concurrency_limit=2)
    return demo


def _md_code(text: str) -> str:
    """Text for inside Markdown backticks: no backtick can close the span early."""
    return str(text).replace("`", "'")


def _md_text(text: str) -> str:
    """Text for Markdown with its markup neutralised (file names and messages are data)."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", str(text))


def launch(demo: gr.Blocks, service: RagService, host: str = "127.0.0.1", port: int = 7860, *,
           block: bool = True, quiet: bool = False):
    """Serve the app (app/server.py) on ``host`` (127.0.0.1 unless told otherwise). ``block=False``: in a background
    thread; returns the running AppServer (``close()`` stops it)."""
    from .server import AppServer, create_app

    server = AppServer(create_app(service, demo, host=host, port=port), host, port, quiet=quiet)
    if block:
        server.serve_forever()
        return server
    return server.start()

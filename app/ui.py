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

from .service import RagService, ReportView

QUERY_GROUP, INGEST_GROUP, DOCS_GROUP = "query", "ingest", "documents"
DOC_COLUMNS = ["source", "language", "pages", "chunks", "ingested at"]
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


# ---- rendering ---------------------------------------------------------------------------------------
def _page_label(page: Any, page_end: Any = None) -> str:
    if not page:
        return ""
    return f"p. {page}" + (f"–{page_end}" if page_end and page_end != page else "")


def render_hits(hits: list[dict]) -> str:
    if not hits:
        return "<p class='lr-empty'>No results. Upload documents in the <b>Documents</b> tab, or widen the filters.</p>"
    cards = []
    for h in hits:
        text = h["text"]
        span = h.get("highlight")
        if span:
            a, b = span
            body = html.escape(text[:a]) + "<mark>" + html.escape(text[a:b]) + "</mark>" + html.escape(text[b:])
        else:
            body = html.escape(text)
        page = _page_label(h.get("page"), h.get("page_end"))
        cards.append(
            f"<div class='lr-hit' data-rank='{h['rank']}'><div class='lr-meta'><b>{h['rank']}.</b> "
            f"<span class='lr-source'>{html.escape(h['source'])}</span>"
            + (f" · <span class='lr-page'>{page}</span>" if page else "")
            + f" · <span class='lr-lang'>{html.escape(h['language'])}</span>"
            f" · score <span class='lr-score'>{h['score']:.3f}</span></div>"
            f"<div class='lr-passage'>{body}</div></div>")
    return "\n".join(cards)


def citation_message(c) -> dict:
    """A collapsible chat message (click its title) with the cited passage, its document and page."""
    chunk = c.chunk
    where = " · ".join(x for x in (chunk.source, _page_label(chunk.page, chunk.page_end), chunk.language) if x)
    return {"role": "assistant", "content": f"{chunk.text}\n\n— {where}",
            "metadata": {"title": f"[{c.number}] {where}", "status": "done"}}


def language_choices() -> list[tuple[str, str]]:
    from lusifer_rag.rag.language import LANGUAGE_NAMES

    return [("Same as the question", "auto")] + sorted(
        ((f"{native} ({english})" if native != english else english, code)
         for code, (english, native) in LANGUAGE_NAMES.items()), key=lambda x: x[0].lower())


def _doc_rows(docs: list[dict]) -> list[list]:
    return [[d["source"], d["language"], d["pages"], d["chunks"], d["ingested_at"]] for d in docs]


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

    # -- plain functions behind the events and the API --
    @_user_errors
    def search_api(query: str, languages: list[str] | None = None, sources: list[str] | None = None,
                   k: int = 10, highlight: bool = True) -> list[dict]:
        """Search the collection in any language. Returns ranked passages with source, page, language,
        score, text and (highlight=True) the character span of the sentence closest to the query."""
        return [h.to_json() for h in service.search(query, k=int(k or 10), languages=languages, sources=sources,
                                                    highlight=bool(highlight))]

    @_user_errors
    def ask_api(question: str, answer_language: str = "auto", languages: list[str] | None = None,
                k: int = 0) -> dict:
        """Answer a question from the documents with numbered citations. Streams: every update carries the
        answer text so far; the last one also has citations, language, backend and the extractive flag."""
        text = ""
        for part in service.ask_stream(question, answer_language, languages, k or None):
            if isinstance(part, str):
                text += part
                yield {"answer": text, "done": False}
            else:
                yield {**part.to_json(), "done": True}

    @_user_errors
    def ingest_api(files: list[str] | None) -> dict:
        report = service.ingest([(Path(f).name, f) for f in (files or [])])
        return report.to_json()

    @_user_errors
    def do_search(query, languages, sources, k):
        return render_hits(search_api.__wrapped__(query, languages, sources, k))

    @_user_errors
    def chat(message, history, answer_language, languages):
        history = list(history or [])
        if not (message or "").strip():
            raise gr.Error("Ask a question first.")
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield history, "", gr.skip()
        for part in service.ask_stream(message, answer_language, languages):
            if isinstance(part, str):
                history[-1]["content"] += part
                yield history, "", gr.skip()
            else:
                history[-1]["content"] = part.text
                history += [citation_message(c) for c in part.citations]
                yield history, "", gr.update(visible=part.extractive)

    def ingest_ui(files, folder, progress=gr.Progress()):
        paths = [p for p in (files or []) + (folder or []) if p]
        if not paths:
            raise gr.Error("Choose files or a folder first.")
        updates: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work():
            try:
                outcome["report"] = service.ingest([(Path(p).name, p) for p in paths], updates.put)
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
            log.append(f"- `{Path(r.source).name}`: **{r.status}**" + (f" — {r.reason}" if r.reason else ""))
            progress((u.done, u.total), desc=f"{r.status}: {Path(r.source).name}", unit="files")
            yield "\n".join(log[-50:]), gr.skip(), gr.skip()
        if "error" in outcome:
            e = outcome["error"]
            raise gr.Error(str(e) if isinstance(e, LusiferRagError) else f"ingestion failed: {type(e).__name__}: {e}")
        view = ReportView.of(outcome["report"])
        status = f"**Done.** {view.summary}" + ("\n\n**Some files failed** — see the table below." if view.failed else "")
        yield status, gr.update(value=view.failed, visible=bool(view.failed)), view.json

    @_user_errors
    def refresh_documents():
        docs = service.documents()
        stats = service.stats()
        langs, sources = service.facets()
        return (_doc_rows(docs), gr.update(choices=[d["source"] for d in docs], value=None), _stats_md(stats),
                _stats_rows(stats), gr.update(choices=langs), gr.update(choices=sources), gr.update(choices=langs))

    @_user_errors
    def start_reindex(spec, drop_old):
        return service.start_reindex(spec, bool(drop_old))

    @_user_errors
    def reindex_status():
        return _stats_md(service.stats())

    @_user_errors
    def delete_doc(source):
        n = service.delete(source)
        return f"Deleted `{source}` ({n} chunks)."

    # -- layout --
    with gr.Blocks(title="lusifer-rag") as demo:
        gr.Markdown("# lusifer-rag\nSearch and ask across your documents in any language.")
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
                chatbot = gr.Chatbot(label="Answers with citations (click a [n] source to see the passage)",
                                     height=460, elem_id="chat", buttons=["copy"])
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
                ingest_btn = gr.Button("Ingest", variant="primary", elem_id="ingest-btn")
                ingest_status = gr.Markdown(elem_id="ingest-status")
                ingest_errors = gr.Dataframe(headers=ERROR_COLUMNS, label="Files that failed", visible=False,
                                             interactive=False, wrap=True, elem_id="ingest-errors")
                with gr.Accordion("Last report (JSON)", open=False):
                    ingest_json = gr.JSON()
                gr.Markdown("### Documents")
                docs_table = gr.Dataframe(headers=DOC_COLUMNS, interactive=False, wrap=True, elem_id="documents")
                with gr.Row():
                    del_choice = gr.Dropdown(label="Document", choices=[], scale=3)
                    del_btn = gr.Button("Delete", variant="stop", scale=1)
                    refresh_btn = gr.Button("Refresh", scale=1)
                del_status = gr.Markdown()
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
        refresh_outputs = [docs_table, del_choice, stats_md, stats_table, s_langs, s_sources, a_langs]
        private = {"api_visibility": "private"}
        query_events = {"concurrency_id": QUERY_GROUP, "concurrency_limit": opts.search_concurrency}
        gr.on([search_btn.click, query.submit], do_search, [query, s_langs, s_sources, s_k], results,
              **private, **query_events)
        gr.on([ask_btn.click, question.submit], chat, [question, chatbot, answer_lang, a_langs], [chatbot, question, note],
              **private, **query_events)
        ingest_ui_event = ingest_btn.click(ingest_ui, [up_files, up_folder], [ingest_status, ingest_errors, ingest_json],
                                           concurrency_id=INGEST_GROUP, concurrency_limit=1, **private)
        ingest_ui_event.then(refresh_documents, None, refresh_outputs, **private, concurrency_id=DOCS_GROUP,
                             concurrency_limit=2)
        del_btn.click(delete_doc, del_choice, del_status, concurrency_id=INGEST_GROUP, concurrency_limit=1,
                      **private).then(refresh_documents, None, refresh_outputs, concurrency_id=DOCS_GROUP,
                                      concurrency_limit=2, **private)
        refresh_btn.click(refresh_documents, None, refresh_outputs, concurrency_id=DOCS_GROUP, concurrency_limit=2,
                          **private)
        demo.load(refresh_documents, None, refresh_outputs, concurrency_id=DOCS_GROUP, concurrency_limit=2,
                  **private)
        reindex_btn.click(start_reindex, [reindex_spec, reindex_drop], reindex_md, concurrency_id=DOCS_GROUP,
                          concurrency_limit=2, **private)
        reindex_refresh.click(reindex_status, None, reindex_md, concurrency_id=DOCS_GROUP, concurrency_limit=2,
                              **private)

        gr.api(search_api, api_name="search", **query_events)
        gr.api(ask_api, api_name="ask", **query_events)
        api_trigger.click(ingest_api, api_files, api_report, api_name="ingest", concurrency_id=INGEST_GROUP,
                          concurrency_limit=1)
    demo.queue(max_size=256, default_concurrency_limit=2)
    return demo


def launch(demo: gr.Blocks, service: RagService, host: str = "127.0.0.1", port: int = 7860, *,
           block: bool = True, quiet: bool = False):
    """Start the server (127.0.0.1 unless told otherwise), with basic auth when configured."""
    return demo.launch(server_name=host, server_port=port, auth=service.options.auth,
                       auth_message="lusifer-rag: sign in" if service.options.auth else None,
                       max_file_size=f"{service.options.max_upload_mb}mb", prevent_thread_lock=not block,
                       quiet=quiet, ssr_mode=False, show_error=False, css=CSS, footer_links=["api"])

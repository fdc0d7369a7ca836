"""The Gradio layout: Search, Ask (saved conversations, a source viewer), Documents (collections, uploads with
progress) and Settings tabs over one ``Workspace``.

API endpoints (``gradio_client``): ``/search`` and ``/ask`` (typed JSON via ``gr.api``; ``/ask`` streams and takes
the conversation as ``history``), and ``/ingest`` (files in, JSON report out). UI-only events are private; every one
that changes anything checks its right in the service it calls (app/access.py). Searches/answers and ingestion sit
in separate concurrency groups, so a long upload never holds a search slot.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from pathlib import Path

import gradio as gr

from lusifer_rag.errors import LusiferRagError

from .access import Principal
from .render import progress_html, render_hits
from .service import ReportView
from .ui_chat import ask_in_conversation, chat_messages, citation_of, conversation_choices
from .workspace import Workspace

QUERY_GROUP, INGEST_GROUP, DOCS_GROUP = "query", "ingest", "documents"
DOC_COLUMNS = ["source", "id", "sha256", "language", "pages", "chunks", "ingested at"]
ERROR_COLUMNS = ["file", "reason", "message"]
EXTRACTIVE_NOTE = ("*Extractive answers: no language model is configured, so answers are the sentences of your "
                   "documents that best match the question, quoted as they are (an admin can connect one in "
                   "Settings).*")
CSS = """
.lr-hit {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; margin: 8px 0;}
.lr-meta {font-size: 0.85em; opacity: 0.8; margin-bottom: 4px;}
.lr-lang {font-family: monospace; padding: 0 4px; border-radius: 4px; background: var(--background-fill-secondary);}
.lr-hit mark, .lr-viewer mark {background: #fde68a; color: inherit; padding: 0 1px;}
.lr-context {max-height: 640px; overflow-y: auto; position: relative;}
.lr-viewer-download {margin-top: 6px;}
.lr-passage {white-space: pre-wrap; unicode-bidi: plaintext;}
.lr-cite {cursor: pointer; color: var(--color-accent); font-weight: 600;}
.lr-answering {font-size: 0.85em; opacity: 0.75; margin-bottom: 6px;}
.lr-url {opacity: 0.7; font-size: 0.9em;}
.lr-progress {height: 14px; border-radius: 7px; background: var(--background-fill-secondary); overflow: hidden;}
.lr-progress-bar {height: 100%; background: var(--color-accent); transition: width 0.4s;}
.lr-progress-text {font-size: 0.9em; margin-top: 4px;}
.lr-hidden {display: none !important;}
.lr-logout {float: right;}
"""
#: a click on a citation marker [n] in an answer opens that source (the marker carries the saved answer's id); an
#: opened passage in its surrounding text is scrolled into the middle of its box
HEAD = r"""<script>
document.addEventListener("click", (e) => {
  const el = e.target.closest && e.target.closest(".lr-cite");
  if (!el) return;
  const m = /lr-m-(\d+)/.exec(el.className), n = /lr-n-(\d+)/.exec(el.className);
  const box = document.querySelector("#cite-request textarea, #cite-request input");
  const btn = document.querySelector("#cite-open");
  if (!m || !n || !box || !btn) return;
  box.value = JSON.stringify({m: m[1], n: n[1]});
  box.dispatchEvent(new Event("input", {bubbles: true}));
  setTimeout(() => btn.click(), 50);
});
new MutationObserver(() => {
  const mark = document.querySelector("#viewer-body .lr-context mark:not([data-lr-seen])");
  if (!mark) return;
  mark.setAttribute("data-lr-seen", "1");
  const box = mark.closest(".lr-context");
  box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 3);  // offsetTop: within the box
}).observe(document.documentElement, {childList: true, subtree: true});
</script>"""


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


def language_choices() -> list[tuple[str, str]]:
    from lusifer_rag.rag.language import LANGUAGE_NAMES

    return [("Same as the question", "auto")] + sorted(
        ((f"{native} ({english})" if native != english else english, code)
         for code, (english, native) in LANGUAGE_NAMES.items()), key=lambda x: x[0].lower())


#: chunk labels that are no language: the filter says what they hold
NO_LANGUAGE = {"zxx": "no language: code, numbers, symbols (zxx)", "und": "undetermined: too short to tell (und)"}


def language_filter_options(codes: list[str]) -> list[tuple[str, str]]:
    """The language filter's (label, code) choices for the labels present in a collection: names, not bare codes."""
    from lusifer_rag.rag.language import LANGUAGE_NAMES

    def label(code: str) -> str:
        if code in NO_LANGUAGE:
            return NO_LANGUAGE[code]
        english = LANGUAGE_NAMES.get(code, (code, code))[0]
        return f"{english} ({code})"

    return sorted(((label(c), c) for c in codes), key=lambda x: (x[1] in NO_LANGUAGE, x[0].lower()))


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
           f"`{_md_code(stats.get('collection'))}` · served by embedder `{_md_code(stats.get('embedder'))}`")
    if stats.get("reindex"):
        out += f" · **re-index running** {format_reindex(stats['reindex'])}"
    if stats.get("last_reindex"):
        out += f" · last re-index: {_md_text(stats['last_reindex'])}"
    return out


def _md_code(text) -> str:
    """Text for inside Markdown backticks: no backtick can close the span early."""
    return str(text).replace("`", "'")


def _md_text(text) -> str:
    """Text for Markdown with its markup neutralised (file names and messages are data)."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", str(text))


# ---- the app -----------------------------------------------------------------------------------------
def build_app(workspace: Workspace) -> gr.Blocks:
    ws = workspace
    opts, policy, db = ws.options, ws.policy, ws.db

    def caller(request: gr.Request | None) -> Principal:
        """The principal of the event's request (Gradio's user name comes from app/server.py's session)."""
        return policy.principal_of_username(getattr(request, "username", None))

    def owner(request: gr.Request | None) -> str | None:
        return policy.owner_of(getattr(request, "username", None))

    def reading(request: gr.Request | None, action: str) -> None:
        caller(request).require("read", action)

    # -- the API (gradio_client) --
    @_user_errors
    def search_api(query: str, languages: list[str] | None = None, sources: list[str] | None = None,
                   k: int = 10, highlight: bool = True, collections: list[str] | None = None,
                   request: gr.Request = None) -> list[dict]:
        """Search in any language, over the given collections (none: all). Returns ranked passages with source,
        page, language, score, collection, text and (highlight=True) the span of the sentence closest to the query."""
        return [h.to_json() for h in ws.search(query, collections, k=10 if k in (None, "") else k, languages=languages,
                                               sources=sources, highlight=bool(highlight), principal=caller(request))]

    @_user_errors
    def ask_api(question: str, answer_language: str = "auto", languages: list[str] | None = None, k: int = 0,
                history: list[dict] | None = None, collections: list[str] | None = None,
                request: gr.Request = None) -> dict:
        """Answer a question with numbered citations; ``history``: the conversation so far as
        [{"role": "user"|"assistant", "content": …}] (a follow-up is resolved against it). Streams: every update
        carries the answer so far; the last one also has citations, language, backend, the extractive flag and
        ``resolved_question`` (what a follow-up was taken to ask)."""
        principal = caller(request)
        principal.require("read", "ask")
        text = ""
        for part in ws.ask_stream(question, collections=collections, answer_language=answer_language,
                                  languages=languages, k=k or None, history=history, principal=principal):
            if isinstance(part, str):
                text += part
                yield {"answer": text, "done": False}
            else:
                yield {**part.to_json(), "done": True}

    @_user_errors
    def ingest_api(files: list[str] | None, request: gr.Request = None) -> dict:
        principal = caller(request)
        return ws.service().ingest([(Path(f).name, f) for f in (files or [])], principal=principal).to_json()

    # -- Search tab --
    @_user_errors
    def do_search(query, collections, languages, sources, k, request: gr.Request):
        return render_hits(search_api.__wrapped__(query, languages, sources, k, True, collections, request=request))

    # -- Ask tab: conversations --
    @_user_errors
    def load_conversations(request: gr.Request):
        """On page load: the caller's conversations, the most recent one open (reload keeps the conversation)."""
        reading(request, "ask")
        who = owner(request)
        choices = conversation_choices(db, who)
        conv = choices[0][1] if choices else None
        messages = chat_messages(db.messages(who, conv)) if conv else []
        return gr.update(choices=choices, value=conv), conv, messages

    def new_chat():
        return None, [], gr.update(value=None), ""

    @_user_errors
    def open_conversation(conv, request: gr.Request):
        who = owner(request)
        if not conv or who is None:
            return gr.skip(), gr.skip()
        return conv, chat_messages(db.messages(who, conv))

    @_user_errors
    def chat(message, conv, collections, answer_language, languages, request: gr.Request):
        reading(request, "ask")
        if not (message or "").strip():
            raise gr.Error("Ask a question first.")
        who = owner(request)
        extractive = ws.service().llm_backend() == "extractive"
        for conv, shown in ask_in_conversation(ws, who, conv, message, collections=collections,
                                               answer_language=answer_language, languages=languages,
                                               principal=caller(request)):
            yield shown, "", conv, gr.skip(), gr.update(visible=extractive)
        yield gr.skip(), gr.skip(), gr.skip(), gr.update(choices=conversation_choices(db, who), value=conv), gr.skip()

    @_user_errors
    def rename_conversation(conv, title, request: gr.Request):
        who = owner(request)
        if not conv or who is None:
            raise gr.Error("Open a conversation first.")
        db.rename_conversation(who, conv, title)
        return gr.update(choices=conversation_choices(db, who), value=conv), ""

    @_user_errors
    def delete_conversation(conv, request: gr.Request):
        who = owner(request)
        if not conv or who is None:
            raise gr.Error("Open a conversation first.")
        db.delete_conversation(who, conv)
        return gr.update(choices=conversation_choices(db, who), value=None), None, [], gr.update(visible=False)

    @_user_errors
    def open_citation(cite_request, request: gr.Request):
        from .viewer_panel import panel_for_citation

        reading(request, "open documents")
        c = citation_of(db, owner(request), cite_request)
        state, body = panel_for_citation(ws, c, caller(request))
        return gr.update(visible=True), body, state

    @_user_errors
    def move_viewer(state, step, request: gr.Request):
        from .viewer_panel import panel_step

        reading(request, "open documents")
        if not state:
            return gr.skip(), gr.skip()
        state, body = panel_step(ws, state, step, caller(request))
        return body, state

    # -- Documents tab --
    def chosen_collection(selected: str | None, principal: Principal) -> tuple[str | None, list[str]]:
        """The collection to show (the one selected, else the default, else the first) among those the caller may
        read, and those."""
        names = ws.readable_collections(principal)
        chosen = selected if selected in names else ws.default if ws.default in names else (names or [None])[0]
        return chosen, names

    def collection_updates(selected: str | None, principal: Principal):
        chosen, names = chosen_collection(selected, principal)
        return (gr.update(choices=names, value=chosen), gr.update(choices=names), gr.update(choices=names))

    @_user_errors
    def refresh_documents(collection, request: gr.Request):
        principal = caller(request)
        principal.require("read", "list documents")
        collection, _ = chosen_collection(collection, principal)
        if collection is None:  # nothing this caller may read yet
            return ([], gr.update(choices=[], value=[]), "No collection you may read yet: create one below.", [],
                    gr.update(choices=[]), gr.update(choices=[]), gr.update(choices=[]), gr.update(visible=False),
                    *collection_updates(None, principal))
        svc = ws.service(collection)
        docs = svc.documents(principal=principal)
        stats = svc.stats(principal=principal)
        langs, sources = svc.facets(principal=principal)
        langs = language_filter_options(langs)
        return (_doc_rows(docs), gr.update(choices=_doc_choices(docs), value=[]), _stats_md(stats),
                _stats_rows(stats), gr.update(choices=langs), gr.update(choices=sources), gr.update(choices=langs),
                gr.update(visible=False), *collection_updates(collection, principal))

    def ingest_ui(collection, files, folder, on_conflict, request: gr.Request):
        principal = caller(request)
        try:
            ws.authorizer.require(principal, collection or ws.default, "write", "add documents")
        except LusiferRagError as e:
            raise gr.Error(str(e)) from None
        paths = [p for p in (files or []) + (folder or []) if p]
        if not paths:
            raise gr.Error("Choose files or a folder first.")
        svc = ws.service(collection or ws.default)
        updates: queue.Queue = queue.Queue()
        outcome: dict = {}
        state = {"files_done": 0, "files_total": len(paths), "file": Path(paths[0]).name, "page": 0, "pages": 0,
                 "chunked": 0, "embedded": 0}

        def on_page(source, done, total):
            state.update(file=source, page=done, pages=total)

        def work():
            try:
                ing = svc.ingestor()
                ing.on_page = on_page
                outcome["live"] = ing
                outcome["report"] = svc.ingest([(Path(p).name, p) for p in paths], updates.put,
                                               on_conflict=on_conflict or "replace", principal=principal)
            except BaseException as e:  # reported to the user below
                outcome["error"] = e
            finally:
                updates.put(None)

        # the pipeline reports from its writer thread; this generator polls and redraws the bar twice a second
        threading.Thread(target=work, name="lusifer-ui-ingest", daemon=True).start()
        t0, log = time.monotonic(), []
        yield progress_html(state, 0.0), "", gr.update(visible=False), gr.skip()
        while True:
            try:
                u = updates.get(timeout=0.5)
            except queue.Empty:
                u = ""
            if u is None:
                break
            live = getattr(outcome.get("live"), "live", None) or {}
            state.update(chunked=live.get("chunked", 0), embedded=live.get("embedded", 0))
            if u:
                r = u.result
                state["files_done"] = u.done
                if r.status in ("ingested", "replaced"):
                    state["chunks_done"] = state.get("chunks_done", 0) + r.chunks
                detail = r.message if r.status == "duplicate" else r.reason
                log.append(f"- `{_md_code(r.source)}`: **{r.status}**" + (f" — {_md_text(detail)}" if detail else ""))
            yield progress_html(state, time.monotonic() - t0), "\n".join(log[-50:]), gr.skip(), gr.skip()
        if "error" in outcome:
            e = outcome["error"]
            raise gr.Error(str(e) if isinstance(e, LusiferRagError) else f"ingestion failed: {type(e).__name__}")
        view = ReportView.of(outcome["report"])
        state["files_done"] = state["files_total"]
        done = "**Cancelled.**" if outcome["report"].by_status("cancelled") else "**Done.**"
        status = f"{done} {_md_text(view.summary)}" + (
            "\n\n**Some files failed** — see the table below." if view.failed else "")
        yield (progress_html(state, time.monotonic() - t0), status + "\n\n" + "\n".join(log[-50:]),
               gr.update(value=view.failed, visible=bool(view.failed)), view.json)

    @_user_errors
    def cancel_ingest(collection, request: gr.Request):
        if ws.service(collection or ws.default).cancel_ingest(principal=caller(request)):
            return "**Cancelling…** files not finished are listed as cancelled; ingest them again to resume."
        return gr.skip()

    @_user_errors
    def create_collection(name, request: gr.Request):
        created = ws.create_collection(name, principal=caller(request))
        return f"Created collection `{_md_code(created)}`.", *collection_updates(created, caller(request))

    @_user_errors
    def ask_drop_collection(collection, request: gr.Request):
        principal = caller(request)
        ws.authorizer.require(principal, collection, "admin", "delete collections")
        svc = ws.service(collection)
        n = len(svc.documents(principal=principal))
        return gr.update(visible=True), (f"Delete collection `{_md_code(collection)}` and its **{n}** document(s)? "
                                          "This cannot be undone.")

    @_user_errors
    def drop_collection(collection, request: gr.Request):
        n = ws.drop_collection(collection, principal=caller(request))
        return f"Deleted collection `{_md_code(collection)}` ({n} documents).", gr.update(visible=False), \
            *collection_updates(ws.default, caller(request))

    @_user_errors
    def ask_delete(collection, doc_ids, request: gr.Request):
        principal = caller(request)
        ws.authorizer.require(principal, collection, "write", "delete documents")
        if not doc_ids:
            raise gr.Error("Choose the documents to delete first.")
        names = {d["doc_id"]: d["source"] for d in ws.service(collection).documents(principal=principal)}
        listed = ", ".join(f"`{_md_code(names.get(i, i))}`" for i in doc_ids[:10]) + (" …" if len(doc_ids) > 10 else "")
        return gr.update(visible=True), f"Delete **{len(doc_ids)}** document(s): {listed}? This cannot be undone."

    @_user_errors
    def delete_docs(collection, doc_ids, request: gr.Request):
        out = ws.service(collection).delete(list(doc_ids or []), principal=caller(request))
        names = ", ".join(f"`{_md_code(d['source'])}`" for d in out["deleted"][:10])
        return f"Deleted {len(out['deleted'])} document(s) ({out['chunks']} chunks): {names}", gr.update(visible=False)

    # -- Settings tab --
    @_user_errors
    def start_reindex(collection, spec, drop_old, request: gr.Request):
        return ws.service(collection).start_reindex(spec, bool(drop_old), principal=caller(request))

    @_user_errors
    def reindex_status(collection, request: gr.Request):
        return _stats_md(ws.service(collection).stats(principal=caller(request)))

    @_user_errors
    def load_settings(request: gr.Request):
        from .settings_panel import settings_form

        return settings_form(ws, caller(request))

    @_user_errors
    def save_settings(backend, base_url, model, api_key, clear_key, top_k, answer_language, request: gr.Request):
        from .settings_panel import settings_form

        ws.update_settings({"llm_backend": backend, "llm_base_url": base_url, "llm_model": model,
                            "llm_api_key": api_key, "top_k": top_k, "answer_language": answer_language},
                           clear_key=bool(clear_key), principal=caller(request))
        return ("Saved; answers use it from now on.", *settings_form(ws, caller(request)))

    @_user_errors
    def test_llm(backend, base_url, model, api_key, request: gr.Request):
        caller(request).require_site_admin("test the language model connection")
        return ws.test_llm({"llm_backend": backend, "llm_base_url": base_url, "llm_model": model,
                            "llm_api_key": api_key})

    def signed_in_html(request: gr.Request):
        p = caller(request)
        if p.name is None:
            return ""
        return (f"<span class='lr-logout'>{html.escape(p.name)} · "
                "<a href='/logout' id='logout'>Sign out</a></span>")

    # -- Settings tab: access (API keys, grants) --
    from . import access_panel

    @_user_errors
    def load_keys(request: gr.Request):
        return access_panel.key_rows(ws, caller(request))

    @_user_errors
    def create_api_key(name, scopes, expires_days, request: gr.Request):
        key = access_panel.create_key(ws, caller(request), name, scopes, expires_days)
        return gr.update(value=key, visible=True), access_panel.key_rows(ws, caller(request))

    @_user_errors
    def revoke_api_key(prefix, request: gr.Request):
        return access_panel.revoke_key(ws, caller(request), prefix), access_panel.key_rows(ws, caller(request))

    @_user_errors
    def show_grants(collection, request: gr.Request):
        return access_panel.grants_md(ws, caller(request), collection)

    @_user_errors
    def change_grant(collection, who, level, request: gr.Request):
        return access_panel.set_grant(ws, caller(request), collection, who, level)

    # -- layout --
    extractive_now = ws.service().llm_backend() == "extractive"
    with gr.Blocks(title="lusifer-rag") as demo:
        with gr.Row():
            gr.Markdown("# lusifer-rag\nSearch and ask across your documents in any language.")
            signed_in = gr.HTML("", elem_id="signed-in")  # who is signed in, and the sign-out link (on load)
        problem = ws.service().problem()
        gr.Markdown(f"**This collection cannot be used:** {problem}" if problem else "", visible=bool(problem),
                    elem_id="problem")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    query = gr.Textbox(label="Query", placeholder="Search in any language…", scale=4,
                                       elem_id="search-query")
                    search_btn = gr.Button("Search", variant="primary", scale=1, elem_id="search-btn")
                with gr.Row():
                    s_colls = gr.Dropdown(label="Collections (none: all)", multiselect=True, choices=[],
                                          elem_id="search-collections")
                    s_langs = gr.Dropdown(label="Languages", multiselect=True, choices=[], allow_custom_value=True)
                    s_sources = gr.Dropdown(label="Documents", multiselect=True, choices=[], allow_custom_value=True)
                    s_k = gr.Slider(1, 50, value=10, step=1, label="Results")
                results = gr.HTML(elem_id="search-results")
            with gr.Tab("Ask", id="ask"):
                conv_state = gr.State(None)
                viewer_state = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=1, min_width=220):
                        new_btn = gr.Button("New chat", elem_id="new-chat")
                        conv_list = gr.Radio(label="Conversations", choices=[], elem_id="conversations")
                        with gr.Accordion("Rename or delete", open=False):
                            rename_box = gr.Textbox(label="New name", elem_id="rename-box")
                            rename_btn = gr.Button("Rename", size="sm", elem_id="rename-btn")
                            conv_del_btn = gr.Button("Delete this conversation", size="sm", variant="stop",
                                                     elem_id="conv-delete-btn")
                    with gr.Column(scale=3):
                        # render_markdown=False: messages are our own inert HTML (app/render.py)
                        chatbot = gr.Chatbot(label="Answers with citations (click a [n] to open its source)",
                                             height=480, elem_id="chat", buttons=["copy"], render_markdown=False)
                        with gr.Row():
                            question = gr.Textbox(label="Question", placeholder="Ask in any language…", scale=4,
                                                  elem_id="ask-question")
                            ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask-btn")
                        with gr.Row():
                            answer_lang = gr.Dropdown(label="Answer language", choices=language_choices(),
                                                      value=ws.settings.answer_language or "auto", elem_id="answer-lang")
                            a_colls = gr.Dropdown(label="Collections (none: all)", multiselect=True, choices=[],
                                                  elem_id="ask-collections")
                            a_langs = gr.Dropdown(label="Only documents in", multiselect=True, choices=[],
                                                  allow_custom_value=True)
                        note = gr.Markdown("**Note:** " + EXTRACTIVE_NOTE, elem_id="extractive-note",
                                           visible=extractive_now)
                    with gr.Column(scale=2, visible=False, elem_id="viewer") as viewer_col:
                        viewer_html = gr.HTML(elem_id="viewer-body")
                        with gr.Row():
                            prev_btn = gr.Button("◀ Previous", size="sm", elem_id="viewer-prev")
                            next_btn = gr.Button("Next ▶", size="sm", elem_id="viewer-next")
                            close_btn = gr.Button("Close", size="sm", elem_id="viewer-close")
                cite_request = gr.Textbox(elem_id="cite-request", elem_classes="lr-hidden", show_label=False)
                cite_open = gr.Button("open", elem_id="cite-open", elem_classes="lr-hidden")
            with gr.Tab("Documents", id="documents"):
                with gr.Row():
                    d_coll = gr.Dropdown(label="Collection", choices=[], value=None, scale=2,
                                         elem_id="doc-collection", allow_custom_value=True)  # choices: per caller, on load
                    new_coll = gr.Textbox(label="New collection", placeholder="e.g. hr-policies", scale=2,
                                          elem_id="new-collection")
                    create_btn = gr.Button("Create", scale=1, elem_id="create-collection")
                    drop_btn = gr.Button("Delete collection…", variant="stop", scale=1, elem_id="drop-collection")
                with gr.Row(visible=False, elem_id="drop-confirm") as drop_row:
                    drop_md = gr.Markdown()
                    drop_yes = gr.Button("Yes, delete the collection", variant="stop", elem_id="drop-confirm-btn")
                    drop_no = gr.Button("Cancel")
                coll_status = gr.Markdown(elem_id="collection-status")
                gr.Markdown(f"Upload files (PDF, DOCX, HTML, Markdown, text) or a whole folder into the collection "
                            f"above; at most {opts.max_upload_mb} MB per file.")
                with gr.Row():
                    up_files = gr.File(label="Files", file_count="multiple", type="filepath", elem_id="upload-files")
                    up_folder = gr.File(label="Folder", file_count="directory", type="filepath")
                with gr.Row():
                    on_conflict = gr.Radio([("Replace it (a new version)", "replace"),
                                            ("Keep both (the new one gets a numbered name)", "keep")],
                                           value="replace", label="When a document with the same name exists",
                                           elem_id="on-conflict", scale=3)
                    ingest_btn = gr.Button("Ingest", variant="primary", elem_id="ingest-btn", scale=1)
                    ingest_cancel = gr.Button("Cancel ingest", variant="stop", elem_id="ingest-cancel", scale=1)
                ingest_progress = gr.HTML(elem_id="ingest-progress")
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
                    refresh_btn = gr.Button("Refresh", scale=1, elem_id="refresh-btn")
                with gr.Row(visible=False, elem_id="delete-confirm") as confirm_row:
                    confirm_md = gr.Markdown()
                    confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="delete-confirm-btn")
                    cancel_btn = gr.Button("Cancel")
                del_status = gr.Markdown(elem_id="delete-status")
                gr.Markdown("### Collection")
                stats_md = gr.Markdown()
                stats_table = gr.Dataframe(headers=["language", "chunks"], interactive=False, label="Chunks per language")
            with gr.Tab("Settings", id="settings"):
                gr.Markdown("### Answers\nAn admin can connect a language model (any OpenAI-compatible server: vLLM, "
                            "Ollama, TGI, llama.cpp) and set defaults; they take effect at once. The key is kept on "
                            "the server and never shown again.")
                with gr.Row():
                    st_backend = gr.Dropdown(label="Backend", choices=["extractive", "openai", "transformers"],
                                             elem_id="set-backend")
                    st_url = gr.Textbox(label="Server URL (OpenAI-compatible)", placeholder="http://localhost:8000/v1",
                                        elem_id="set-url")
                    st_model = gr.Textbox(label="Model", elem_id="set-model")
                with gr.Row():
                    st_key = gr.Textbox(label="API key", type="password", elem_id="set-key")
                    st_clear = gr.Checkbox(label="Remove the stored key", value=False)
                    st_topk = gr.Slider(1, 20, step=1, label="Passages per answer (top-k)", elem_id="set-topk")
                    st_lang = gr.Dropdown(label="Default answer language", choices=language_choices(),
                                          elem_id="set-lang")
                with gr.Row():
                    st_save = gr.Button("Save", variant="primary", elem_id="set-save")
                    st_test = gr.Button("Test connection", elem_id="set-test")
                st_status = gr.Markdown(elem_id="set-status")
                st_info = gr.JSON(label="What this server runs with", elem_id="settings-json")
                gr.Markdown("### Re-index with another embedder\nThe stored chunks of the collection chosen in "
                            "Documents are embedded again into a new collection while searches keep using the "
                            "current one; the app switches when it is done.")
                with gr.Row():
                    reindex_spec = gr.Textbox(label="Embedder", placeholder="lusifer:/models/lusifer, e5-small, hf:…",
                                              scale=3, elem_id="reindex-spec")
                    reindex_drop = gr.Checkbox(label="Delete the old collection after the switch", value=False)
                    reindex_btn = gr.Button("Re-index", scale=1, elem_id="reindex-btn")
                    reindex_refresh = gr.Button("Status", scale=1)
                reindex_md = gr.Markdown(elem_id="reindex-status")
                with gr.Accordion("Access: your API keys, and who may use the collection", open=False,
                                  elem_id="access-panel"):
                    gr.Markdown("API keys let scripts, the command line and LangChain act as you on the HTTP API "
                                "(`Authorization: Bearer <key>`). A new key is shown once.")
                    keys_table = gr.Dataframe(headers=access_panel.KEY_COLUMNS, interactive=False, elem_id="keys-table")
                    with gr.Row():
                        key_name = gr.Textbox(label="Key name", placeholder="e.g. nightly-ingest", scale=2)
                        key_scopes = gr.CheckboxGroup(["search", "ingest", "admin"], value=["search"], label="Scopes",
                                                      scale=2)
                        key_days = gr.Number(label="Expires after (days; empty: never)", value=None, scale=1)
                        key_create = gr.Button("Create key", scale=1, elem_id="key-create")
                    new_key = gr.Textbox(label="Your new key (copy it now: it is not shown again)", visible=False,
                                         interactive=False, elem_id="new-key")
                    with gr.Row():
                        key_prefix = gr.Textbox(label="Key prefix to revoke", scale=3)
                        key_revoke = gr.Button("Revoke", scale=1, elem_id="key-revoke")
                    key_status = gr.Markdown()
                    gr.Markdown("**Who may use the collection chosen in Documents** (its owner and admins change it)")
                    grants_view = gr.Markdown(elem_id="grants")
                    with gr.Row():
                        grant_who = gr.Textbox(label="Who", placeholder="user:alice, group:hr or public", scale=3)
                        grant_level = gr.Dropdown(["read", "write", "admin", "none"], value="read", label="Level",
                                                  scale=1)
                        grant_btn = gr.Button("Set", scale=1, elem_id="grant-set")
                        grants_btn = gr.Button("Show", scale=1)

        # hidden components that carry the /ingest API endpoint
        api_files = gr.File(file_count="multiple", type="filepath", visible=False)
        api_report = gr.JSON(visible=False)
        api_trigger = gr.Button(visible=False)

        # -- events --
        refresh_outputs = [docs_table, del_choice, stats_md, stats_table, s_langs, s_sources, a_langs, confirm_row,
                           d_coll, s_colls, a_colls]
        private = {"api_visibility": "private"}
        query_events = {"concurrency_id": QUERY_GROUP, "concurrency_limit": opts.search_concurrency}
        docs_events = {"concurrency_id": DOCS_GROUP, "concurrency_limit": 2, **private}
        write_events = {"concurrency_id": INGEST_GROUP, "concurrency_limit": 1, **private}
        gr.on([search_btn.click, query.submit], do_search, [query, s_colls, s_langs, s_sources, s_k], results,
              **private, **query_events)
        gr.on([ask_btn.click, question.submit], chat, [question, conv_state, a_colls, answer_lang, a_langs],
              [chatbot, question, conv_state, conv_list, note], **private, **query_events)
        new_btn.click(new_chat, None, [conv_state, chatbot, conv_list, question], **docs_events)
        conv_list.input(open_conversation, conv_list, [conv_state, chatbot], **docs_events)
        rename_btn.click(rename_conversation, [conv_state, rename_box], [conv_list, rename_box], **docs_events)
        conv_del_btn.click(delete_conversation, conv_state, [conv_list, conv_state, chatbot, viewer_col],
                           **docs_events)
        cite_open.click(open_citation, cite_request, [viewer_col, viewer_html, viewer_state], **docs_events)
        prev_btn.click(move_viewer, [viewer_state, gr.State(-1)], [viewer_html, viewer_state], **docs_events)
        next_btn.click(move_viewer, [viewer_state, gr.State(1)], [viewer_html, viewer_state], **docs_events)
        close_btn.click(lambda: gr.update(visible=False), None, viewer_col, **docs_events)

        ingest_event = ingest_btn.click(ingest_ui, [d_coll, up_files, up_folder, on_conflict],
                                        [ingest_progress, ingest_status, ingest_errors, ingest_json], **write_events)
        ingest_event.then(refresh_documents, d_coll, refresh_outputs, **docs_events)
        # not in the ingest group (it holds the running ingest): the cancel must not queue behind it
        ingest_cancel.click(cancel_ingest, d_coll, ingest_status, **docs_events)
        d_coll.input(refresh_documents, d_coll, refresh_outputs, **docs_events)
        create_btn.click(create_collection, new_coll, [coll_status, d_coll, s_colls, a_colls], **write_events).then(
            refresh_documents, d_coll, refresh_outputs, **docs_events)
        drop_btn.click(ask_drop_collection, d_coll, [drop_row, drop_md], **docs_events)
        drop_no.click(lambda: gr.update(visible=False), None, drop_row, **docs_events)
        drop_yes.click(drop_collection, d_coll, [coll_status, drop_row, d_coll, s_colls, a_colls],
                       **write_events).then(refresh_documents, d_coll, refresh_outputs, **docs_events)
        del_btn.click(ask_delete, [d_coll, del_choice], [confirm_row, confirm_md], **docs_events)
        cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row, **docs_events)
        confirm_btn.click(delete_docs, [d_coll, del_choice], [del_status, confirm_row], **write_events).then(
            refresh_documents, d_coll, refresh_outputs, **docs_events)
        refresh_btn.click(refresh_documents, d_coll, refresh_outputs, **docs_events)
        demo.load(refresh_documents, d_coll, refresh_outputs, **docs_events)
        demo.load(load_conversations, None, [conv_list, conv_state, chatbot], **docs_events)

        demo.load(load_keys, None, keys_table, **docs_events)
        demo.load(signed_in_html, None, signed_in, **docs_events)
        key_create.click(create_api_key, [key_name, key_scopes, key_days], [new_key, keys_table], **docs_events)
        key_revoke.click(revoke_api_key, key_prefix, [key_status, keys_table], **docs_events)
        grants_btn.click(show_grants, d_coll, grants_view, **docs_events)
        grant_btn.click(change_grant, [d_coll, grant_who, grant_level], grants_view, **write_events)

        settings_outputs = [st_backend, st_url, st_model, st_key, st_clear, st_topk, st_lang, st_info]
        demo.load(load_settings, None, settings_outputs, **docs_events)
        st_save.click(save_settings, [st_backend, st_url, st_model, st_key, st_clear, st_topk, st_lang],
                      [st_status, *settings_outputs], **docs_events)
        st_test.click(test_llm, [st_backend, st_url, st_model, st_key], st_status, **docs_events)
        reindex_btn.click(start_reindex, [d_coll, reindex_spec, reindex_drop], reindex_md, **docs_events)
        reindex_refresh.click(reindex_status, d_coll, reindex_md, **docs_events)

        gr.api(search_api, api_name="search", **query_events)
        gr.api(ask_api, api_name="ask", **query_events)
        api_trigger.click(ingest_api, api_files, api_report, api_name="ingest", concurrency_id=INGEST_GROUP,
                          concurrency_limit=1)
    demo.queue(max_size=256, default_concurrency_limit=2)
    return demo


def launch(demo: gr.Blocks, workspace: Workspace, host: str = "127.0.0.1", port: int = 7860, *,
           block: bool = True, quiet: bool = False):
    """Serve the app (app/server.py) on ``host`` (127.0.0.1 unless told otherwise). ``block=False``: in a background
    thread; returns the running AppServer (``close()`` stops it)."""
    from lusifer_rag.store.lock import announce_serving

    from .server import AppServer, create_app

    def started(bound_host: str, bound_port: int):  # the CLI finds the server through the store's lock record
        return announce_serving(workspace.store.location, bound_host, bound_port)

    server = AppServer(create_app(workspace, demo, host=host, port=port), host, port, quiet=quiet,
                       on_started=started)
    if block:
        server.serve_forever()
        return server
    return server.start()

"""The Ask tab's source panel: a citation opened at its place in the document.

The panel's state is {collection, doc_id, chunk_id, page, citation}; its body is HTML built by app/viewer.py (the
page image with the passage highlighted for a PDF, the passage in its surrounding text for the other formats),
with links only to our own routes, which check the caller's access again when the browser fetches them.
"""

from __future__ import annotations

import html

from lusifer_rag.errors import LusiferRagError

from . import viewer
from .access import Principal
from .render import page_label, passage_html


def _fallback(c: dict, why: str) -> str:
    where = " · ".join(x for x in (c.get("source", ""), page_label(c.get("page"), c.get("page_end")),
                                   c.get("language", "")) if x)
    return (f"<div class='lr-viewer' data-kind='passage'><div class='lr-meta'>{html.escape(where)}</div>"
            f"<div class='lr-meta lr-viewer-note'>{html.escape(why)}</div>"
            f"<div class='lr-passage'><mark>{passage_html(c.get('text', ''))}</mark></div></div>")


def panel_for_citation(ws, c: dict, principal: Principal) -> tuple[dict, str]:
    """(state, body) of the panel opened on saved citation ``c`` (app/ui_chat.py's citation_record)."""
    state = {"collection": c.get("collection") or ws.default, "doc_id": c.get("doc_id", ""),
             "chunk_id": c.get("chunk_id", ""), "page": None, "citation": c}
    return state, render(ws, state, principal)


def panel_step(ws, state: dict, step: int, principal: Principal) -> tuple[dict, str]:
    """The next (+1) or previous (-1) page of a PDF, or passage of another document."""
    state = dict(state)
    try:
        v = _view(ws, state, principal)
    except LusiferRagError:
        return state, render(ws, state, principal)
    target = v.next if step > 0 else v.prev
    if target is not None:
        if v.kind == "pdf":
            state["page"] = target
        else:
            state["chunk_id"], state["page"] = target, None
    return state, render(ws, state, principal)


def _view(ws, state: dict, principal: Principal) -> viewer.SourceView:
    return viewer.view(ws.service(state["collection"]), state["doc_id"], state.get("chunk_id") or None,
                       state.get("page"), principal=principal)


def render(ws, state: dict, principal: Principal) -> str:
    try:
        return viewer.viewer_html(_view(ws, state, principal))
    except LusiferRagError as e:  # the document changed or is gone: show what the answer cited
        return _fallback(state.get("citation") or {}, str(e))

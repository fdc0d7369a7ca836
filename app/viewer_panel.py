"""The Ask tab's source panel: a citation opened at its place in the document.

The panel's state is {collection, doc_id, chunk_id, page}; its body is HTML built by app/viewer.py (the page image
with the passage highlighted for a PDF, the passage in its surrounding text for the other formats), with links
only to our own routes."""

from __future__ import annotations

import html

from .render import page_label, passage_html


def _fallback(c: dict) -> str:
    where = " · ".join(x for x in (c.get("source", ""), page_label(c.get("page"), c.get("page_end")),
                                   c.get("language", "")) if x)
    return (f"<div class='lr-viewer'><div class='lr-meta'>{html.escape(where)}</div>"
            f"<div class='lr-passage'><mark>{passage_html(c.get('text', ''))}</mark></div></div>")


def panel_for_citation(ws, c: dict) -> tuple[dict, str]:
    """(state, body) of the panel opened on saved citation ``c`` (app/ui_chat.py's citation_record)."""
    state = {"collection": c.get("collection") or ws.default, "doc_id": c.get("doc_id", ""),
             "chunk_id": c.get("chunk_id", ""), "page": c.get("page"), "citation": c}
    return state, render(ws, state)


def panel_step(ws, state: dict, step: int) -> tuple[dict, str]:
    """The next (+1) or previous (-1) page or passage."""
    state = dict(state)
    try:
        from . import viewer
    except ImportError:
        return state, render(ws, state)
    view = viewer.view(ws.service(state["collection"]), state["doc_id"], state.get("chunk_id"), state.get("page"))
    target = view.get("next" if step > 0 else "prev")
    if target is None:
        return state, render(ws, state)
    if view["kind"] == "pdf":
        state["page"] = target
    else:
        state["chunk_id"], state["page"] = target, None
    return state, render(ws, state)


def render(ws, state: dict) -> str:
    try:
        from . import viewer

        view = viewer.view(ws.service(state["collection"]), state["doc_id"], state.get("chunk_id"), state.get("page"))
    except Exception:  # noqa: BLE001 - the document changed or is gone: show what the answer cited
        return _fallback(state.get("citation") or {})
    return viewer.viewer_html(view)

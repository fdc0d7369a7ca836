"""The Ask tab's conversations: saved in the app database (app/db.py) per owner, resolved follow-ups, citations
that open the source viewer. Plain functions; app/ui.py binds them to Gradio events."""

from __future__ import annotations

import json
from typing import Iterator, Sequence

from lusifer_rag.errors import RagError

from .render import answer_body_html, citation_html, plain_html

MAX_TITLE = 80


def citation_record(c) -> dict:
    """What a saved answer keeps of each citation (enough to open its source and show its passage)."""
    ch = c.chunk
    return {"n": c.number, "chunk_id": ch.id, "doc_id": ch.doc_id, "collection": ch.collection, "source": ch.source,
            "page": ch.page, "page_end": ch.page_end, "language": ch.language, "text": ch.text}


def answer_meta(answer) -> dict:
    return {"extractive": answer.extractive, "language": answer.language, "backend": answer.backend,
            "no_context": answer.no_context, "resolved_question": answer.resolved_question,
            "citations": [citation_record(c) for c in answer.citations]}


def history_of(messages: Sequence[dict]) -> list[dict]:
    """A saved conversation in OpenAI chat format (what the answerer resolves follow-ups against)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def chat_messages(messages: Sequence[dict]) -> list[dict]:
    """Saved messages as the Chatbot shows them: inert HTML, each answer followed by its collapsible citations."""
    out: list[dict] = []
    for m in messages:
        if m["role"] == "user":
            out.append({"role": "user", "content": plain_html(m["content"])})
            continue
        meta = m.get("meta") or {}
        out.append({"role": "assistant", "content": answer_body_html(
            m["content"], meta.get("extractive", True), meta.get("resolved_question", ""), m.get("id"))})
        for c in meta.get("citations") or []:
            title, body = citation_html(c["n"], _Chunk(c))
            out.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
    return out


class _Chunk:
    """A saved citation read like a RetrievedChunk by the renderers."""

    def __init__(self, c: dict):
        self.source, self.page, self.page_end = c.get("source", ""), c.get("page"), c.get("page_end")
        self.language, self.text = c.get("language", ""), c.get("text", "")


def conversation_choices(db, owner: str | None) -> list[tuple[str, str]]:
    if owner is None:
        return []
    return [(c["title"], c["id"]) for c in db.conversations(owner)]


def title_of(question: str) -> str:
    t = " ".join(question.split())
    return t if len(t) <= MAX_TITLE else t[: MAX_TITLE - 1] + "…"


def ask_in_conversation(workspace, owner: str | None, conv_id: str | None, question: str, *,
                        collections: Sequence[str] | None, answer_language: str | None,
                        languages: Sequence[str] | None, k: int | None = None, principal) -> Iterator[tuple]:
    """Ask ``question`` in conversation ``conv_id`` (a new one when None). Yields (conv_id, chat messages) as the
    answer streams; the question and the answer are saved (when the caller owns records)."""
    from .render import llm_answer_html

    db = workspace.db
    question = (question or "").strip()
    if not question:
        raise RagError("ask a question first")
    saved = db.messages(owner, conv_id) if (owner and conv_id) else []
    history = history_of(saved)
    if owner and not conv_id:
        conv_id = db.create_conversation(owner, title_of(question))
    shown = chat_messages(saved) + [{"role": "user", "content": plain_html(question)},
                                    {"role": "assistant", "content": ""}]
    yield conv_id, shown
    text, answer = "", None
    for part in workspace.ask_stream(question, collections=collections, answer_language=answer_language,
                                     languages=languages, k=k, history=history, principal=principal):
        if isinstance(part, str):
            text += part
            shown[-1]["content"] = llm_answer_html(text)
            yield conv_id, shown
        else:
            answer = part
    if owner and conv_id:
        db.add_message(owner, conv_id, "user", question)
        db.add_message(owner, conv_id, "assistant", answer.text, answer_meta(answer))
        yield conv_id, chat_messages(db.messages(owner, conv_id))
    else:  # nothing saved: render the answer in place, citations without a saved message to refer to
        yield conv_id, shown[:-1] + chat_messages([{"role": "assistant", "content": answer.text, "id": None,
                                                     "meta": answer_meta(answer)}])


def citation_of(db, owner: str | None, request: str) -> dict:
    """The saved citation a click asks for: ``request`` is JSON {"m": message id, "n": number}."""
    try:
        req = json.loads(request or "{}")
        message_id, n = int(req["m"]), int(req["n"])
    except (ValueError, KeyError, TypeError):
        raise RagError("that citation cannot be opened (ask again to get a fresh answer)") from None
    if owner is None:
        raise RagError("citations of unsaved answers cannot be opened")
    meta = db.message(owner, message_id)["meta"]
    for c in meta.get("citations") or []:
        if int(c["n"]) == n:
            return c
    raise RagError(f"answer {message_id} has no source [{n}]")

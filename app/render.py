"""HTML of what the UI shows: document text is data, never markup.

Passages, citations and extractive answers are the documents' own text: escaped, with only our highlighting and
citation markers added. An LLM's answer may use Markdown for structure (lists, emphasis, code); it is rendered by
markdown-it with raw HTML off, then cleaned by nh3 with an allow-list that has no images, no ``style``, no
headings and no links: a link shows its text and its address, not followed, so no remote resource loads and no
style escapes its box. The chat component's own Markdown rendering is off (it would read Markdown in our text).
"""

from __future__ import annotations

import html
import re
from typing import Any

#: tags an LLM answer may keep (structure only); attributes: our classes
ANSWER_TAGS = {"p", "br", "ul", "ol", "li", "strong", "em", "b", "i", "code", "pre", "blockquote", "table", "thead",
               "tbody", "tr", "th", "td", "span", "sup", "mark", "hr", "del"}
ANSWER_ATTRIBUTES = {"span": {"class"}, "sup": {"class", "data-n"}, "code": {"class"}}
_CITE = re.compile(r"\[(\d{1,3})\]")


def page_label(page: Any, page_end: Any = None) -> str:
    if not page:
        return ""
    return f"p. {page}" + (f"–{page_end}" if page_end and page_end != page else "")


def _cite_markers(escaped: str, message_id: int | None = None) -> str:
    """``[n]`` in escaped text → our citation marker; with the saved answer's ``message_id`` a click opens the
    source (app/ui.py's script)."""
    # the answer's id and the number go in class names: the chat component's sanitiser keeps classes only
    m_class = f" lr-m-{int(message_id)}" if message_id is not None else ""
    return _CITE.sub(lambda m: f"<sup class='lr-cite{m_class} lr-n-{m.group(1)}'>[{m.group(1)}]</sup>", escaped)


def plain_html(text: str) -> str:
    """Any text (a question, a passage, an extractive answer) as inert HTML: escaped, line breaks kept."""
    return html.escape(text or "").replace("\n", "<br>")


def extractive_answer_html(text: str, message_id: int | None = None) -> str:
    """An answer quoted from the documents: escaped, with our citation markers."""
    return _cite_markers(plain_html(text), message_id)


def answer_body_html(text: str, extractive: bool, resolved_question: str = "", message_id: int | None = None) -> str:
    """A saved or finished answer: the question it answered when a follow-up was resolved, then the answer."""
    body = extractive_answer_html(text, message_id) if extractive else llm_answer_html(text, message_id)
    if resolved_question:
        body = f"<div class='lr-answering'>Answering: {html.escape(resolved_question)}</div>" + body
    return body


def _markdown():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")

    def link_open(renderer, tokens, idx, options, env):
        env.setdefault("hrefs", []).append(tokens[idx].attrGet("href") or "")
        return "<span class='lr-link'>"

    def link_close(renderer, tokens, idx, options, env):
        href = (env.get("hrefs") or [""]).pop()
        return "</span>" + (f" <span class='lr-url'>({html.escape(href)})</span>" if href else "")

    def image(renderer, tokens, idx, options, env):
        t = tokens[idx]
        alt = "".join(c.content for c in (t.children or [])) or t.content
        src = t.attrGet("src") or ""
        return f"<span class='lr-url'>[image: {html.escape(alt)}] ({html.escape(src)})</span>"

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    md.add_render_rule("image", image)
    return md


_MD = None


def llm_answer_html(text: str, message_id: int | None = None) -> str:
    """A generated answer: its Markdown structure kept, everything that could load, link or restyle removed."""
    import nh3

    global _MD
    if _MD is None:
        _MD = _markdown()
    rendered = _MD.render(text or "", {})
    clean = nh3.clean(rendered, tags=ANSWER_TAGS, attributes=ANSWER_ATTRIBUTES, url_schemes=set(),
                      strip_comments=True, link_rel=None)
    return _cite_markers(clean, message_id)


def passage_html(text: str, span: tuple[int, int] | list[int] | None = None) -> str:
    """A passage, escaped, with the [a, b) character span highlighted."""
    if not span:
        return html.escape(text)
    a, b = span
    return html.escape(text[:a]) + "<mark>" + html.escape(text[a:b]) + "</mark>" + html.escape(text[b:])


def render_hits(hits: list[dict]) -> str:
    if not hits:
        # empty: no passage reached the relevance floor, or nothing is searchable yet
        return ("<p class='lr-empty'>Nothing relevant found. Try other words or widen the filters; documents are "
                "added in the <b>Documents</b> tab.</p>")
    cards = []
    for h in hits:
        page = page_label(h.get("page"), h.get("page_end"))
        cards.append(
            f"<div class='lr-hit' data-rank='{int(h['rank'])}'><div class='lr-meta'><b>{int(h['rank'])}.</b> "
            f"<span class='lr-source'>{html.escape(h['source'])}</span>"
            + (f" · <span class='lr-page'>{page}</span>" if page else "")
            + f" · <span class='lr-lang'>{html.escape(h['language'])}</span>"
            f" · score <span class='lr-score'>{float(h['score']):.3f}</span></div>"
            f"<div class='lr-passage'>{passage_html(h['text'], h.get('highlight'))}</div></div>")
    return "\n".join(cards)


def citation_html(number: int, chunk) -> tuple[str, str]:
    """(title, body) of a cited passage: where it is from, and its text, both escaped."""
    where = " · ".join(x for x in (chunk.source, page_label(chunk.page, chunk.page_end), chunk.language) if x)
    return (f"[{int(number)}] {where}",
            f"<div class='lr-passage'>{passage_html(chunk.text)}</div><div class='lr-meta'>— {html.escape(where)}</div>")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


READ_SHARE = 0.2  # of a file's work, before its chunks are known: reading it (pages); the rest is embedding


def ingest_progress(state: dict, elapsed: float) -> tuple[float, str]:
    """(fraction done, one line) of an ingest. ``state``: files_done, files_total, file, page, pages (of the file
    being read), chunked and embedded (chunks so far, all files), chunks_done (chunks of the finished files). The
    file in hand counts by its pages read, then by its chunks embedded; time left from the embedding rate, counting
    files not read yet at the average chunks per file so far."""
    done, total = state.get("files_done", 0), max(1, state.get("files_total", 1))
    chunked, embedded = state.get("chunked", 0), state.get("embedded", 0)
    chunks_done = state.get("chunks_done", 0)
    cur_chunked, cur_embedded = max(0, chunked - chunks_done), max(0, embedded - chunks_done)
    if done >= total:
        frac = 1.0
    else:
        read = state.get("page", 0) / state["pages"] if state.get("pages") else 0.0
        current = (READ_SHARE + (1 - READ_SHARE) * cur_embedded / cur_chunked) if cur_chunked else READ_SHARE * read
        frac = min(1.0, (done + min(current, 1.0)) / total)
    seen = done + (1 if cur_chunked else 0)
    per_file = chunked / seen if seen else 0.0
    work_left = max(0, chunked - embedded) + max(0, total - seen) * per_file
    parts = [f"{done}/{total} files"]
    if state.get("file") and done < total:
        parts.append(str(state["file"]))
        if state.get("pages", 0) > 1:
            parts.append(f"page {state.get('page', 0)}/{state['pages']}")
    if chunked:
        parts.append(f"{embedded:,}/{chunked:,} chunks embedded")
    rate = embedded / elapsed if elapsed > 0 else 0.0
    if rate > 0 and done < total and work_left > 0:
        parts.append(f"about {_duration(work_left / rate)} left")
    elif done >= total:
        parts.append(f"done in {_duration(elapsed)}")
    return frac, " · ".join(parts)


def progress_html(state: dict, elapsed: float) -> str:
    frac, line = ingest_progress(state, elapsed)
    pct = int(round(100 * frac))
    return (f"<div class='lr-progress' role='progressbar' aria-valuemin='0' aria-valuemax='100' aria-valuenow='{pct}'>"
            f"<div class='lr-progress-bar' style='width:{pct}%'></div></div>"
            f"<div class='lr-progress-text'>{pct}% · {html.escape(line)}</div>")

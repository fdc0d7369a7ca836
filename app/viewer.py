"""The source viewer: a cited passage opened at its place in its document.

A PDF whose original was kept (an upload) is shown page by page: the page rendered by PDFium with the passage's
characters highlighted (located in the page's text layer; the page's whole text block when they cannot be found).
Every other document (text, HTML, Markdown, DOCX, a PDF ingested by the command line) shows the passage in its
surrounding text, rebuilt from the neighbouring chunks by their character offsets (each chunk is exactly
``doc.text[char_start:char_end]``), so no original is needed and the text is the one that was indexed.

Access: every entry point takes the caller's Principal, requires ``read`` and finds the document in that collection
only; an unknown document, one of another collection or a chunk of another document is ``NotFoundError`` (HTTP
404), never a file. Document text is data: the HTML here is escaped, with only our ``<mark>`` added.
"""

from __future__ import annotations

import html
import io
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

import regex

from lusifer_rag.errors import NotFoundError, RagError, StoreError

from .access import Principal

RENDER_SCALE = 1.5  # 108 dpi: a page fits the viewer column and text stays readable
MAX_RENDER_SIDE = 2400  # pixels; a huge page size (a poster, a hostile MediaBox) is scaled down to this
HIGHLIGHT_RGBA = (250, 204, 21, 110)  # amber, translucent: the text under it stays readable
MIN_MATCH_WORDS = 3  # shorter runs of words in common with a page are chance ("of the")
CONTEXT_CHUNKS = 1  # chunks shown on each side of the cited one in a text view
API = "/api/v1/documents"
_WORD = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]|[^\W_]+")


@dataclass
class SourceView:
    """What the viewer shows of one document: a PDF page or the passage in its surrounding text."""

    kind: str  # "pdf": a page image (image_url); "text": context_html
    collection: str
    doc_id: str
    source: str
    title: str
    language: str
    chunk_id: str | None  # the cited passage (None: a page opened without one)
    passage: str  # its text ("" without one)
    passage_pages: tuple[int, int] | None  # first and last page of the passage in a paged document
    page: int | None  # pdf: the page shown
    page_count: int | None  # pdf: pages in the document
    prev: int | str | None  # pdf: the page before; text: the chunk id of the passage before (None at the start)
    next: int | str | None
    context_html: str = ""  # text: the passage in its surrounding text, escaped, the passage in <mark>
    image_url: str | None = None  # pdf: the page image, passage highlighted
    original_url: str | None = None  # download of the kept original (None: none is kept)

    def to_json(self) -> dict:
        out = asdict(self)
        out["passage_pages"] = list(self.passage_pages) if self.passage_pages else None
        return out


# ---- access ------------------------------------------------------------------------------------------
@dataclass
class _Chunk:
    id: str
    text: str
    md: dict


def _point_chunk(p) -> _Chunk:
    return _Chunk(str(p.id), p.payload.get("page_content", ""), p.payload.get("metadata", {}))


def _missing(doc_id: str, service) -> NotFoundError:
    return NotFoundError(f"no document {str(doc_id)[:80]!r} in collection {service.collection!r}")


def readable_chunk(service, doc_id: str, chunk_id: str | None, principal: Principal) -> _Chunk:
    """The cited chunk of document ``doc_id`` (its first chunk without ``chunk_id``) in ``service``'s collection, for
    a caller who may read it: the one access check of the viewer and the download routes."""
    from lusifer_rag.store import Filter

    from .access import can_read, read_filter

    read_filter(principal, action="open documents")  # fails closed
    service.authorizer.require(principal, service.collection, "read", "open documents")
    if not isinstance(doc_id, str) or not doc_id or not service.exists():
        raise _missing(doc_id, service)
    service._sync_acl()
    try:
        if chunk_id:
            points = service.store.retrieve(service.collection, [chunk_id])
        else:
            points, _ = service.store.scroll(service.collection, limit=1, filter=Filter(
                must={"metadata.doc_id": doc_id, "metadata.chunk_no": 0}))
    except StoreError:  # not a UUID: no such chunk
        points = []
    points = [p for p in points if p.payload.get("metadata", {}).get("doc_id") == doc_id]
    if points and not can_read(principal, points[0].payload.get("metadata", {})):
        raise _missing(doc_id, service)  # another user's document is as unknown as a missing one (no probing)
    if not points:
        raise _missing(doc_id, service) if not chunk_id else NotFoundError(
            f"document {doc_id[:80]!r} has no passage {str(chunk_id)[:80]!r} (it was re-ingested or deleted: ask "
            "again for fresh citations)")
    return _point_chunk(points[0])


def original_file(service, doc_id: str, principal: Principal) -> tuple[Path, str]:
    """(kept original, its download name) of a document the caller may read; NotFoundError when none is kept."""
    chunk = readable_chunk(service, doc_id, None, principal)
    path = service.uploads().original(doc_id)
    if path is None:
        raise NotFoundError(f"no original is kept for document {doc_id!r} (ingested by the command line)")
    return path, Path(chunk.md.get("source", "")).name or path.name


# ---- views -------------------------------------------------------------------------------------------
def _url(doc_id: str, tail: str, **params) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{API}/{quote(doc_id, safe='')}/{tail}" + (f"?{query}" if query else "")


def view(service, doc_id: str, chunk_id: str | None = None, page: int | None = None, *,
         principal: Principal) -> SourceView:
    """The document opened at chunk ``chunk_id`` (the cited passage) or at ``page`` (a PDF's page; the passage stays
    highlighted when it lies on it)."""
    chunk = readable_chunk(service, doc_id, chunk_id, principal)
    kept = service.uploads().original(doc_id)
    kind = "pdf" if chunk.md.get("mime") == "application/pdf" and kept is not None else "text"
    return VIEWS[kind](service, doc_id, chunk if chunk_id else None, chunk, page, kept)


def _base(service, doc_id: str, cited: _Chunk | None, md: dict, kept: Path | None) -> dict:
    pages = (int(md["page"]), int(md.get("page_end") or md["page"])) if cited and md.get("page") else None
    return {"collection": service.collection, "doc_id": doc_id, "source": md.get("source", ""),
            "title": md.get("title", ""), "language": md.get("language", ""), "chunk_id": cited.id if cited else None,
            "passage": cited.text if cited else "", "passage_pages": pages,
            "original_url": _url(doc_id, "original", collection=service.collection) if kept else None}


def _pdf_view(service, doc_id: str, cited: _Chunk | None, chunk: _Chunk, page: int | None, kept: Path) -> SourceView:
    count = int(chunk.md.get("pages") or 0)
    page = int(page) if page is not None else int(chunk.md.get("page") or 1)
    if not 1 <= page <= max(count, 1):
        raise RagError(f"{Path(chunk.md.get('source', '')).name}: there is no page {page} (it has {count} pages)")
    base = _base(service, doc_id, cited, chunk.md, kept)
    return SourceView(kind="pdf", page=page, page_count=count, prev=page - 1 if page > 1 else None,
                      next=page + 1 if page < count else None,
                      image_url=_url(doc_id, f"pages/{page}.png", collection=service.collection,
                                     chunk=cited.id if cited else None), **base)


def _neighbours(service, chunk: _Chunk, span: int) -> list[_Chunk]:
    """Chunks ``chunk_no - span .. chunk_no + span`` of the same document version, in document order."""
    from lusifer_rag.store import Filter

    no = int(chunk.md.get("chunk_no", 0))
    wanted = [n for n in range(no - span, no + span + 1) if n >= 0]
    points, _ = service.store.scroll(service.collection, limit=len(wanted), filter=Filter(must={
        "metadata.doc_id": chunk.md.get("doc_id"), "metadata.state": chunk.md.get("state", ""),
        "metadata.chunk_no": wanted}))
    return sorted((_point_chunk(p) for p in points), key=lambda c: int(c.md.get("chunk_no", 0)))


def stitch(chunks: list[_Chunk], cited_id: str) -> tuple[str, tuple[int, int] | None]:
    """The text the chunks cover, joined by their character offsets (overlaps once; a gap, which is whitespace
    the chunker left out, as a space or a paragraph break), and the span of chunk ``cited_id`` in it."""
    out: list[str] = []
    length, end, span = 0, None, None
    for c in sorted(chunks, key=lambda c: int(c.md.get("char_start", 0))):
        start, stop = int(c.md.get("char_start", 0)), int(c.md.get("char_end", 0))
        if end is None or start >= end:
            sep = "" if end is None or start == end else ("\n\n" if start - end >= 2 else " ")
            out.append(sep + c.text)
            begin = length + len(sep)
            length += len(sep) + len(c.text)
        else:  # overlaps what is already there: only its tail is new
            begin = length - (end - start)
            tail = c.text[end - start:] if stop > end else ""
            out.append(tail)
            length += len(tail)
        end = max(end or 0, stop)
        if c.id == cited_id:
            span = (begin, begin + len(c.text))
    return "".join(out), span


def _text_view(service, doc_id: str, cited: _Chunk | None, chunk: _Chunk, page: int | None,
               kept: Path | None) -> SourceView:
    from .render import passage_html

    around = _neighbours(service, chunk, CONTEXT_CHUNKS)
    text, span = stitch(around, chunk.id)
    nos = {int(c.md.get("chunk_no", 0)): c.id for c in around}
    no = int(chunk.md.get("chunk_no", 0))
    base = _base(service, doc_id, chunk, chunk.md, kept)  # a text view always shows a passage
    return SourceView(kind="text", page=None, page_count=int(chunk.md.get("pages") or 0) or None,
                      prev=nos.get(no - 1), next=nos.get(no + 1), context_html=passage_html(text, span), **base)


#: how each kind of document is shown
VIEWS: dict[str, Callable[..., SourceView]] = {"pdf": _pdf_view, "text": _text_view}


# ---- PDF pages -----------------------------------------------------------------------------------------
def _open_pdf(service, path: Path, source: str):
    """The kept original as a pypdfium2 document, opened with the configured passwords."""
    import pypdfium2 as pdfium

    from lusifer_rag.ingest.options import LoadOptions

    for pw in LoadOptions.from_settings(service.settings).passwords_for(source):
        try:
            return pdfium.PdfDocument(str(path), password=pw or None)  # from the file: pages load as needed
        except pdfium.PdfiumError:
            continue
    raise RagError(f"{Path(source).name}: the original cannot be opened (damaged, or its password is no longer "
                   "configured)")


def page_png(service, doc_id: str, page: int, chunk_id: str | None = None, *, principal: Principal) -> bytes:
    """Page ``page`` of a PDF document as a PNG, with the passage of ``chunk_id`` highlighted when it lies on it."""
    chunk = readable_chunk(service, doc_id, chunk_id, principal)
    path = service.uploads().original(doc_id)
    if chunk.md.get("mime") != "application/pdf" or path is None:
        raise NotFoundError(f"document {doc_id!r} has no page images (not a PDF, or no original is kept)")
    pdf = _open_pdf(service, path, chunk.md.get("source", ""))
    try:
        if not 1 <= int(page) <= len(pdf):
            raise NotFoundError(f"{Path(chunk.md.get('source', '')).name} has no page {page} (it has {len(pdf)})")
        first = int(chunk.md.get("page") or 0)
        on_page = bool(chunk_id) and first <= int(page) <= int(chunk.md.get("page_end") or first)
        image, _, _ = render_page(pdf, int(page) - 1, chunk.text if on_page else "")
    finally:
        pdf.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # optimize=True: 3.6x the time for 2% fewer bytes
    return buf.getvalue()


def render_page(pdf, index: int, passage: str = "", scale: float = RENDER_SCALE):
    """(RGB image, highlight boxes in image pixels (left, top, right, bottom), located) of page ``index`` of a
    pypdfium2 document; ``located``: the passage's words were found in the text layer (else the boxes frame the
    page's whole text block, or nothing on a page without text)."""
    from PIL import Image, ImageDraw

    page = pdf[index]
    try:
        w, h = page.get_size()
        scale = min(scale, MAX_RENDER_SIDE / max(w, h, 1))
        image = page.render(scale=scale).to_pil().convert("RGB")
        boxes, located = [], False
        if passage:
            tp = page.get_textpage()
            try:
                rects, located = _passage_rects(tp, passage)
            finally:
                tp.close()
            boxes = [_to_device(page, image.size, r) for r in rects]
    finally:
        page.close()
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for box in boxes:
            draw.rectangle(box, fill=HIGHLIGHT_RGBA)
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    return image, boxes, located


def _page_chars(tp) -> str:
    """The page's characters, one per PDFium char index (get_text_range may not keep that correspondence)."""
    import pypdfium2.raw as raw

    return "".join(chr(raw.FPDFText_GetUnicode(tp.raw, i)) for i in range(tp.count_chars()))


_SOFT_BREAKS = "\ufffe\x02"  # PDFium's marks of a word it re-joined across a line break (text range / per char)


def page_words(chars: str) -> list[tuple[str, list[int]]]:
    """Words of a page's characters with the char indices each is made of. A word PDFium re-joined across a line
    break (a soft-break mark, maybe a line break after it) is one word, as the ingested text has it, unless an
    upper-case letter follows ("Franco-German", as ingest/pdf.py reads it)."""
    kept: list[int] = []  # char indices, soft breaks and the line breaks after them left out
    text: list[str] = []
    i = 0
    while i < len(chars):
        if chars[i] in _SOFT_BREAKS:
            mark = i
            i += 1
            while i < len(chars) and chars[i] in "\r\n":
                i += 1
            if i < len(chars) and chars[i].isupper():
                kept.append(mark)
                text.append(" ")
            continue
        kept.append(i)
        text.append(chars[i])
        i += 1
    joined = "".join(text)
    return [(m.group().casefold(), kept[m.start():m.end()]) for m in _WORD.finditer(joined)]


def locate(page: list[tuple[str, list[int]]], passage: str) -> list[int]:
    """Char indices of the page words that the passage's words match: runs of words in common, in order, the
    densest group of them (a passage is contiguous on its page; a stray common phrase elsewhere is left out)."""
    want = [m.group().casefold() for m in _WORD.finditer(passage)]
    have = [w for w, _ in page]
    if not want or not have:
        return []
    least = min(MIN_MATCH_WORDS, len(want))
    blocks = [b for b in SequenceMatcher(None, have, want, autojunk=False).get_matching_blocks() if b.size >= least]
    if not blocks:
        return []
    groups, current = [], [blocks[0]]
    for prev, b in zip(blocks, blocks[1:]):
        # the gap on the page is no larger than the gap in the passage allows (plus some re-flow)
        if b.a - (prev.a + prev.size) <= b.b - (prev.b + prev.size) + 10:
            current.append(b)
        else:
            groups.append(current)
            current = [b]
    groups.append(current)
    best = max(groups, key=lambda g: sum(b.size for b in g))
    return [i for b in best for _, idx in page[b.a:b.a + b.size] for i in idx]


def _passage_rects(tp, passage: str) -> tuple[list[tuple[float, float, float, float]], bool]:
    """Rectangles (PDF points: left, bottom, right, top), one per line, covering the passage on the page."""
    chars = _page_chars(tp)
    found = locate(page_words(chars), passage)
    located = bool(found)
    if not found:  # the whole text block, so the reader sees where the text is
        found = [i for i, ch in enumerate(chars) if not ch.isspace() and ch not in _SOFT_BREAKS]
        if not found:
            return [], False
        boxes = [tp.get_charbox(i) for i in found]
        return [(min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                 max(b[3] for b in boxes))], False
    return _line_rects([tp.get_charbox(i) for i in sorted(_with_punctuation(chars, found))]), located


def _with_punctuation(chars: str, found: list[int]) -> set[int]:
    """The matched chars plus the punctuation right after each (a line's final "." or ","; words alone leave it)."""
    out = set(found)
    for i in found:
        j = i + 1
        while j < len(chars) and j not in out and not chars[j].isspace() and not chars[j].isalnum() \
                and chars[j] not in _SOFT_BREAKS:
            out.add(j)
            j += 1
    return out


def _line_rects(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Char boxes in reading order merged into one rectangle per line (a new line: no vertical overlap)."""
    rects: list[list[float]] = []
    for left, bottom, right, top in boxes:
        if right <= left and top <= bottom:
            continue  # a generated char without a box
        r = rects[-1] if rects else None
        if r is not None and min(r[3], top) - max(r[1], bottom) > 0.3 * min(r[3] - r[1], top - bottom):
            r[0], r[1], r[2], r[3] = min(r[0], left), min(r[1], bottom), max(r[2], right), max(r[3], top)
        else:
            rects.append([left, bottom, right, top])
    return [tuple(r) for r in rects]


def _to_device(page, size: tuple[int, int], rect) -> tuple[int, int, int, int]:
    """A rectangle in page points → (left, top, right, bottom) pixels of the rendered image (rotation and crop box
    applied by PDFium itself), with a point of padding."""
    import ctypes

    import pypdfium2.raw as raw

    left, bottom, right, top = rect
    xs, ys = [], []
    for x, y in ((left - 1, bottom - 1), (right + 1, top + 1)):
        dx, dy = ctypes.c_int(), ctypes.c_int()
        raw.FPDF_PageToDevice(page.raw, 0, 0, size[0], size[1], 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        xs.append(dx.value)
        ys.append(dy.value)
    return min(xs), min(ys), max(xs), max(ys)


# ---- HTML of the Ask tab's panel ------------------------------------------------------------------------
def viewer_html(v: SourceView) -> str:
    """The viewer panel's body: where the passage is from, the page image or the passage in context, the passage
    and a download link; every document string escaped, links only to our own routes."""
    from .render import page_label, passage_html

    where = [v.source, v.language]
    if v.kind == "pdf":
        where.insert(1, f"page {v.page} of {v.page_count}")
    elif v.passage_pages:
        where.insert(1, page_label(*v.passage_pages))
    head = (f"<div class='lr-meta lr-viewer-where'>{html.escape(' · '.join(x for x in where if x))}</div>")
    if v.kind == "pdf":
        on_page = bool(v.passage_pages) and v.passage_pages[0] <= (v.page or 0) <= v.passage_pages[1]
        src = html.escape(v.image_url or "")
        body = (f"<a href='{src}' target='_blank' rel='noopener' title='Open the page at full size'>"
                f"<img class='lr-page-image' src='{src}' alt='{html.escape(f'page {v.page} of {v.source}')}' "
                f"data-page='{int(v.page or 0)}' style='width:100%; border:1px solid var(--border-color-primary)'>"
                "</a>")
        if v.passage:
            label = "Cited passage (on this page)" if on_page else \
                f"Cited passage ({page_label(*v.passage_pages) if v.passage_pages else 'another page'})"
            body += (f"<details class='lr-cited'><summary>{html.escape(label)}</summary>"
                     f"<div class='lr-passage'>{passage_html(v.passage)}</div></details>")
    else:
        body = f"<div class='lr-passage lr-context'>{v.context_html}</div>"
    link = (f"<a class='lr-download' href='{html.escape(v.original_url)}' download>Download the original</a>"
            if v.original_url else "<span class='lr-meta'>(no original kept: ingested by the command line)</span>")
    return (f"<div class='lr-viewer' data-kind='{v.kind}'>{head}{body}"
            f"<div class='lr-viewer-download'>{link}</div></div>")

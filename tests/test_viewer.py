"""The source viewer (app/viewer.py): a PDF page rendered with the cited passage highlighted where it is on the page,
other documents' passages in their surrounding text, previous/next, and the routes that serve them only to a caller
who may read the document. Real PDFs (fpdf2), real PDFium, real e5-small and embedded store, real HTTP."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from app_fixtures import app_settings, running_app
from conftest import udhr_articles
from lusifer_rag.app import viewer
from lusifer_rag.app.access import LOCAL, Principal
from lusifer_rag.errors import AccessError, NotFoundError, RagError
from pdf_factory import HTML_NOISE, NOISY_HTML, docx_file, english_pdf

USER, PASSWORD = "ann", "viewer test 7"
HOSTILE = ("Opening hours of the reading room: <script>alert('x')</script> <img src=https://evil.example/p.png> "
           "weekdays from nine to five, closed on public holidays.")


def _amber_mask(image):
    """(h, w) bool: white page pixels under the translucent highlight (viewer.HIGHLIGHT_RGBA over white)."""
    import numpy as np

    a = np.asarray(image.convert("RGB")).astype(int)  # (h, w, 3)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return (r > 235) & (g > 200) & (g < 250) & (b > 110) & (b < 200)


def _amber_count(image, box=None) -> int:
    """Highlighted pixels in the image, or in ``box`` (left, top, right, bottom, inclusive as PIL draws it)."""
    mask = _amber_mask(image)
    if box:
        mask = mask[box[1]:box[3] + 1, box[0]:box[2] + 1]
    return int(mask.sum())


def _search_boxes(pdf, index: int, phrase: str, size) -> list[tuple[int, int, int, int]]:
    """Device boxes of ``phrase``'s characters found by PDFium's own search (independent of the viewer's matching)."""
    page = pdf[index]
    tp = page.get_textpage()
    try:
        searcher = tp.search(phrase)
        start, count = searcher.get_next()
        return [viewer._to_device(page, size, tp.get_charbox(i)) for i in range(start, start + count)
                if not viewer._page_chars(tp)[i].isspace()]
    finally:
        tp.close()
        page.close()


def _centre_inside(box, boxes) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes)


# ---- the page image, without the app ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pdf(tmp_path_factory):
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(english_pdf(tmp_path_factory.mktemp("vpdf") / "overview.pdf").read_bytes())
    yield doc
    doc.close()


def test_the_highlight_lands_on_the_passage_and_nowhere_else(pdf):
    # page 3: the passage is the second sentence, from the end of line 1 to the start of line 3; the sentences
    # before and after it on those lines are not cited
    passage = "No one shall be held in slavery or servitude; slavery and the slave trade shall be prohibited in all " \
              "their forms."
    image, boxes, located = viewer.render_page(pdf, 2, passage)
    assert located and len(boxes) == 3  # one rectangle per line
    for word in ("servitude", "prohibited", "forms"):
        chars = _search_boxes(pdf, 2, word, image.size)
        assert chars and all(_centre_inside(c, boxes) for c in chars), word
    for word in ("liberty", "recognition"):  # the sentences around it
        assert not any(_centre_inside(c, boxes) for c in _search_boxes(pdf, 2, word, image.size)), word
    inside = sum(_amber_count(image, b) for b in boxes)
    area = sum((b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in boxes)
    assert inside > 0.5 * area  # the box is painted (glyph pixels are the rest)
    assert _amber_count(image) == inside  # and nothing outside it
    plain, no_boxes, _ = viewer.render_page(pdf, 2, "")
    assert no_boxes == [] and _amber_count(plain) == 0


def test_a_word_hyphenated_across_lines_is_found(pdf):
    # "pro-" / "tected" on page 1: PDFium joins it with U+FFFE, the ingested text has "protected"
    image, boxes, located = viewer.render_page(pdf, 0, "fundamental human rights to be universally protected")
    assert located
    for word in ("fundamental", "universally", "tected"):
        assert all(_centre_inside(c, boxes) for c in _search_boxes(pdf, 0, word, image.size)), word


def test_a_passage_not_on_the_page_frames_its_text_block(pdf):
    image, boxes, located = viewer.render_page(pdf, 1, "Bake the bread at two hundred degrees for forty minutes")
    assert not located and len(boxes) == 1
    for word in ("Article", "treaty"):  # first and last line of the page
        assert all(_centre_inside(c, boxes) for c in _search_boxes(pdf, 1, word, image.size))


def test_stitched_context_is_the_documents_own_text():
    doc = "Alpha one. Alpha two.\n\nBeta three. Beta four. Gamma five.  Delta six."

    def chunk(i, a, b):
        return viewer._Chunk(f"c{i}", doc[a:b], {"char_start": a, "char_end": b, "chunk_no": i})

    # c0 and c1 overlap ("Beta three."), c2 starts after a two-space gap
    beta, gamma_end, delta = doc.index("Beta three."), doc.index("Gamma five.") + 11, doc.index("Delta")
    parts = [chunk(0, 0, beta + 11), chunk(1, beta, gamma_end), chunk(2, delta, len(doc))]
    text, span = viewer.stitch(parts, "c1")
    assert text == doc.replace("  Delta", "\n\nDelta")  # a gap of 2+ spaces reads as a paragraph break
    assert text[span[0]:span[1]] == doc[beta:gamma_end]
    text, span = viewer.stitch(parts[1:], "c2")
    assert text[span[0]:span[1]] == "Delta six." and text.startswith("Beta three.")


# ---- the app: views through the service, and the routes -----------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory, e5):
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("viewer")
    files = tmp / "files"
    files.mkdir()
    pdf = english_pdf(files / "overview.pdf")
    (files / "rights.md").write_text("# Rights\n\n" + "\n\n".join(udhr_articles("en")), encoding="utf-8")
    docx_file(files / "library.docx", ["The library lends board games for three weeks.",
                                       "A damaged game is replaced or paid for at the desk."], title="Loans")
    (files / "hours.txt").write_text(HOSTILE, encoding="utf-8")
    (files / "rights.html").write_text(NOISY_HTML, encoding="utf-8")
    (files / "other.txt").write_text("The observatory records meteor showers every August.", encoding="utf-8")
    # ingest moves what it is given: what the tests compare against is read first
    texts = {"rights.md": (files / "rights.md").read_text(encoding="utf-8"), "overview.pdf": pdf.read_bytes()}
    options = AppOptions(ingest_workers=0, auth=(USER, PASSWORD))
    with running_app(app_settings(tmp, collection="docs"), e5, options=options) as running:
        ws = running.workspace
        report = running.service.ingest([(p.name, p) for p in (pdf, files / "rights.md", files / "library.docx",
                                                                 files / "hours.txt", files / "rights.html")],
                                         principal=LOCAL)
        assert not report.by_status("failed"), report.to_json()
        report = ws.service("other").ingest([("other.txt", files / "other.txt")], principal=LOCAL)
        assert not report.by_status("failed"), report.to_json()
        running.files, running.texts = files, texts
        yield running


def _doc(service, source: str) -> dict:
    return next(d for d in service.documents(principal=LOCAL) if d["source"] == source)


def _chunks(service, doc_id: str) -> list:
    from lusifer_rag.store import Filter

    points = list(service.store.iter_points(service.collection, Filter(must={"metadata.doc_id": doc_id})))
    return sorted(points, key=lambda p: p.payload["metadata"]["chunk_no"])


def test_a_pdf_opens_at_the_passages_page_with_prev_and_next(app):
    svc = app.service
    doc = _doc(svc, "overview.pdf")
    chunk = _chunks(svc, doc["doc_id"])[-1]
    md = chunk.payload["metadata"]
    v = viewer.view(svc, doc["doc_id"], str(chunk.id), principal=LOCAL)
    assert (v.kind, v.page, v.page_count, v.source) == ("pdf", md["page"], 3, "overview.pdf")
    assert v.prev == (md["page"] - 1 or None) and v.next == (md["page"] + 1 if md["page"] < 3 else None)
    assert v.passage == chunk.payload["page_content"] and v.passage_pages == (md["page"], md["page_end"])
    assert v.image_url.startswith(f"/api/v1/documents/{doc['doc_id']}/pages/{md['page']}.png?")
    assert f"chunk={chunk.id}" in v.image_url and v.original_url.endswith("/original?collection=docs")
    last = viewer.view(svc, doc["doc_id"], str(chunk.id), 3, principal=LOCAL)
    assert (last.page, last.prev, last.next) == (3, 2, None)
    with pytest.raises(RagError, match="overview.pdf: there is no page 9 \\(it has 3 pages\\)"):
        viewer.view(svc, doc["doc_id"], str(chunk.id), 9, principal=LOCAL)
    html = viewer.viewer_html(last)
    assert "page 3 of 3" in html and "<img class='lr-page-image'" in html and "Download the original" in html


def test_page_png_highlights_the_passage_on_its_pages_only(app):
    from PIL import Image

    svc = app.service
    doc = _doc(svc, "overview.pdf")
    chunk = _chunks(svc, doc["doc_id"])[-1]
    md = chunk.payload["metadata"]
    on = Image.open(io.BytesIO(viewer.page_png(svc, doc["doc_id"], md["page_end"], str(chunk.id), principal=LOCAL)))
    assert on.format == "PNG" and _amber_count(on) > 1000
    bare = Image.open(io.BytesIO(viewer.page_png(svc, doc["doc_id"], md["page_end"], None, principal=LOCAL)))
    assert bare.size == on.size and _amber_count(bare) == 0
    with pytest.raises(NotFoundError, match="no page 4"):
        viewer.page_png(svc, doc["doc_id"], 4, str(chunk.id), principal=LOCAL)


def test_markdown_passage_in_its_context_with_neighbours(app):
    import html as html_lib

    svc = app.service
    doc = _doc(svc, "rights.md")
    chunks = _chunks(svc, doc["doc_id"])
    assert len(chunks) >= 3, "the test needs a passage with a chunk on each side"
    mid = chunks[1]
    v = viewer.view(svc, doc["doc_id"], str(mid.id), principal=LOCAL)
    assert v.kind == "text" and v.prev == str(chunks[0].id) and v.next == str(chunks[2].id)
    before, rest = v.context_html.split("<mark>", 1)
    marked, after = rest.split("</mark>", 1)
    assert html_lib.unescape(marked) == mid.payload["page_content"]
    assert before.strip() and after.strip()  # text on both sides
    assert html_lib.unescape(after).strip().endswith(chunks[2].payload["page_content"][-40:])
    source = " ".join(app.texts["rights.md"].split())
    assert " ".join(html_lib.unescape(before + marked + after).split()) in source
    first = viewer.view(svc, doc["doc_id"], str(chunks[0].id), principal=LOCAL)
    assert first.prev is None and first.next == str(chunks[1].id)


def test_docx_html_and_hostile_text_are_escaped_in_context(app):
    svc = app.service
    docx = _doc(svc, "library.docx")
    v = viewer.view(svc, docx["doc_id"], str(_chunks(svc, docx["doc_id"])[0].id), principal=LOCAL)
    assert v.kind == "text" and "<mark>" in v.context_html and "board games for three weeks" in v.context_html
    page = _doc(svc, "rights.html")
    v = viewer.view(svc, page["doc_id"], str(_chunks(svc, page["doc_id"])[0].id), principal=LOCAL)
    assert "born\nfree and equal in dignity" in v.context_html or "born free and equal in dignity" in v.context_html
    assert not any(noise in v.context_html for noise in HTML_NOISE)  # the main text, as it was indexed
    hours = _doc(svc, "hours.txt")
    v = viewer.view(svc, hours["doc_id"], None, principal=LOCAL)
    page = viewer.viewer_html(v)
    assert "&lt;script&gt;" in page and "<script" not in page and "<img" not in page
    assert "evil.example" in page  # shown as text


def test_the_viewer_refuses_callers_and_ids_it_must(app):
    svc, other = app.service, app.workspace.service("other")
    pdf = _doc(svc, "overview.pdf")
    foreign = _doc(other, "other.txt")
    with pytest.raises(AccessError, match="sign in to open documents"):
        viewer.view(svc, pdf["doc_id"], None, principal=Principal(None, frozenset()))
    with pytest.raises(NotFoundError, match="no document .* in collection 'docs'"):
        viewer.view(svc, foreign["doc_id"], None, principal=LOCAL)  # another collection's document
    with pytest.raises(NotFoundError, match="has no passage"):  # a chunk of another document under this id
        viewer.view(svc, pdf["doc_id"], str(_chunks(svc, _doc(svc, "hours.txt")["doc_id"])[0].id), principal=LOCAL)
    with pytest.raises(NotFoundError):
        viewer.page_png(svc, _doc(svc, "hours.txt")["doc_id"], 1, principal=LOCAL)  # not a PDF


def test_routes_serve_only_signed_in_readers_and_404_other_ids(app):
    svc = app.service
    pdf = _doc(svc, "overview.pdf")
    foreign = _doc(app.workspace.service("other"), "other.txt")
    chunk = str(_chunks(svc, pdf["doc_id"])[0].id)
    base = f"api/v1/documents/{pdf['doc_id']}"
    paths = [f"{base}/view?chunk={chunk}", f"{base}/pages/1.png?chunk={chunk}", f"{base}/original"]
    with httpx.Client(base_url=app.url, timeout=120) as c:
        for path in paths:  # not signed in: refused, no bytes of the document
            r = c.get(path)
            assert r.status_code == 401 and b"%PDF" not in r.content and b"PNG" not in r.content, path
        assert c.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
        v = c.get(paths[0]).json()
        assert v["kind"] == "pdf" and v["chunk_id"] == chunk and v["page"] == 1
        img = c.get(v["image_url"].lstrip("/"))
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content.startswith(b"\x89PNG") and img.headers["x-content-type-options"] == "nosniff"
        original = c.get(v["original_url"].lstrip("/"))
        assert original.content == app.texts["overview.pdf"]
        assert original.headers["content-type"] == "application/octet-stream"
        # another collection's document through this collection, unknown and malformed ids, a foreign chunk: 404
        for path in [f"api/v1/documents/{foreign['doc_id']}/view", f"api/v1/documents/{foreign['doc_id']}/original",
                     f"api/v1/documents/{foreign['doc_id']}/pages/1.png",
                     "api/v1/documents/00000000-0000-0000-0000-000000000000/view",
                     "api/v1/documents/not-a-document/original", f"{base}/view?chunk=not-a-uuid",
                     f"{base}/pages/1.png?chunk={_chunks(svc, _doc(svc, 'rights.md')['doc_id'])[0].id}",
                     f"{base}/view?collection=nope"]:
            r = c.get(path)
            assert r.status_code == 404 and "error" in r.json(), (path, r.status_code, r.text[:200])
            assert str(app.files.parent) not in r.text  # no server path in the message
        ok = c.get(f"api/v1/documents/{foreign['doc_id']}/view?collection=other")
        assert ok.status_code == 200 and ok.json()["source"] == "other.txt"
        assert c.get(f"{base}/view?page=7").status_code == 400


def test_the_ask_tabs_panel_steps_through_pages_and_passages(app):
    from lusifer_rag.app.viewer_panel import panel_for_citation, panel_step

    ws, svc = app.workspace, app.service
    pdf, md = _doc(svc, "overview.pdf"), _doc(svc, "rights.md")
    first = _chunks(svc, pdf["doc_id"])[0]
    state, body = panel_for_citation(ws, {"collection": "docs", "doc_id": pdf["doc_id"], "chunk_id": str(first.id),
                                          "text": first.payload["page_content"]}, LOCAL)
    assert "page 1 of 3" in body and "pages/1.png" in body
    state, body = panel_step(ws, state, 1, LOCAL)
    assert state["page"] == 2 and "page 2 of 3" in body and "pages/2.png" in body
    state, body = panel_step(ws, state, -1, LOCAL)
    state, same = panel_step(ws, state, -1, LOCAL)  # before page 1: stays
    assert state["page"] == 1 and same == body
    chunks = _chunks(svc, md["doc_id"])
    state, _ = panel_for_citation(ws, {"collection": "docs", "doc_id": md["doc_id"], "chunk_id": str(chunks[0].id)},
                                  LOCAL)
    state, body = panel_step(ws, state, 1, LOCAL)
    assert state["chunk_id"] == str(chunks[1].id) and "<mark>" in body
    # a cited document that is gone: the saved passage, escaped, and why
    _, body = panel_for_citation(ws, {"collection": "docs", "doc_id": "gone", "chunk_id": "", "source": "gone.txt",
                                      "text": "Quoted <b>text</b>"}, LOCAL)
    assert "Quoted &lt;b&gt;text&lt;/b&gt;" in body and "no document" in body and "<b>" not in body


def test_a_pdf_without_its_original_opens_as_text(app):
    """A PDF ingested by the command line keeps no original: its passage shows in context, with no page images.
    (Runs last: it removes the kept original of overview.pdf.)"""
    svc = app.service
    doc = _doc(svc, "overview.pdf")
    chunk = str(_chunks(svc, doc["doc_id"])[0].id)
    svc.uploads().remove(doc["doc_id"])
    v = viewer.view(svc, doc["doc_id"], chunk, principal=LOCAL)
    assert v.kind == "text" and v.original_url is None and v.image_url is None and "<mark>" in v.context_html
    assert v.passage_pages == (1, 3) and "p. 1–3" in viewer.viewer_html(v)
    with pytest.raises(NotFoundError, match="no page images"):
        viewer.page_png(svc, doc["doc_id"], 1, chunk, principal=LOCAL)
    with pytest.raises(NotFoundError, match="no original is kept"):
        viewer.original_file(svc, doc["doc_id"], LOCAL)

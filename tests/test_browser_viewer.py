"""The source viewer in the real browser (headless Debian chromium): ask, click [1], and the viewer shows the cited
page of the PDF with the passage highlighted; next/previous pages, the download of the original; a Markdown source
shows its passage in context. Screenshots go to test-artifacts/ (kept by CI)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from app_fixtures import app_settings, running_app
from conftest import udhr_articles
from lusifer_rag.app.access import LOCAL
from pdf_factory import long_pdf
from test_browser_e2e import ARTIFACTS, CHROMIUM, browser, page  # noqa: F401 (shared fixtures)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.slow,
]
PAGES = 10  # three UDHR articles a page: article 26 (education) is on page 9

#: highlighted pixels of the page image, counted in the page (same origin: the canvas may read it)
AMBER_PIXELS = """img => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] > 235 && d[i + 1] > 200 && d[i + 1] < 250 && d[i + 2] > 110 && d[i + 2] < 200) n++;
  }
  return n;
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory, e5):
    tmp = tmp_path_factory.mktemp("bviewer")
    articles = udhr_articles("en")
    pdf = long_pdf(tmp / "declaration.pdf", [" ".join(f"Article {i + 1}. {articles[i]}" for i in range(p, p + 3))
                                             for p in range(0, 3 * PAGES, 3)])
    md = tmp / "notes.md"
    md.write_text("# Reading room\n\n" + "\n\n".join(udhr_articles("fr")), encoding="utf-8")
    with running_app(app_settings(tmp, collection="docs"), e5) as running:
        report = running.service.ingest([(pdf.name, pdf), (md.name, md)], principal=LOCAL)
        assert not report.by_status("failed"), report.to_json()
        yield running


def _ask(page, app, text: str) -> None:
    """``text`` asked in a new conversation: the page opens the latest saved one, where it would be a follow-up."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Ask").click()
    saved = app.workspace.db.conversations("local")  # this machine's user: anonymous on loopback
    if saved:  # wait until the page has opened it, then leave it
        expect(page.locator("#chat")).to_contain_text(saved[0]["title"])
        page.locator("#new-chat").click()
        expect(page.locator("#chat .lr-cite")).to_have_count(0)
    page.locator("#ask-question textarea").fill(text)
    page.locator("#ask-btn").click()


def _open_first_citation(page, app, question: str) -> None:
    """Open the app, ask ``question`` and click the answer's first citation marker."""
    from playwright.sync_api import expect

    page.goto(app.url)
    _ask(page, app, question)
    cite = page.locator("#chat .lr-cite[class*=lr-m-]").first
    expect(cite).to_be_visible()
    cite.click()


def _chunk_of(app, image_src: str):
    """(doc id, page, chunk metadata) that a page image's URL names."""
    url = urlparse(image_src)
    m = re.fullmatch(r"/api/v1/documents/([0-9a-f-]+)/pages/(\d+)\.png", url.path)
    chunk = parse_qs(url.query)["chunk"][0]
    point = app.service.store.retrieve(app.service.collection, [chunk])[0]
    return m.group(1), int(m.group(2)), point.payload["metadata"]


def test_click_1_opens_the_cited_pdf_page_with_the_passage_highlighted(app, page):
    from playwright.sync_api import expect

    _open_first_citation(page, app, "Who has the right to education, and is it free?")
    image = page.locator("#viewer img.lr-page-image")
    expect(image).to_be_visible()
    page.wait_for_function("() => { const i = document.querySelector('#viewer img.lr-page-image');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    doc_id, shown, md = _chunk_of(app, image.get_attribute("src"))
    assert md["source"] == "declaration.pdf" and doc_id == md["doc_id"]
    assert shown == md["page"]  # the page the cited passage starts on
    expect(page.locator("#viewer .lr-viewer-where")).to_contain_text(f"page {shown} of {PAGES}")
    assert image.evaluate(AMBER_PIXELS) > 2000  # the passage is highlighted on the page image
    page.screenshot(path=str(ARTIFACTS / "viewer_1_pdf_page.png"), full_page=True)

    # next page: the same document one page on; the download is the original PDF
    page.locator("#viewer-next").click()
    expect(page.locator("#viewer .lr-viewer-where")).to_contain_text(f"page {shown + 1} of {PAGES}")
    page.locator("#viewer-prev").click()
    expect(page.locator("#viewer .lr-viewer-where")).to_contain_text(f"page {shown} of {PAGES}")
    href = page.locator("#viewer a.lr-download").get_attribute("href")
    original = page.request.get(app.url.rstrip("/") + href)
    assert original.ok and original.body().startswith(b"%PDF")


def test_a_markdown_source_shows_its_passage_in_context(app, page):
    from playwright.sync_api import expect

    _open_first_citation(page, app, "Qui a droit à l'éducation ?")
    context = page.locator("#viewer .lr-context")
    expect(context.locator("mark")).to_be_visible()  # scrolled into its box
    expect(context.locator("mark")).to_contain_text("éducation")
    expect(page.locator("#viewer .lr-viewer-where")).to_contain_text("notes.md")
    page.screenshot(path=str(ARTIFACTS / "viewer_2_markdown_context.png"), full_page=True)

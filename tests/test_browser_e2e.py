"""End to end in a real browser: headless Debian chromium driven by Playwright against the real app.

Upload a PDF, wait for the ingest progress to finish, search in another language and see the cited
result, ask a question and open a citation. Screenshots go to test-artifacts/ (gitignored).
Needs /usr/bin/chromium (``apt-get install -y chromium``) and the ``playwright`` Python package; the
browser bundled by ``playwright install`` is never used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from app_fixtures import app_settings, running_app
from pdf_factory import english_pdf

CHROMIUM = Path(os.environ.get("LUSIFER_RAG_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser, request):
    """A fresh page of the shared browser, long timeouts (a shared 2-core CI box embeds slowly); its last state is
    kept as a screenshot in test-artifacts/. Browser tests import this fixture and ``browser`` from here."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=90_000)
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    p.set_default_timeout(90_000)
    try:
        yield p
    finally:
        p.screenshot(path=str(ARTIFACTS / f"{request.node.name}_last.png"), full_page=True)
        p.close()


def test_upload_search_ask_in_the_browser(tmp_path, e5, browser):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=60_000)  # a shared 2-core CI box embeds slowly
    pdf = english_pdf(tmp_path / "udhr_overview.pdf")
    with running_app(app_settings(tmp_path, collection="browser"), e5) as app:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(app.url)
            # ---- upload a PDF, ingest, wait for the progress to finish
            page.get_by_role("tab", name="Documents").click()
            page.locator("#upload-files input[type=file]").set_input_files(str(pdf))
            # Gradio renders the stem and the extension in separate elements; the size appears once uploaded
            expect(page.locator("#upload-files")).to_contain_text(re.compile(rf"{pdf.stem}\s*\.pdf"))
            expect(page.locator("#upload-files")).to_contain_text("KB")
            page.locator("#ingest-btn").click()
            status = page.locator("#ingest-status")
            expect(status).to_contain_text("Done.", timeout=180_000)
            expect(status).to_contain_text("1 ingested")
            expect(page.locator("#documents")).to_contain_text(pdf.name)
            page.screenshot(path=str(ARTIFACTS / "browser_1_ingested.png"), full_page=True)

            # ---- search in French for an English passage
            page.get_by_role("tab", name="Search").click()
            page.locator("#search-query textarea").fill("Toute personne a droit à la vie, à la liberté et à la sûreté.")
            page.locator("#search-btn").click()
            first = page.locator("#search-results .lr-hit").first
            expect(first).to_be_visible()
            expect(first.locator(".lr-source")).to_have_text(pdf.name)
            expect(first.locator(".lr-page")).to_contain_text("p.")
            expect(first.locator(".lr-lang")).to_have_text("en")
            expect(first.locator("mark")).to_contain_text(re.compile("liberty"))
            page.screenshot(path=str(ARTIFACTS / "browser_2_search.png"), full_page=True)

            # ---- ask, get an answer with a citation, open it
            page.get_by_role("tab", name="Ask").click()
            expect(page.locator("#extractive-note")).to_be_visible()
            page.locator("#ask-question textarea").fill("Qui a droit à la vie et à la liberté ?")
            page.locator("#ask-btn").click()
            citation = page.locator("#chat").get_by_text(re.compile(r"\[\d+\] " + re.escape(pdf.name))).first
            expect(citation).to_be_visible()
            # the cited chunk holds all three pages; page 1's text is not in the extractive answer itself
            passage = page.locator("#chat").get_by_text(re.compile("milestone document")).first
            expect(passage).to_be_hidden()
            citation.click()
            expect(passage).to_be_visible()
            expect(page.locator("#chat")).to_contain_text(f"— {pdf.name} · p.")  # its document and page
            passage.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let the expand animation finish before the screenshot
            page.screenshot(path=str(ARTIFACTS / "browser_3_ask.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
        finally:
            page.close()

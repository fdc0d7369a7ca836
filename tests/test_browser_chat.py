"""The Ask and Documents tabs in the real browser (headless Debian chromium): a two-turn conversation that survives
a reload, a 40-page PDF whose progress bar moves through the pages, a second collection searched alone and
deleted. Screenshots go to test-artifacts/ (kept by CI)."""

from __future__ import annotations

import re
import time

import pytest

from app_fixtures import app_settings, running_app
from conftest import udhr_articles
from pdf_factory import long_pdf
from test_browser_e2e import ARTIFACTS, CHROMIUM, browser, page  # noqa: F401 (shared fixtures)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def app(tmp_path_factory, e5):
    tmp = tmp_path_factory.mktemp("bchat")
    with running_app(app_settings(tmp, collection="docs"), e5, sample=True) as running:
        yield running


def _ask(page, text: str) -> None:
    page.locator("#ask-question textarea").fill(text)
    page.locator("#ask-btn").click()


def test_a_two_turn_conversation_survives_a_reload(app, page):
    from playwright.sync_api import expect

    page.goto(app.url)
    page.get_by_role("tab", name="Ask").click()
    _ask(page, "Who has the right to education?")
    chat = page.locator("#chat")
    expect(chat.locator(".lr-cite").first).to_be_visible()
    _ask(page, "And is it free?")
    expect(chat).to_contain_text("Answering: And is it free?")
    # the second answer cites the passage that says education shall be free
    expect(chat.locator(".lr-cite[class*=lr-m-]").last).to_be_visible()
    last_answer = chat.locator(".lr-answering").last.locator("xpath=..")
    expect(last_answer).to_contain_text(re.compile("shall be free|Elementary education"))
    expect(page.locator("#conversations")).to_contain_text("Who has the right to education?")
    page.screenshot(path=str(ARTIFACTS / "chat_1_two_turns.png"), full_page=True)

    page.reload()
    page.get_by_role("tab", name="Ask").click()
    expect(chat).to_contain_text("Who has the right to education?")
    expect(chat).to_contain_text("And is it free?")
    expect(chat).to_contain_text("Answering: And is it free?")
    page.screenshot(path=str(ARTIFACTS / "chat_2_after_reload.png"), full_page=True)
    # a new chat starts empty; the old one is still in the list and opens again
    page.locator("#new-chat").click()
    expect(chat).not_to_contain_text("And is it free?")
    page.locator("#conversations").get_by_text("Who has the right to education?").click()
    expect(chat).to_contain_text("And is it free?")


def test_the_progress_bar_moves_through_a_40_page_pdf(app, page, tmp_path):
    from playwright.sync_api import expect

    texts = udhr_articles("en") + udhr_articles("fr")
    pdf = long_pdf(tmp_path / "declaration_40_pages.pdf", [f"Page {i + 1}. " + texts[i % len(texts)] * 2
                                                            for i in range(40)])
    page.goto(app.url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload-files input[type=file]").set_input_files(str(pdf))
    expect(page.locator("#upload-files")).to_contain_text("KB")
    page.locator("#ingest-btn").click()
    bar = page.locator("#ingest-progress [role=progressbar]")
    expect(bar).to_be_visible()
    seen, lines, deadline = set(), set(), time.time() + 240
    while time.time() < deadline:
        value = int(bar.get_attribute("aria-valuenow") or 0)
        seen.add(value)
        lines.add(page.locator("#ingest-progress .lr-progress-text").inner_text())
        if value >= 100:
            break
        page.wait_for_timeout(250)
    page.screenshot(path=str(ARTIFACTS / "progress_done.png"), full_page=True)
    assert max(seen) == 100 and len(seen - {0, 100}) >= 1, seen  # it moved through values between the ends
    assert any(re.search(r"page \d+/40|chunks embedded", line) for line in lines), lines
    expect(page.locator("#ingest-status")).to_contain_text("1 ingested")
    expect(page.locator("#documents")).to_contain_text(pdf.name)


def test_a_second_collection_is_searched_alone_and_deleted(app, page, tmp_path):
    from playwright.sync_api import expect

    note = tmp_path / "boiler_manual.txt"
    note.write_text("To bleed a radiator, turn the valve a quarter turn with the radiator key until water "
                    "appears, then close it again.", encoding="utf-8")
    page.goto(app.url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#new-collection textarea, #new-collection input").first.fill("home-manuals")
    page.locator("#create-collection").click()
    expect(page.locator("#collection-status")).to_contain_text("Created collection")
    expect(page.locator("#doc-collection input")).to_have_value("home-manuals")
    page.locator("#upload-files input[type=file]").set_input_files(str(note))
    expect(page.locator("#upload-files")).to_contain_text(re.compile(r"\d\s*B"))
    page.locator("#ingest-btn").click()
    expect(page.locator("#ingest-status")).to_contain_text("1 ingested")

    page.get_by_role("tab", name="Search").click()
    page.locator("#search-collections input").click()
    page.get_by_role("option", name="home-manuals").click()
    page.keyboard.press("Escape")
    page.locator("#search-query textarea").fill("Comment purger un radiateur ?")
    page.locator("#search-btn").click()
    hits = page.locator("#search-results .lr-hit")
    expect(hits.first.locator(".lr-source")).to_have_text("boiler_manual.txt")
    assert {hits.nth(i).locator(".lr-source").inner_text() for i in range(hits.count())} == {"boiler_manual.txt"}
    page.screenshot(path=str(ARTIFACTS / "collection_search_alone.png"), full_page=True)

    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#doc-collection input")).to_have_value("home-manuals")
    page.locator("#drop-collection").click()
    expect(page.locator("#drop-confirm")).to_contain_text("home-manuals")
    page.locator("#drop-confirm-btn").click()
    expect(page.locator("#collection-status")).to_contain_text("Deleted collection")
    assert "home-manuals" not in app.workspace.collection_names()

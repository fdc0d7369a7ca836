"""Two users in a real browser (headless Debian chromium): each signs in, sees only their own collections and
documents, uploads, searches, signs out. Real app in multi-user mode (argon2 passwords in SQLite, e5-small)."""

from __future__ import annotations

import re

from app_fixtures import app_settings, running_app
from test_browser_e2e import ARTIFACTS, browser, page  # noqa: F401  (shared fixtures)
from test_browser_e2e import pytestmark  # noqa: F401  (needs chromium; slow)

PASSWORD = "correct horse battery"
OWN = {"alice": ("alice-notes", "plan.txt", "The Zanzibar pineapple budget for next spring is four thousand shillings."),
       "bob": ("bob-notes", "salary.txt", "The quokka salary ledger lists every bonus paid in the last quarter.")}


def _sign_in(page, url: str, who: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#username")).to_be_visible()  # the sign-in page: nothing else without a session
    page.locator("#username").fill(who)
    page.locator("#password").fill(PASSWORD)
    page.locator("#login-btn").click()
    expect(page.locator("#logout")).to_be_visible()


def test_each_user_sees_only_their_collections_uploads_and_signs_out(tmp_path, e5, page):  # noqa: F811
    from playwright.sync_api import expect

    from lusifer_rag.app.service import AppOptions

    settings = app_settings(tmp_path)
    with running_app(settings, e5, options=AppOptions(ingest_workers=0)) as app:
        ws = app.workspace
        for who, (coll, fname, text) in OWN.items():
            ws.identity.add_user(who, PASSWORD)
            p = ws.policy.user_principal(ws.identity.user_by_name(who))
            ws.create_collection(coll, principal=p)
            src = tmp_path / fname
            src.write_text(text, encoding="utf-8")
            ws.service(coll).ingest([(fname, src)], principal=p)
        for who, (coll, fname, _) in OWN.items():
            other_coll, other_file, other_text = next(v for k, v in OWN.items() if k != who)
            _sign_in(page, app.url, who)
            page.get_by_role("tab", name="Documents").click()
            expect(page.locator("#documents")).to_contain_text(fname)
            expect(page.locator("#documents")).not_to_contain_text(other_file)
            page.locator("#doc-collection input").click()
            options = page.get_by_role("option")
            expect(options.first).to_be_visible()
            names = [t.replace("✓", "").strip() for t in options.all_inner_texts()]  # the chosen one is ticked
            assert coll in names and other_coll not in names, (who, names)
            page.keyboard.press("Escape")
            # upload into their own collection
            upload = tmp_path / f"{who}_minutes.txt"
            upload.write_text(f"Minutes of {who}'s team meeting: the red kayak is stored in the boathouse.",
                              encoding="utf-8")
            page.locator("#upload-files input[type=file]").set_input_files(str(upload))
            expect(page.locator("#upload-files")).to_contain_text(re.compile(r"\d\s*[KM]?B"))  # uploaded: its size shows
            page.locator("#ingest-btn").click()
            expect(page.locator("#ingest-status")).to_contain_text("1 ingested", timeout=180_000)
            expect(page.locator("#documents")).to_contain_text(upload.name)
            # search: their documents are found, the other user's never
            for query, shown in ((other_text[:40], False), ("Where is the red kayak stored?", True)):
                page.goto(app.url)  # a fresh page per search: the results below are this query's
                page.get_by_role("tab", name="Search").click()
                page.locator("#search-query textarea").fill(query)
                page.locator("#search-btn").click()
                results = page.locator("#search-results")
                expect(results).to_contain_text(re.compile(r"\S"))  # the search started (or a result is shown)
                expect(results).not_to_contain_text("processing")  # and ended: hits, or "no results"
                expect(results).not_to_contain_text(other_file)
                expect(results).not_to_contain_text(f"{'bob' if who == 'alice' else 'alice'}_minutes.txt")
                if shown:
                    expect(results).to_contain_text(upload.name)
            page.screenshot(path=str(ARTIFACTS / f"teams_{who}.png"), full_page=True)
            page.locator("#logout").click()
            expect(page.locator("#username")).to_be_visible()
            page.goto(app.url)  # signed out: back to the sign-in page
            expect(page.locator("#username")).to_be_visible()
        assert {e["actor"] for e in ws.audit.read() if e["event"] == "login"} == {"alice", "bob"}

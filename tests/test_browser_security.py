"""In the real browser (headless Debian chromium): another site's page cannot read the app, and a hostile document
cannot make the app's pages load anything or restyle them. A local HTTP server plays the other site and counts
every request the hostile document's images would make."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from app_fixtures import app_settings, running_app, free_port
from lusifer_rag.app.access import LOCAL
from test_browser_e2e import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.slow,
]

ATTACK_PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
(async () => {{
  const app = "http://lan.example:{app_port}";
  const results = [];
  for (const [method, path, body] of [["GET", "/gradio_api/info", null], ["GET", "/api/v1/documents", null],
      ["POST", "/api/v1/search", JSON.stringify({{query: "education"}})]]) {{
    try {{
      const r = await fetch(app + path, {{method, body, credentials: "include",
                                          headers: body ? {{"Content-Type": "application/json"}} : {{}}}});
      results.push(path + " read " + (await r.text()).length);
    }} catch (e) {{ results.push(path + " blocked " + e.name); }}
  }}
  document.getElementById("out").textContent = results.join("\\n");
}})();
</script></body></html>"""

HOSTILE_MD = """# Session expired, re-enter password

<div style="position:fixed;top:0;left:0;width:100vw;height:100vh;background:#fff;z-index:99999">Session expired,
re-enter password <input type="password"></div>

The library lends board games for three weeks, and a damaged game must be replaced by the borrower.
![tracker](http://127.0.0.1:{port}/pixel.png) <img src="http://127.0.0.1:{port}/img.png">
Late returns cost one euro per day. [Pay here](http://127.0.0.1:{port}/pay)
"""


class _Site(http.server.ThreadingHTTPServer):
    """Serves the attack page and counts every other request (what an image or a link would fetch)."""

    def __init__(self, port: int, page: str):
        self.page, self.hits = page.encode(), []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/attack.html":
                    body, kind = site.page, "text/html"
                else:
                    site.hits.append(self.path)
                    body, kind = b"\x89PNG\r\n", "image/png"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, e5):
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("bsec")
    site_port = free_port()
    settings = app_settings(tmp, allowed_hosts="127.0.0.1,lan.example")
    with running_app(settings, e5, options=AppOptions(ingest_workers=0, anonymous_access="read"), sample=True) as app:
        app_port = int(app.url.rstrip("/").rsplit(":", 1)[1])
        site = _Site(site_port, ATTACK_PAGE.format(app_port=app_port))
        md = Path(tmp) / "library_rules.md"
        md.write_text(HOSTILE_MD.format(port=site_port), encoding="utf-8")
        report = app.service.ingest([("library_rules.md", md)], principal=LOCAL)
        assert report.by_status("ingested"), report.to_json()
        try:
            yield app, site, app_port, site_port
        finally:
            site.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    rules = "--host-resolver-rules=MAP lan.example 127.0.0.1, MAP evil.example 127.0.0.1"
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, rules])
        try:
            yield b
        finally:
            b.close()


def test_another_site_cannot_read_the_app_from_a_visitors_browser(setup, browser):
    from playwright.sync_api import expect

    app, site, app_port, site_port = setup
    page = browser.new_page()
    try:
        page.goto(f"http://lan.example:{app_port}/")  # the visitor uses the app (same origin works)
        expect(page.get_by_role("tab", name="Search")).to_be_visible(timeout=60_000)
        page.goto(f"http://evil.example:{site_port}/attack.html")
        out = page.locator("#out")
        expect(out).not_to_have_text("running", timeout=30_000)
        lines = out.inner_text().splitlines()
        assert len(lines) == 3 and all(" blocked TypeError" in line for line in lines), lines
    finally:
        page.close()


def test_a_hostile_document_loads_nothing_and_restyles_nothing(setup, browser):
    from playwright.sync_api import expect

    app, site, app_port, site_port = setup
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=60_000)  # a shared 2-core CI box embeds slowly
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        page.goto(app.url)
        page.locator("#search-query textarea").fill("How long can I borrow a board game?")
        page.locator("#search-btn").click()
        results = page.locator("#search-results")
        expect(results).to_contain_text("board games")
        expect(results).to_contain_text("pixel.png")  # the markup is shown as text
        page.get_by_role("tab", name="Ask").click()
        page.locator("#ask-question textarea").fill("How long can I borrow a board game from the library?")
        page.locator("#ask-btn").click()
        chat = page.locator("#chat")
        expect(chat).to_contain_text("three weeks")
        titles = chat.get_by_text(re.compile(r"\[\d+\] library_rules\.md"))
        expect(titles.first).to_be_visible()
        for title in titles.all():
            title.click()  # open every citation of the document: its passage holds the markup, shown as text
        expect(chat).to_contain_text("pixel.png")
        # and in the source viewer: [n] of that document opens it in its surrounding text
        n = re.match(r"\[(\d+)\]", titles.first.inner_text().strip()).group(1)
        chat.locator(f".lr-cite.lr-n-{n}").first.click()
        viewer = page.locator("#viewer")
        expect(viewer.locator(".lr-context mark")).to_be_visible()
        expect(viewer).to_contain_text("pixel.png")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "browser_hostile_document.png"), full_page=True)
        assert page.locator("#chat img, #search-results img, #viewer img").count() == 0
        assert page.locator("#chat a[href], #search-results a[href]").count() == 0
        links = viewer.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert links and all(h.startswith("/api/v1/documents/") for h in links), links  # the download only
        fixed = page.evaluate("""() => [...document.querySelectorAll('#chat *, #search-results *, #viewer *')]
                                 .filter(e => getComputedStyle(e).position === 'fixed').length""")
        assert fixed == 0
        assert page.locator("#chat h1, #search-results h1, #viewer h1").count() == 0
        # no request ever reached the document's image or link addresses
        assert not [h for h in site.hits if h.startswith(("/pixel.png", "/img.png", "/pay"))], site.hits
    finally:
        page.close()

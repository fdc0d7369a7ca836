"""The README's screenshot: the Ask tab with a cited PDF page opened in the source viewer.

Serves the app on 127.0.0.1 over a scratch data dir with the bundled sample corpus (multilingual-e5-small, offline),
asks a question in headless chromium through playwright, opens the first citation of the Spanish PDF and saves the
page as a 256-colour PNG::

    .venv/bin/python scripts/readme_screenshot.py docs/ask_viewer.png
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import tempfile
from pathlib import Path

QUESTION = "¿Quién tiene derecho a la educación?"
PDF = "udhr_es.pdf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--chromium", default=os.environ.get("LUSIFER_RAG_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args()

    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from lusifer_rag.app.access import LOCAL
    from lusifer_rag.app.ui import build_app, launch
    from lusifer_rag.app.workspace import Workspace
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.settings import Settings

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        settings = Settings.from_env(env={}, store=str(Path(tmp) / "store"), data_dir=tmp, collection="sample")
        with open_store_from(settings) as store:
            ws = Workspace(settings, store)
            ws.ingest_sample(principal=LOCAL)
            demo = build_app(ws)
            server = launch(demo, ws, port=port, block=False, quiet=True)
            try:
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
                    page = browser.new_page(viewport={"width": 1300, "height": 900})
                    page.set_default_timeout(120_000)
                    expect.set_options(timeout=120_000)
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.get_by_role("tab", name="Ask").click()
                    page.locator("#ask-question textarea").fill(QUESTION)
                    page.locator("#ask-btn").click()
                    titles = page.locator("#chat").get_by_text(re.compile(rf"\[\d+\] sample/{re.escape(PDF)}"))
                    expect(titles.first).to_be_visible()
                    n = min(int(re.match(r"\[(\d+)\]", t.strip()).group(1)) for t in titles.all_inner_texts())
                    page.locator(f"#chat .lr-cite.lr-n-{n}").first.click()
                    page.wait_for_function("() => { const i = document.querySelector('#viewer img.lr-page-image');"
                                           " return i && i.complete && i.naturalWidth > 0; }")
                    png = page.screenshot(full_page=False)
                    browser.close()
            finally:
                server.close()
                demo.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {image.size[0]}x{image.size[1]}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

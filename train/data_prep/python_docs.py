"""The Python documentation (``python3.11-doc``): Sphinx HTML pages split into units."""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict
from pathlib import Path

from .common import Unit, _make_unit, clean_heading, clean_text, truncate_words

PY_SKIP_PAGES = re.compile(r"^(genindex.*|search|py-modindex|contents|copyright|license|download)\.html$"
                           r"|^whatsnew/changelog\.html$")


# ---- python-docs: Sphinx HTML --------------------------------------------------------------------------
def _python_families(html: Path) -> dict[str, str]:
    """Library page → its chapter ("library/text"), from the toctree of library/index.html and the chapters."""
    def toc(page: Path) -> list[str]:  # Sphinx writes each entry as <li class="toctree-l1"><a ... href="x.html">
        if not page.is_file():
            return []
        text = page.read_text(encoding="utf-8", errors="replace")
        hrefs = re.findall(r'<li class="toctree-l1"><a class="reference internal" href="([^"#]+)"', text)
        return list(dict.fromkeys(h for h in hrefs if "://" not in h))

    families: dict[str, str] = {"library/index.html": "library/index"}
    for chapter in toc(html / "library" / "index.html"):
        name = f"library/{Path(chapter).stem}"
        todo = [(chapter, 0)]
        while todo:  # the chapter, its pages, their sub-pages (asyncio-*.html under asyncio.html under ipc.html)
            page, depth = todo.pop(0)
            if f"library/{page}" in families:
                continue
            families[f"library/{page}"] = name
            if depth < 3:
                todo += [(p, depth + 1) for p in toc(html / "library" / page) if "/" not in p]
    return families


def _python_family(rel: str, families: dict[str, str]) -> str:
    if rel in families:
        return families[rel]
    parts = rel.split("/")
    if parts[0] == "library":
        return f"library/{Path(parts[-1]).stem}"
    return parts[0] if len(parts) > 1 else "general"


def _text(el) -> str:
    return clean_text(el.get_text())


def _parse_python_page(args: tuple[str, str, str]) -> list[dict]:
    """The units of one HTML page (run in worker processes)."""
    path, rel, family = args
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(Path(path).read_bytes(), "lxml")
    body = soup.find("div", class_="body") or soup.find("div", attrs={"role": "main"})
    if body is None:
        return []
    drop_classes = {"a": {"headerlink"}, "span": {"section-number"}, "p": {"admonition-title"},
                    "div": {"highlight", "contents", "toctree-wrapper"}}
    for el in body.find_all(["a", "span", "p", "div", "pre", "table", "nav", "script", "style"]):
        if el.decomposed:
            continue
        classes = set(el.get("class") or ())
        if (el.name in ("pre", "table", "nav", "script", "style") or classes & drop_classes.get(el.name, set())
                or (el.name == "div" and any(c.startswith("highlight") for c in classes))
                or (el.name == "p" and el.get_text().lstrip().startswith("Source code:"))):
            el.decompose()
    h1 = body.find("h1")
    title = clean_heading(h1.get_text()) if h1 else Path(rel).stem
    page = title.split(" — ")[0].strip() or title
    units: list[Unit | None] = []

    def is_entry(dl) -> bool:
        dt = dl.find("dt", recursive=False)
        return dt is not None and "sig" in (dt.get("class") or [])

    def own_blocks(dd) -> list[str]:
        return [_text(el) for el in dd.find_all(["p", "dt"]) if el.name == "p" or el.find_parent("dd") is not dd]

    for i, dl in enumerate(reversed(body.find_all("dl"))):  # innermost first: nested entries are removed first
        if is_entry(dl):
            dt = dl.find("dt", recursive=False)
            dd = dl.find("dd", recursive=False)
            signature = _text(dt)
            name = dt.get("id") or signature
            if dd is not None:
                blocks = own_blocks(dd)
                u = _make_unit(uid=f"{rel}#{name}", dataset="python-docs", family=family, kind="api",
                               heading=name, blocks=blocks, context=page)
                if u is not None and u.first:  # the positive leads with the signature
                    u.rest = truncate_words(f"{signature}: {u.rest}")
                    u.text = truncate_words(f"{signature}: {u.text}")
                units.append(u)
            dl.extract()
        elif "glossary" in (dl.get("class") or []):
            terms: list[str] = []
            for child in dl.find_all(["dt", "dd"], recursive=False):
                if child.name == "dt":
                    terms.append(clean_heading(child.get_text()))
                    continue
                blocks = [_text(p) for p in child.find_all("p")]
                for term in terms:
                    units.append(_make_unit(uid=f"{rel}#term-{term}", dataset="python-docs", family=family,
                                            kind="glossary", heading=term, blocks=blocks, context=page))
                terms = []
            dl.extract()
    units.reverse()

    heading, hid, blocks, n, level = None, "", [], 0, 0
    sections: list[Unit | None] = []

    def flush() -> None:
        if heading:
            sections.append(_make_unit(uid=f"{rel}#{hid or n}", dataset="python-docs", family=family,
                                       kind="section", heading=heading, blocks=blocks, context=page,
                                       level=level))

    for el in body.find_all(["h1", "h2", "h3", "p", "dt", "li"]):
        if el.name in ("h1", "h2", "h3"):
            flush()
            n += 1
            heading = clean_heading(el.get_text())
            level = int(el.name[1])
            section = el.find_parent("section")
            hid = (section.get("id") if section is not None else None) or str(n)
            blocks = []
        elif el.name == "li" and (el.find("p") or el.find(["ul", "ol", "li"])):
            continue  # its paragraphs come on their own
        else:
            blocks.append(_text(el))
    flush()
    return [asdict(u) for u in sections + units if u is not None]

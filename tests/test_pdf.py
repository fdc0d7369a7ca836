"""PDF text on real-world PDFs (committed excerpts of Debian documentation, tests/data/pdf), encrypted PDFs built
here with pypdf, running headers and footers, and the PDF backends."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

import pdf_factory as pf
from text_fidelity import glued_share, recall

from lusifer_rag.ingest.loaders import DocumentError, load_document
from lusifer_rag.ingest.options import LoadOptions
from lusifer_rag.ingest.pdf import EXTRACTORS, open_pdf

REAL = Path(__file__).parent / "data" / "pdf"
# (excerpt, its running title) — see tests/data/pdf/README.md
RUNNING_TITLES = {"maint-guide-en": "Debian New Maintainers’ Guide",
                  "devref-ja": "Debian Developer’s Reference, リリース 12.18"}


def reference(name: str) -> str:
    return (REAL / f"{name}.pdftotext.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["maint-guide-en", "devref-ja", "formation-fr"])
def test_real_pdfs_keep_their_words_and_their_spaces(name):
    """DocBook/DBLaTeX (where pypdf glued 11% of the words: 'youshouldbemotivatedtodothings'), pLaTeX/dvipdfmx
    Japanese (CID fonts pypdf turns into garbage), LaTeX French: against poppler's pdftotext."""
    doc = load_document(REAL / f"{name}.pdf")
    ref = reference(name)
    assert [p.number for p in doc.pages] == list(range(1, ref.count("\f") + 1))  # one page per PDF page
    assert recall(doc.text, ref) >= 0.95
    assert glued_share(doc.text, ref) <= 0.005


def test_real_right_to_left_pdf():
    """Persian (XeLaTeX): every letter in poppler's order, no words run together. PDFium writes the zero-width
    non-joiner inside words ('می‌کند') as a space, so at word level ~8% of poppler's words come out as two."""
    doc = load_document(REAL / "lshort-fa.pdf")
    ref = reference("lshort-fa")

    def letter_pairs(text: str) -> Counter:
        run = re.sub(r"[\s\u200c\u200d\u0640]+", "", unicodedata.normalize("NFKC", text))
        letters = "".join(ch for ch in run if "\u0600" <= ch <= "\u06ff")
        return Counter(letters[i:i + 2] for i in range(len(letters) - 1))

    have, want = letter_pairs(doc.text), letter_pairs(ref)
    assert sum(min(n, have[p]) for p, n in want.items()) / sum(want.values()) >= 0.98
    assert recall(doc.text, ref) >= 0.9
    assert glued_share(doc.text, ref) <= 0.005


def test_pypdf_is_what_loses_the_words():
    """The same measure on the previous extractor: why the default changed (docs/pdf.md)."""
    opts = LoadOptions(extractor="pypdf")
    doc = load_document(REAL / "maint-guide-en.pdf", options=opts)
    assert glued_share(doc.text, reference("maint-guide-en")) > 0.05
    assert recall(load_document(REAL / "devref-ja.pdf", options=opts).text, reference("devref-ja")) < 0.5


@pytest.mark.slow
def test_running_titles_stay_out_of_chunks(e5):
    from lusifer_rag.ingest.chunking import ChunkingParams
    from lusifer_rag.ingest.pipeline import chunker_for

    chunker = chunker_for(e5, ChunkingParams(max_tokens=512))
    for name, title in RUNNING_TITLES.items():
        ref = reference(name)
        assert ref.count(title) >= ref.count("\f")  # it is on every page of the excerpt
        chunks = chunker.chunk(load_document(REAL / f"{name}.pdf"))
        assert len(chunks) >= 4
        assert sum(title in c.text for c in chunks) <= 0.1 * len(chunks), name


def test_book_headers_footers_and_page_numbers_go_page_numbers_stay(tmp_path, udhr):
    articles = udhr("en")[:12]
    doc = load_document(pf.book_pdf(tmp_path / "book.pdf", articles))
    assert [p.number for p in doc.pages] == list(range(1, 13))
    for page, article in zip(doc.pages, articles):
        assert "Study Guide" not in page.text and "Chapter" not in page.text
        assert not re.search(r"\b\d+ / 12\b", page.text)
        assert article.split(".")[0][:60] in page.text.replace("\n", " ")  # the body stays, on its own page


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_restriction_only_encryption_reads_like_any_pdf(tmp_path, algorithm):
    plain = pf.english_pdf(tmp_path / "plain.pdf")
    locked = pf.encrypted_copy(plain, tmp_path / f"{algorithm}.pdf", algorithm=algorithm)
    assert b"/Encrypt" in locked.read_bytes()
    assert [p.text for p in load_document(locked).pages] == [p.text for p in load_document(plain).pages]
    for name in EXTRACTORS:  # both backends decrypt it (pypdf through its crypto extra)
        assert open_pdf(locked.read_bytes(), str(locked), LoadOptions(extractor=name)).pages == 3


def test_a_pdf_that_needs_a_password_fails_alone_and_says_so(tmp_path):
    locked = pf.encrypted_copy(pf.english_pdf(tmp_path / "p.pdf"), tmp_path / "locked.pdf", user_password="s3cret",
                               algorithm="AES-256")
    with pytest.raises(DocumentError) as e:
        load_document(locked)
    assert e.value.reason == "encrypted"
    assert "password-protected PDF" in str(e.value) and str(locked) in str(e.value)
    assert "DependencyError" not in str(e.value)
    # the password given, globally or for the file
    assert load_document(locked, options=LoadOptions(passwords=("nope", "s3cret"))).pages
    assert load_document(locked, options=LoadOptions(password_map={"locked*.pdf": "s3cret"})).pages
    with pytest.raises(DocumentError, match="1 configured password"):
        load_document(locked, options=LoadOptions(password_map={"other.pdf": "s3cret"}, passwords=("x",)))


def test_a_file_the_backend_cannot_open_goes_to_the_fallback(tmp_path, monkeypatch):
    """The open-or-fallback logic, above the backend interface: a backend that cannot read a file hands it on."""
    from lusifer_rag.ingest import pdf as pdf_mod

    class Unreadable(pdf_mod.PdfExtractor):
        name = "unreadable"

        def open(self, data, password):
            raise RuntimeError("cannot parse this")

    monkeypatch.setitem(pdf_mod.EXTRACTORS, "unreadable", Unreadable())
    src = pf.english_pdf(tmp_path / "e.pdf")
    doc = load_document(src, options=LoadOptions(extractor="unreadable"))
    assert doc.text == load_document(src, options=LoadOptions(extractor="pypdf")).text
    monkeypatch.setattr(pdf_mod, "FALLBACK", "unreadable")
    with pytest.raises(DocumentError, match="corrupt: RuntimeError: cannot parse this"):
        load_document(src, options=LoadOptions(extractor="unreadable"))


def test_bad_pdf_options_are_clear_errors():
    from lusifer_rag.errors import ConfigError

    with pytest.raises(ConfigError, match="pdf_extractor 'acrobat' is not known; allowed"):
        LoadOptions(extractor="acrobat")
    with pytest.raises(ConfigError, match="ocr"):
        LoadOptions(ocr="sometimes")
    with pytest.raises(ConfigError, match="ocr_dpi"):
        LoadOptions(ocr_dpi=5)

"""OCR with the real Tesseract (Debian's tesseract-ocr + language packs, installed by scripts/setup.sh): scanned
PDFs made here by rendering generated text PDFs to images and wrapping them back into image-only PDFs, image
files, blank scans, per-page time caps; then through the real pipeline into the embedded store and found by
search. Also: a big file does not hold the others back, and a piped ingest says where it is."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import pdf_factory as pf

from lusifer_rag.ingest import ocr
from lusifer_rag.ingest.loaders import DocumentError, load_document
from lusifer_rag.ingest.options import LoadOptions

ROOT = Path(__file__).resolve().parents[1]
PACKS = ocr.installed_packs()
if not {"eng", "fra", "jpn", "osd"} <= PACKS:
    _why = (f"TESSERACT OCR TESTS SKIPPED: tesseract with the eng, fra, jpn and osd packs is needed (found: "
            f"{sorted(PACKS) or 'no tesseract'}); run scripts/setup.sh --dev as root")
    warnings.warn(_why)
    print(f"\n*** {_why} ***\n", file=sys.stderr)
    pytestmark = pytest.mark.skip(reason=_why)


@pytest.fixture(scope="module")
def scans(tmp_path_factory, udhr):
    d = tmp_path_factory.mktemp("scans")
    fr = pf.text_pdf(d / "fr-text.pdf", [udhr("fr")[0], udhr("fr")[2]])
    ja = pf.text_pdf(d / "ja-text.pdf", [pf.JAPANESE_TEXT], font="NotoSansSC")
    return {
        "fr": pf.scanned_copy(fr, d / "scan-fr.pdf", blank_pages=1),
        "ja": pf.scanned_copy(ja, d / "scan-ja.pdf"),
        "blank": _blank_scan(d / "blank.pdf"),
        "png": _png_of(fr, d / "page.png"),
    }


def _blank_scan(path: Path) -> Path:
    from PIL import Image

    Image.new("L", (1654, 2339), 255).save(path, "PDF", resolution=200)
    return path


def _png_of(src: Path, path: Path) -> Path:
    pf.render_pages(src, 200)[0].save(path)
    return path


def test_scanned_latin_pdf_is_read_with_its_page_numbers(scans, udhr):
    doc = load_document(scans["fr"])
    assert doc.ocr_pages == [1, 2] and [p.number for p in doc.pages] == [1, 2]
    assert doc.empty_pages == ((3, "blank"),)  # the blank page is reported, not silently dropped
    text = doc.pages[0].text.replace("\n", " ")
    assert "Tous les êtres humains naissent libres et égaux en dignité" in text
    assert "liberté" in doc.pages[1].text  # article 3, the second page


def test_scanned_japanese_pdf_script_detected_and_read(scans):
    doc = load_document(scans["ja"])
    assert doc.ocr_pages == [1]
    assert "生まれながらにして自由であり" in doc.text.replace(" ", "")


def test_image_files_are_read_by_ocr(scans):
    doc = load_document(scans["png"])
    assert doc.mime == "image/*" and doc.ocr_pages == [1]
    assert "naissent libres et égaux" in doc.text.replace("\n", " ")


def test_a_blank_scan_is_reported_not_ingested_empty(scans):
    with pytest.raises(DocumentError) as e:
        load_document(scans["blank"])
    assert e.value.reason == "no-text-layer" and "OCR included" in str(e.value)


def test_ocr_off_and_a_page_over_its_time_cap(scans):
    with pytest.raises(DocumentError, match="OCR is off"):
        load_document(scans["fr"], options=LoadOptions(ocr="off"))
    with pytest.raises(DocumentError, match="timed out after"):
        load_document(scans["fr"], options=LoadOptions(ocr_timeout=0.001))


def test_forced_ocr_reads_pages_that_have_a_text_layer(tmp_path, udhr):
    src = pf.text_pdf(tmp_path / "t.pdf", [udhr("en")[0]])
    assert load_document(src).ocr_pages == []
    forced = load_document(src, options=LoadOptions(ocr="force"))
    assert forced.ocr_pages == [1] and "born free and equal" in forced.text.replace("\n", " ")


def test_explicit_languages_and_missing_packs(scans):
    assert "naissent" in load_document(scans["fr"], options=LoadOptions(ocr_languages="fra")).text
    with pytest.raises(DocumentError, match="tesseract-ocr-klingon"):
        load_document(scans["fr"], options=LoadOptions(ocr_languages="klingon"))


def test_without_tesseract_the_error_says_how_to_install_it(scans, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without the tesseract program
    ocr.installed_packs.cache_clear()
    try:
        with pytest.raises(DocumentError) as e:
            load_document(scans["fr"])
        assert e.value.reason == "no-text-layer" and "apt-get install tesseract-ocr" in str(e.value)
        with pytest.raises(DocumentError, match="apt-get install tesseract-ocr"):
            load_document(scans["png"])
    finally:
        monkeypatch.undo()
        ocr.installed_packs.cache_clear()


@pytest.mark.slow
def test_scans_and_images_are_found_by_search(tmp_path, scans, e5, udhr):
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.rag.retrieval import Retriever
    from lusifer_rag.store import Filter, open_store

    docs = tmp_path / "docs"
    docs.mkdir()
    for key in ("fr", "ja", "png", "blank"):
        (docs / scans[key].name).write_bytes(scans[key].read_bytes())
    for lang in ("en", "sw"):
        (docs / f"udhr-{lang}.txt").write_text("\n\n".join(udhr(lang)[:3]), encoding="utf-8")
    with open_store(str(tmp_path / "store")) as store:
        report = Ingestor(store, "c", e5, progress_mode="off").ingest([docs])
        by_name = {Path(r.source).name: r for r in report.results}
        assert by_name["blank.pdf"].status == "failed" and by_name["blank.pdf"].reason == "no-text-layer"
        assert by_name["scan-fr.pdf"].ocr_pages == 2 and by_name["scan-fr.pdf"].empty_pages == [[3, "blank"]]
        assert by_name["scan-ja.pdf"].ocr_pages == 1 and by_name["page.png"].ocr_pages == 1
        assert "4 pages OCR'd" in report.summary()
        points, _ = store.scroll("c", filter=Filter(must={"metadata.source": str((docs / "scan-fr.pdf").resolve())}),
                                 limit=10)
        assert points and all(p.payload["metadata"]["ocr"] is True for p in points)
        assert {p.payload["metadata"]["page"] for p in points} <= {1, 2}
        text_points, _ = store.scroll("c", filter=Filter(must={"metadata.language": "sw"}), limit=5)
        assert text_points and all(p.payload["metadata"]["ocr"] is False for p in text_points)

        r = Retriever(store, "c", e5)
        for query, name in (("Tous les êtres humains naissent libres et égaux en dignité et en droits", "scan-fr.pdf"),
                            ("すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である", "scan-ja.pdf")):
            hits = r.search(query, k=3)
            assert any(Path(h.source).name in (name, "page.png") for h in hits[:2]), (query, [h.source for h in hits])


@pytest.mark.slow
def test_a_big_scan_does_not_hold_back_the_rest(tmp_path, scans, e5, udhr, monkeypatch):
    """In-process ingest (CPU embedder): a file over BIG_FILE_BYTES is read on a lane of its own, and the small
    files after it are done first."""
    from lusifer_rag.ingest import pipeline
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    monkeypatch.setattr(pipeline, "BIG_FILE_BYTES", 50_000)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-scan.pdf").write_bytes(scans["fr"].read_bytes())  # sorted first
    assert (docs / "a-scan.pdf").stat().st_size >= 50_000
    for i, lang in enumerate(("en", "sw", "hi")):
        (docs / f"b{i}-{lang}.txt").write_text(udhr(lang)[i], encoding="utf-8")
    order = []
    with open_store(str(tmp_path / "store")) as store:
        ing = Ingestor(store, "c", e5, workers=0, progress_mode="off",
                       on_progress=lambda done, total, r: order.append(Path(r.source).name))
        report = ing.ingest([docs])
    assert report.exit_code == 0 and len(order) == 4
    assert order[-1] == "a-scan.pdf", order


@pytest.mark.slow
def test_a_piped_ingest_prints_a_line_per_file_and_per_long_file(tmp_path, scans, udhr):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(scans["fr"].read_bytes())
    (docs / "notes.txt").write_text(udhr("en")[0], encoding="utf-8")
    env = {**os.environ, "LUSIFER_RAG_STORE": str(tmp_path / "store"), "LUSIFER_RAG_COLLECTION": "c"}
    env.pop("LUSIFER_RAG_PROGRESS", None)
    run = subprocess.run([sys.executable, "-m", "lusifer_rag", "ingest", str(docs)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)  # stderr is a pipe, not a terminal
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("[")]
    assert any(line.startswith("[1/2] ingested") for line in lines) and any(line.startswith("[2/2]") for line in lines)
    assert any("2 pages OCR'd" in line and "p.3 (blank)" in line for line in lines), lines
    assert "note:" in run.stdout and "1 page(s) gave no text: 3 (blank)" in run.stdout


def test_progress_lines_for_long_documents(capsys):
    from lusifer_rag.ingest.pipeline import Progress

    p = Progress(3, mode="plain")
    p.PLAIN_EVERY = 0.0
    p.page_done("big.pdf", 1, 300)  # the first call only starts the clock
    p.page_done("big.pdf", 120, 300)
    assert "[0/3] big.pdf: page 120/300" in capsys.readouterr().err

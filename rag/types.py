"""Types shared by retrieval, answering, the LangChain adapters and the UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RetrievedChunk:
    """One retrieved passage with what a citation needs."""

    id: str
    text: str
    score: float
    source: str
    page: int | None = None
    page_end: int | None = None
    language: str = "und"
    doc_id: str = ""
    title: str = ""
    char_start: int | None = None
    char_end: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    collection: str = ""  # the collection it was found in (set by the app's searches)
    #: the chunk's stored sentence vectors (ingest/sentence_vectors.py), for highlights; None if not stored
    sentence_vectors: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_payload(cls, id: str, score: float, payload: dict) -> "RetrievedChunk":
        md = payload.get("metadata", {}) or {}
        return cls(id=str(id), text=payload.get("page_content", ""), score=float(score), source=md.get("source", ""),
                   page=md.get("page"), page_end=md.get("page_end"), language=md.get("language", "und"),
                   doc_id=md.get("doc_id", ""), title=md.get("title", ""), char_start=md.get("char_start"),
                   char_end=md.get("char_end"), metadata=md, sentence_vectors=payload.get("sentence_vectors"))


@dataclass
class Citation:
    """Source number n as cited in the answer text ("[n]"), mapped back to its chunk."""

    number: int
    chunk: RetrievedChunk


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    language: str  # ISO 639-1 code the answer is written in (requested or detected from the question)
    contexts: list[RetrievedChunk]  # every passage given to the answerer, numbered 1..n in order
    backend: str = ""  # "openai", "transformers", "extractive"
    extractive: bool = False  # True: the text is extracts from the documents, not generated
    no_context: bool = False  # True: nothing relevant was retrieved
    question: str = ""  # the question as asked
    resolved_question: str = ""  # a follow-up resolved against the conversation (rag/conversation.py); "" if asked alone

    def to_json(self) -> dict:
        return {
            "answer": self.text, "language": self.language, "backend": self.backend, "extractive": self.extractive,
            "no_context": self.no_context, "question": self.question, "resolved_question": self.resolved_question,
            "citations": [{"n": c.number, "source": c.chunk.source, "page": c.chunk.page, "page_end": c.chunk.page_end,
                           "chunk_id": c.chunk.id, "doc_id": c.chunk.doc_id, "collection": c.chunk.collection,
                           "language": c.chunk.language, "text": c.chunk.text}
                          for c in self.citations],
            "contexts": [{"n": i + 1, "source": c.source, "page": c.page, "score": c.score, "chunk_id": c.id}
                         for i, c in enumerate(self.contexts)],
        }

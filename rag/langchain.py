"""LangChain integration: ``LusiferEmbeddings`` (langchain_core ``Embeddings``) and ``LusiferRetriever``
(``BaseRetriever``). Users import them from ``lusifer_rag.langchain``.

>>> from lusifer_rag.langchain import LusiferRetriever
>>> retriever = LusiferRetriever.from_collection("documents", k=5)
>>> docs = retriever.invoke("Ni nani ana haki ya elimu?", k=3)

Through a running lusifer-rag server's HTTP API instead (``from_collection`` goes there by itself when the server
holds the store):

>>> retriever = LusiferRetriever.from_server("http://127.0.0.1:7860", api_key=None, collection="documents", k=5)
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from lusifer_rag.remote import RemoteRetriever

from .retrieval import Retriever, SearchFilters
from .types import RetrievedChunk


class LusiferEmbeddings(Embeddings):
    """Any of our embedders as LangChain ``Embeddings`` (python floats, as LangChain expects).

    ``query_instruction``: None uses the model's default retrieval instruction (LUSIFER) / prefix (E5).
    """

    def __init__(self, embedder: Any = None, spec: str | None = None, query_instruction: str | None = None,
                 document_instruction: str | None = None, **load_options: Any):
        if embedder is None:
            from lusifer_rag.embedder import load_embedder

            embedder = load_embedder(spec or "e5-small", **load_options)
        self.embedder = embedder
        self.query_instruction, self.document_instruction = query_instruction, document_instruction

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts), instruction=self.document_instruction).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text], instruction=self.query_instruction)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def chunk_to_document(chunk: RetrievedChunk) -> Document:
    metadata = dict(chunk.metadata)
    metadata.update({"score": chunk.score, "source": chunk.source, "page": chunk.page, "language": chunk.language,
                     "chunk_id": chunk.id})
    return Document(page_content=chunk.text, metadata=metadata, id=chunk.id)


class LusiferRetriever(BaseRetriever):
    """A LangChain retriever over a lusifer-rag collection.

    ``k``, ``languages``, ``sources``, ``mode`` ("dense" | "hybrid" | "sparse"), ``score_threshold`` and ``mmr``
    are set in the constructor and can be overridden per call: ``retriever.invoke(q, k=3, languages=["sw"])``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever | RemoteRetriever
    k: int = 4
    languages: Sequence[str] | None = None
    sources: Sequence[str] | None = None
    mode: str | None = None
    score_threshold: float | None = None
    mmr: bool = False
    extra: dict = Field(default_factory=dict)

    @classmethod
    def from_collection(cls, collection: str, store: str | None = None, settings: Any = None, **kwargs: Any) -> "LusiferRetriever":
        """Open ``collection`` with the embedder it was built with (store, device and search options from
        settings). When a lusifer-rag server holds that store, through the server (``from_server``)."""
        from lusifer_rag.remote import find_server
        from lusifer_rag.runtime import collection_embedder, open_store_from
        from lusifer_rag.settings import Settings

        settings = settings or Settings.from_env(store=store)
        url = find_server(settings.store_location)
        if url is not None:
            import logging

            logging.getLogger(__name__).info("the store %s is served by the lusifer-rag server at %s: searching "
                                             "through it", settings.store_location, url)
            return cls.from_server(url, api_key=settings.api_key, collection=collection, **kwargs)
        st = open_store_from(settings)
        emb = collection_embedder(st, collection, settings)
        return cls(retriever=Retriever.from_settings(st, collection, emb, settings), **kwargs)

    @classmethod
    def from_server(cls, url: str | None = None, api_key: str | None = None, collection: str | None = None,
                    **kwargs: Any) -> "LusiferRetriever":
        """Search ``collection`` (None: every collection the server has) through the lusifer-rag server at ``url``
        (default: LUSIFER_RAG_SERVER), sending ``api_key`` (default: LUSIFER_RAG_API_KEY) as a Bearer token.
        ``kwargs``: ``k``, ``languages``, ``sources``, ``mode``, ``score_threshold`` (applied to the server's
        results); MMR and ``debias`` need ``from_collection``."""
        from lusifer_rag.errors import ConfigError
        from lusifer_rag.remote import ServerClient
        from lusifer_rag.settings import Settings

        if url is None or api_key is None:
            settings = Settings.from_env()
            url, api_key = url or settings.server, api_key if api_key is not None else settings.api_key
        if not url:
            raise ConfigError("give the server's URL (from_server('http://host:port')) or set LUSIFER_RAG_SERVER")
        return cls(retriever=RemoteRetriever(ServerClient(url, api_key=api_key), collection), **kwargs)

    def _search(self, query: str, **overrides: Any) -> list[Document]:
        opts = {"k": self.k, "languages": self.languages, "sources": self.sources, "mode": self.mode,
                "score_threshold": self.score_threshold, "mmr": self.mmr, **self.extra, **overrides}
        unknown = set(opts) - {"k", "languages", "sources", "doc_ids", "mode", "score_threshold", "mmr", "mmr_lambda",
                               "debias"}
        if unknown:
            raise TypeError(f"unknown retriever arguments {sorted(unknown)}")
        filters = SearchFilters(languages=opts.pop("languages"), sources=opts.pop("sources"),
                                doc_ids=opts.pop("doc_ids", None))
        chunks = self.retriever.search(query, filters=filters, **opts)
        return [chunk_to_document(c) for c in chunks]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        return self._search(query, **kwargs)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        return await asyncio.to_thread(self._search, query, **kwargs)

"""LangChain integration: the standard langchain-tests suites, and langchain-qdrant reading our server collection."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests

from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor
from lusifer_rag.store import open_store
from lusifer_rag.langchain import LusiferEmbeddings, LusiferRetriever
from lusifer_rag.rag.retrieval import Retriever

_shared: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _collection(tmp_path_factory, e5, udhr):
    docs = tmp_path_factory.mktemp("lc-docs")
    for lang in ("en", "sw", "fr"):
        for a in range(1, 9):
            (docs / f"{lang}_{a}.txt").write_text(udhr(lang)[a - 1], encoding="utf-8")
    store = open_store(str(tmp_path_factory.mktemp("lc") / "store"))
    Ingestor(store, "lc", e5, ChunkingParams(max_tokens=256), workers=1).ingest([docs])
    _shared.update(e5=e5, retriever=Retriever(store, "lc", e5), docs=docs)
    yield
    store.close()


class TestLusiferEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self):
        return LusiferEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embedder": _shared["e5"]}


class TestLusiferRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return LusiferRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"retriever": _shared["retriever"]}

    @property
    def retriever_query_example(self) -> str:
        return "Who has the right to education?"


def test_retriever_filters_and_per_call_overrides(udhr):
    r = LusiferRetriever(retriever=_shared["retriever"], k=4, languages=["sw"])
    docs = r.invoke(udhr("en")[0])
    assert len(docs) == 4 and {d.metadata["language"] for d in docs} == {"sw"}
    docs2 = r.invoke(udhr("en")[0], k=2, languages=["fr"])
    assert len(docs2) == 2 and {d.metadata["language"] for d in docs2} == {"fr"}
    assert docs[0].metadata["source"] and isinstance(docs[0].metadata["score"], float)
    with pytest.raises(TypeError, match="unknown retriever arguments"):
        r.invoke("x", colour="blue")


def test_from_collection_takes_the_search_options_from_the_settings(tmp_path, e5, udhr):
    """``from_collection`` opens a collection by name with the settings' store and search options (it used to build
    its retriever with the defaults, whatever the settings said)."""
    from lusifer_rag.settings import Settings

    docs = tmp_path / "docs"
    docs.mkdir()
    for lang in ("en", "sw"):
        (docs / f"{lang}_26.txt").write_text(udhr(lang)[25], encoding="utf-8")
    store = open_store(str(tmp_path / "store"))
    Ingestor(store, "fc", e5, ChunkingParams(max_tokens=256), workers=1).ingest([docs])
    store.close()
    settings = Settings(store=str(tmp_path / "store"), search_mode="dense", debias="off", same_language_pivot=True)
    r = LusiferRetriever.from_collection("fc", settings=settings, k=1)
    try:
        inner = r.retriever
        assert (inner.mode, inner.debias, inner.same_language_pivot) == ("dense", "off", True)
        hits = r.invoke("Ni nani ana haki ya elimu?")
        assert [Path(h.metadata["source"]).name for h in hits] == ["sw_26.txt"]
    finally:
        r.retriever.store.close()


def test_embeddings_return_python_floats():
    emb = LusiferEmbeddings(embedder=_shared["e5"])
    v = emb.embed_query("Habari")
    assert isinstance(v, list) and isinstance(v[0], float) and len(v) == 384


def test_langchain_qdrant_reads_a_server_collection(tmp_path, udhr):
    """Ingest into qdrant-client's local mode (standing in for a server), then query it with QdrantVectorStore."""
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import models

    with open_store(f"qdrant-local:{tmp_path / 'q'}") as store:
        Ingestor(store, "srv", _shared["e5"], ChunkingParams(max_tokens=256), workers=1).ingest([_shared["docs"]])
        vs = QdrantVectorStore(client=store.client, collection_name="srv", embedding=LusiferEmbeddings(embedder=_shared["e5"]))
        flt = models.Filter(must=[models.FieldCondition(key="metadata.language", match=models.MatchValue(value="fr"))])
        found = vs.similarity_search(udhr("sw")[0], k=3, filter=flt)
        assert len(found) == 3 and all(d.metadata["language"] == "fr" for d in found)
        assert Path(found[0].metadata["source"]).name == "fr_1.txt"
        assert found[0].page_content == udhr("fr")[0]

"""The LangChain classes at the short path, as partner packages export them.

>>> from lusifer_rag.langchain import LusiferEmbeddings, LusiferRetriever
>>> retriever = LusiferRetriever.from_collection("documents", k=5)
>>> docs = retriever.invoke("Ni nani ana haki ya elimu?", k=3)
"""

from lusifer_rag.rag.langchain import LusiferEmbeddings, LusiferRetriever, chunk_to_document

__all__ = ["LusiferEmbeddings", "LusiferRetriever", "chunk_to_document"]

"""The mteb adapter: LUSIFER's task instructions, the mteb 2.x encode protocol, and a tiny local mteb task."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eval_fakes import BagOfWordsEmbedder
from lusifer_rag.rag.eval.beir import BeirDataset, Document, Query
from lusifer_rag.rag.eval.mteb_adapter import CLAIM, CLASSIFY, CLUSTER, NLI, QA, SIMILAR, MtebModel, instruction_for
from lusifer_rag.rag.eval.runner import evaluate_raw

TEMPLATE = "Instruct: {instruction}\nQuery: "


@pytest.mark.parametrize("name,type_,expected", [
    ("SciFact", "Retrieval", CLAIM), ("ArguAna-PL", "Retrieval", CLAIM), ("FEVERHardNegatives", "Retrieval", CLAIM),
    ("TRECCOVID", "Retrieval", CLAIM), ("MSMARCO", "Retrieval", QA), ("MIRACLRetrieval", "Retrieval", QA),
    ("BelebeleRetrieval", "Retrieval", QA), ("MIRACLReranking", "Reranking", QA),
    ("CQADupstackAndroidRetrieval", "Retrieval", SIMILAR), ("QuoraRetrieval", "Retrieval", SIMILAR),
    ("AskUbuntuDupQuestions", "Reranking", SIMILAR), ("STS17", "STS", SIMILAR), ("SummEval", "Summarization", SIMILAR),
    ("XNLI", "PairClassification", NLI), ("indonli", "PairClassification", NLI),
    ("SprintDuplicateQuestions", "PairClassification", SIMILAR),
    ("TwentyNewsgroupsClustering", "Clustering", CLUSTER),
])
def test_instruction_table(name, type_, expected):
    assert instruction_for(name, type_) == expected


def test_classification_uses_the_task_prompt():
    assert instruction_for("Banking77Classification", "Classification", "Given a query, find the intent") \
        == "Given a query, find the intent"
    assert instruction_for("X", "Classification", {"query": "Classify X"}) == "Classify X"
    assert instruction_for("X", "Classification", None) == CLASSIFY


def _batches(texts, size=2):
    return [{"text": texts[i:i + size]} for i in range(0, len(texts), size)]


def test_encode_protocol_roles_and_instructions():
    emb = BagOfWordsEmbedder(instruction_template=TEMPLATE)
    model = MtebModel(emb)
    assert model.use_instructions
    meta = SimpleNamespace(name="SciFact", type="Retrieval", prompt=None)
    docs, queries = ["a b c", "d e f", "g h"], ["a?", "g?"]
    dv = model.encode(_batches(docs), task_metadata=meta, hf_split="test", hf_subset="default", prompt_type="document")
    qv = model.encode(_batches(queries), task_metadata=meta, hf_split="test", hf_subset="default", prompt_type="query")
    # the same instruction goes to both sides; our Embedder applies the query/document templates
    assert np.allclose(dv, emb.embed_documents(docs, instruction=CLAIM))
    assert np.allclose(qv, emb.embed_queries(queries, instruction=CLAIM))
    assert not np.allclose(qv, emb.embed_queries(queries, instruction=QA))
    # non-retrieval tasks (prompt_type None) use the query template
    sv = model.encode(_batches(docs), task_metadata=SimpleNamespace(name="STS17", type="STS", prompt=None), hf_split="test", hf_subset="en-de")
    assert np.allclose(sv, emb.embed_queries(docs, instruction=SIMILAR))
    assert model.calls == [("SciFact", "document", CLAIM, 3), ("SciFact", "query", CLAIM, 2), ("STS17", None, SIMILAR, 3)]
    # cosine similarity of normalised vectors
    sim = model.similarity(qv, dv)
    assert tuple(sim.shape) == (2, 3) and np.allclose(np.asarray(sim), qv @ dv.T, atol=1e-6)
    assert np.allclose(np.asarray(model.similarity_pairwise(qv, qv)), 1.0, atol=1e-6)


def test_encode_without_instruction_support():
    emb = BagOfWordsEmbedder()  # like e5-small: a fixed role, any instruction is an error
    model = MtebModel(emb)
    assert not model.use_instructions
    meta = SimpleNamespace(name="SciFact", type="Retrieval", prompt=None)
    out = model.encode(_batches(["x y", "z"]), task_metadata=meta, prompt_type="query")
    assert np.allclose(out, emb.embed_queries(["x y", "z"]))
    # a per-task override is still passed (and the embedder says clearly it takes none)
    from lusifer_rag.errors import EmbedderError

    with pytest.raises(EmbedderError, match="takes no instruction"):
        MtebModel(emb, instructions={"SciFact": "custom"}).encode(_batches(["x"]), task_metadata=meta, prompt_type="query")


DOCS = {"d1": "cats purr softly when happy", "d2": "dogs bark loudly at strangers", "d3": "the stock market fell sharply",
        "d4": "rain falls in april showers", "d5": "bread is baked in hot ovens"}
QUERIES = {"q1": "why do cats purr", "q2": "stock market crash", "q3": "when does rain fall", "q4": "how is bread baked"}
QRELS = {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d4": 2, "d5": 1}, "q4": {"d5": 1}}


@pytest.mark.slow  # importing mteb (datasets, polars, sklearn) takes ~10-30 s on 2 cores
def test_tiny_local_mteb_task_agrees_with_our_metrics():
    """mteb.evaluate on an in-memory retrieval task (no download) gives the nDCG@10 our runner computes."""
    mteb = pytest.importorskip("mteb", reason="mteb not installed (pip install mteb)")
    datasets = pytest.importorskip("datasets")
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    # metadata of a real task (shipped inside mteb, no network) renamed: the "Retrieval" type -> QA instruction
    meta = mteb.get_task("MSMARCO").metadata.model_copy(
        update={"name": "TinyLocalRetrieval", "dataset": {"path": "local/tiny", "revision": "1"}, "eval_splits": ["test"]})

    class Tiny(AbsTaskRetrieval):
        metadata = meta

        def load_data(self, **kwargs):
            corpus = datasets.Dataset.from_dict({"id": list(DOCS), "title": [""] * len(DOCS), "text": list(DOCS.values())})
            queries = datasets.Dataset.from_dict({"id": list(QUERIES), "text": list(QUERIES.values())})
            self.dataset = {"default": {"test": {"corpus": corpus, "queries": queries, "relevant_docs": QRELS,
                                                 "top_ranked": None}}}
            self.data_loaded = True

    emb = BagOfWordsEmbedder(instruction_template=TEMPLATE)
    model = MtebModel(emb)
    result = mteb.evaluate(model, [Tiny()], cache=None, show_progress_bar=False)
    assert not result.exceptions
    scores = result.task_results[0].scores["test"][0]
    assert sorted(c[:3] for c in model.calls) == [("TinyLocalRetrieval", "document", QA), ("TinyLocalRetrieval", "query", QA)]
    ours = evaluate_raw(emb, BeirDataset("tiny", [Document(k, v) for k, v in DOCS.items()],
                                         [Query(k, v) for k, v in QUERIES.items()], QRELS), k_values=(1, 10), instruction=QA)
    assert scores["ndcg_at_10"] == pytest.approx(ours.overall["ndcg@10"], abs=1e-4)
    assert scores["recall_at_1"] == pytest.approx(ours.overall["recall@1"], abs=1e-4)
    assert model.mteb_model_meta.name == "lusifer-rag/bow"

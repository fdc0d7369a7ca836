"""The same operations on the embedded Qdrant Edge backend and on qdrant-client's local mode (the server's
stand-in) give the same results; both agree with a numpy brute-force ground truth. Also: langchain-qdrant
reads a collection we wrote, and quantized collections still find the right neighbour (rescoring)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from lusifer_rag.store import CollectionSpec, Filter, Point, SparseVector, both, open_store
from lusifer_rag.errors import StoreError

DIM = 32
N = 300
LANGS = ["en", "sw", "zh", "ar", "hi"]
VOCAB = 200


def make_points(n: int = N, dim: int = DIM, seed: int = 0, start: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    pts = []
    for j in range(n):
        i = start + j
        nnz = int(rng.integers(3, 9))
        idx = rng.choice(VOCAB, size=nnz, replace=False)
        sv = SparseVector(idx, rng.uniform(0.1, 1.0, size=nnz))
        doc = f"d{i % 30}"
        meta = {"doc_id": doc, "source": f"/docs/{doc}.pdf", "language": LANGS[i % len(LANGS)], "page": i, "chunk": i,
                "acl": ["public"] if i % 5 == 0 else [f"u:{i % 4}", f"g:{'ab'[i % 2]}"]}  # a list-valued field
        pts.append(Point(str(uuid.uuid5(uuid.NAMESPACE_URL, f"pt-{i}")), vecs[j], {"page_content": f"text {i}", "metadata": meta}, sv))
    return pts


def matches(p: Point, flt: Filter | None) -> bool:
    """Python reference semantics of our Filter."""
    if flt is None:
        return True
    m = p.payload["metadata"]

    def ok(key: str, want) -> bool:
        have = m[key.split(".", 1)[1]]
        values = have if isinstance(have, list) else [have]  # a list-valued field matches by any of its values
        return any(h in want if isinstance(want, (list, tuple, set)) else h == want for h in values)

    return (
        all(ok(k, v) for k, v in flt.must.items())
        and not any(ok(k, v) for k, v in flt.must_not.items())
        and all((lo is None or m[k.split(".", 1)[1]] >= lo) and (hi is None or m[k.split(".", 1)[1]] <= hi)
                for k, (lo, hi) in flt.ranges.items())
        and all(matches(p, sub) for sub in flt.all_of)
        and (flt.ids is None or p.id in flt.ids)
    )


def brute_force(points: list[Point], q: np.ndarray, k: int, flt: Filter | None) -> list[tuple[str, float]]:
    """Cosine top-k with numpy: the ground truth both engines must reproduce."""
    cand = [p for p in points if matches(p, flt)]
    mat = np.stack([p.vector for p in cand])  # (c, dim)
    mat = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    sims = mat @ (q / np.linalg.norm(q))  # (c,)
    order = np.argsort(-sims)[:k]
    return [(cand[i].id, float(sims[i])) for i in order]


FILTERS = [
    None,
    Filter(must={"metadata.language": "sw"}),
    Filter(must={"metadata.doc_id": ["d1", "d7", "d12"]}),
    Filter(must_not={"metadata.language": ["en", "zh"]}, ranges={"metadata.page": (50, 220)}),
    Filter(must={"metadata.source": "/docs/d3.pdf"}, ranges={"metadata.page": (None, 150)}),
    # an access filter ANDed with a caller's on the same key: neither replaces the other's condition
    both(Filter(must={"metadata.acl": ["g:a", "public"]}), Filter(must={"metadata.acl": "u:2"},
                                                                  must_not={"metadata.language": "en"})),
]


@pytest.fixture(params=["edge", "local"])
def store(request, tmp_path):
    loc = str(tmp_path / "edge") if request.param == "edge" else ":memory:"
    with open_store(loc) as s:
        yield s


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One collection per backend with the same 300 points; tests that write use their own collection."""
    with open_store(str(tmp_path_factory.mktemp("cong") / "edge")) as edge, open_store(":memory:") as local:
        pts = make_points()
        for s in (edge, local):
            s.create_collection("docs", CollectionSpec(dim=DIM, meta={"embedder": "test", "embedder_fingerprint": "abc"}))
            s.upsert("docs", pts)
        yield edge, local, pts


@pytest.mark.parametrize("fi", range(len(FILTERS)))
def test_dense_exact_matches_brute_force_on_both(both, fi):
    edge, local, pts = both
    flt = FILTERS[fi]
    rng = np.random.default_rng(100 + fi)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        want = brute_force(pts, q, 10, flt)
        for s in (edge, local):
            hits = s.query("docs", q, filter=flt, k=10, exact=True)
            assert [h.id for h in hits] == [w[0] for w in want], type(s).__name__
            np.testing.assert_allclose([h.score for h in hits], [w[1] for w in want], atol=1e-4)
            assert all(matches(Point(h.id, None, h.payload), flt) for h in hits)
            cut = want[4][1]  # the 5th best score: a threshold keeps exactly the first 5
            kept = s.query("docs", q, filter=flt, k=10, exact=True, score_threshold=cut - 1e-6)
            assert [h.id for h in kept] == [w[0] for w in want[:5]]


def test_dense_default_search_same_top_k(both):
    # small collections are searched brute-force by both engines even without exact=True
    edge, local, pts = both
    for p in pts[:20]:
        a = edge.query("docs", p.vector, k=5)
        b = local.query("docs", p.vector, k=5)
        assert [h.id for h in a] == [h.id for h in b]
        assert a[0].id == p.id and a[0].score == pytest.approx(1.0, abs=1e-5)


def test_sparse_idf_same_on_both(both):
    edge, local, pts = both
    rng = np.random.default_rng(5)
    for _ in range(10):
        idx = rng.choice(VOCAB, size=4, replace=False)
        q = SparseVector(idx, rng.uniform(0.5, 1.0, size=4))
        a = edge.query("docs", sparse=q, mode="sparse", k=10)
        b = local.query("docs", sparse=q, mode="sparse", k=10)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4)
        # ids agree wherever scores are not tied
        sa = {round(h.score, 4): h.id for h in a}
        sb = {round(h.score, 4): h.id for h in b}
        for score in set(sa) & set(sb):
            if sum(round(h.score, 4) == score for h in a) == 1:
                assert sa[score] == sb[score]
        # every hit shares at least one term with the query
        terms = set(q.indices.tolist())
        by_id = {p.id: p for p in pts}
        assert all(terms & set(by_id[h.id].sparse.indices.tolist()) for h in a)


def test_hybrid_is_rrf_of_the_two_legs(both):
    edge, local, pts = both
    rng = np.random.default_rng(9)
    flt = Filter(must_not={"metadata.language": "hi"})
    for rrf_k in (None, 60):
        q = rng.standard_normal(DIM).astype(np.float32)
        sq = SparseVector(rng.choice(VOCAB, size=5, replace=False), np.ones(5))
        scores = []
        for s in (edge, local):
            hits = s.query("docs", q, sq, filter=flt, k=8, mode="hybrid", rrf_k=rrf_k, prefetch_limit=30)
            dense = s.query("docs", q, filter=flt, k=30, exact=True)
            sparse = s.query("docs", sparse=sq, filter=flt, k=30, mode="sparse")
            kk = 2 if rrf_k is None else rrf_k
            fused: dict[str, float] = {}
            for leg in (dense, sparse):
                for rank, h in enumerate(leg):
                    fused[h.id] = fused.get(h.id, 0.0) + 1.0 / (kk + rank)  # Qdrant: 0-based rank
            for h in hits:
                assert h.score == pytest.approx(fused[h.id], rel=1e-5)
            assert [h.score for h in hits] == pytest.approx(sorted(fused.values(), reverse=True)[:8], rel=1e-5)
            scores.append([h.score for h in hits])
        assert scores[0] == pytest.approx(scores[1], rel=1e-5)


def test_count_facet_scroll_delete_reupsert_congruent(both):
    edge, local, pts = both
    results = []
    for s in (edge, local):
        s.create_collection("w", CollectionSpec(dim=DIM))
        s.upsert("w", pts)
        r = {}
        r["count"] = s.count("w")
        r["counts"] = [s.count("w", f) for f in FILTERS[1:]]
        r["facet"] = s.facet("w", "metadata.language")
        # scroll pagination is complete: every id once, nothing else
        seen, offset, pages = [], None, 0
        while True:
            page, offset = s.scroll("w", limit=37, offset=offset)
            seen += [p.id for p in page]
            pages += 1
            if offset is None:
                break
        r["scroll"] = seen
        r["pages"] = pages
        # filtered scroll
        r["scroll_sw"] = sorted(p.id for p in s.iter_points("w", FILTERS[1], page=16))
        # delete by filter
        s.delete("w", Filter(must={"metadata.doc_id": ["d1", "d2"]}))
        r["after_delete"] = s.count("w")
        s.delete("w", Filter(ids=[pts[0].id, pts[3].id]))
        r["after_id_delete"] = s.count("w")
        # re-upsert the same ids: no duplicates, payload replaced
        again = [Point(p.id, p.vector, {**p.payload, "page_content": "v2"}, p.sparse) for p in pts]
        s.upsert("w", again)
        r["after_reupsert"] = s.count("w")
        r["v2"] = s.count("w") == sum(1 for p in s.iter_points("w") if p.payload["page_content"] == "v2")
        results.append(r)
    e, l = results
    assert e == l
    assert e["count"] == N
    assert e["counts"] == [sum(matches(p, f) for p in pts) for f in FILTERS[1:]]
    assert e["facet"] == {lang: sum(p.payload["metadata"]["language"] == lang for p in pts) for lang in LANGS}
    assert len(e["scroll"]) == len(set(e["scroll"])) == N and set(e["scroll"]) == {p.id for p in pts}
    assert e["pages"] == -(-N // 37)
    assert e["scroll_sw"] == sorted(p.id for p in pts if matches(p, FILTERS[1]))
    deleted = sum(p.payload["metadata"]["doc_id"] in ("d1", "d2") for p in pts)
    assert e["after_delete"] == N - deleted
    assert e["after_id_delete"] == N - deleted - 2  # pts 0 and 3 belong to d0 and d3
    assert e["after_reupsert"] == N and e["v2"]


def test_scroll_with_vectors_round_trips(store):
    pts = make_points(40)
    store.create_collection("c", CollectionSpec(dim=DIM))
    store.upsert("c", pts)
    got = {p.id: p for p in store.iter_points("c", with_vectors=True, page=7)}
    for p in pts:
        g = got[p.id]
        unit = p.vector / np.linalg.norm(p.vector)  # cosine collections store normalised vectors
        np.testing.assert_allclose(g.vector, unit, atol=1e-5)
        assert dict(zip(g.sparse.indices.tolist(), g.sparse.values.tolist())) == pytest.approx(
            dict(zip(p.sparse.indices.tolist(), p.sparse.values.tolist())))
        assert g.payload == p.payload
    hit = store.query("c", pts[4].vector, k=1, with_vectors=True)[0]
    np.testing.assert_allclose(hit.vector, pts[4].vector / np.linalg.norm(pts[4].vector), atol=1e-5)


def test_meta_recorded_updated_and_enforced(store):
    spec = CollectionSpec(dim=DIM, meta={"embedder": "e5-small", "embedder_fingerprint": "f-1", "chunking": {"max_tokens": 256}})
    store.create_collection("c", spec)
    assert store.open_collection("c").meta == spec.meta
    store.open_collection("c", expect={"embedder": "e5-small", "embedder_fingerprint": "f-1", "dim": DIM})
    with pytest.raises(Exception) as err:
        store.open_collection("c", expect={"embedder": "lusifer:/m", "embedder_fingerprint": "f-2"})
    msg = str(err.value)
    assert "e5-small" in msg and "f-1" in msg and "lusifer:/m" in msg and "f-2" in msg
    with pytest.raises(Exception, match="384-dim|32-dim"):
        store.open_collection("c", expect={"embedder": "x", "dim": 384})
    # exist_ok create with the same embedder returns the stored spec; another embedder is refused
    assert store.create_collection("c", spec, exist_ok=True).meta == spec.meta
    other = CollectionSpec(dim=DIM, meta={"embedder": "other", "embedder_fingerprint": "f-9"})
    with pytest.raises(Exception, match="f-9"):
        store.create_collection("c", other, exist_ok=True)
    new_meta = {**spec.meta, "chunking": {"max_tokens": 512}}
    store.update_meta("c", new_meta)
    assert store.open_collection("c").meta == new_meta
    assert store.open_collection("c").dim == DIM


@pytest.mark.parametrize("quant", ["int8", "binary"])
def test_quantized_collection_finds_true_neighbour(store, quant, tmp_path):
    dim = 64
    pts = make_points(600, dim=dim, seed=3)
    spec = CollectionSpec(dim=dim, quantization=quant, indexing_threshold_kb=1)
    store.create_collection("q", spec)
    store.upsert("q", pts)
    store.optimize("q")  # the embedded engine builds its HNSW + quantized segments here
    assert store.open_collection("q").quantization == quant
    if store.location != ":memory:":  # local mode has no quantization (brute force); a server gets the config
        edge_cfg = json.loads((tmp_path / "edge" / "collections" / "q" / "shard" / "edge_config.json").read_text())
        assert ("scalar" if quant == "int8" else "binary") in edge_cfg["quantization_config"]
    rng = np.random.default_rng(11)
    for p in pts[:25]:
        q = p.vector + 0.05 * rng.standard_normal(dim).astype(np.float32)
        want = brute_force(pts, q, 1, None)[0]
        hit = store.query("q", q, k=1)[0]
        assert hit.id == want[0]
        assert hit.score == pytest.approx(want[1], abs=1e-4)  # rescored with the original vectors


class TableEmbeddings:
    """A deterministic langchain Embeddings: known texts map to their stored vectors."""

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table, self.dim = table, dim

    def _one(self, text: str) -> list[float]:
        if text in self.table:
            return self.table[text].tolist()
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        return rng.standard_normal(self.dim).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


def test_langchain_qdrant_reads_our_collection():
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import models

    Table = type("Table", (TableEmbeddings, Embeddings), {})
    pts = make_points(120)
    with open_store(":memory:") as s:
        s.create_collection("docs", CollectionSpec(dim=DIM, meta={"embedder": "t"}))
        s.upsert("docs", pts)
        emb = Table({p.payload["page_content"]: p.vector for p in pts}, DIM)
        lc = QdrantVectorStore(client=s.client, collection_name="docs", embedding=emb)
        for p in pts[:10]:
            docs = lc.similarity_search(p.payload["page_content"], k=3)
            ours = s.query("docs", p.vector, k=3)
            assert [d.metadata["_id"] for d in docs] == [h.id for h in ours]
            assert docs[0].page_content == p.payload["page_content"]
            assert docs[0].metadata == {**p.payload["metadata"], "_id": p.id, "_collection_name": "docs"}
        flt = models.Filter(must=[models.FieldCondition(key="metadata.language", match=models.MatchValue(value="zh"))])
        docs = lc.similarity_search(pts[0].payload["page_content"], k=5, filter=flt)
        assert len(docs) == 5 and all(d.metadata["language"] == "zh" for d in docs)


def test_foreign_collection_opens_without_meta():
    from qdrant_client import models

    with open_store(":memory:") as s:
        s.client.create_collection("lc", vectors_config={"": models.VectorParams(size=8, distance=models.Distance.COSINE)})
        spec = s.open_collection("lc", expect={"embedder_fingerprint": "anything", "dim": 8})
        assert spec.dim == 8 and spec.meta == {} and spec.vector_name == "" and spec.sparse_name is None
        s.upsert("lc", [Point(str(uuid.uuid4()), np.ones(8, np.float32), {"page_content": "x", "metadata": {}})])
        assert s.count("lc") == 1


def test_set_payload_inside_metadata_and_a_payload_index_added_later(store):
    """What a grant change does (app/workspace.py sync_acl): a field set inside ``metadata`` of the points a filter
    picks, the rest of the payload and the vectors kept; an index added to a collection created without it."""
    store.create_collection("acl", CollectionSpec(dim=4, payload_indexes={"metadata.doc_id": "keyword"}))
    pts = [Point(id=str(uuid.uuid4()), vector=np.eye(4, dtype=np.float32)[i],
                 payload={"metadata": {"doc_id": "a" if i < 3 else "b", "n": i}}) for i in range(4)]
    store.upsert("acl", pts)
    store.set_payload("acl", Filter(must={"metadata.doc_id": "a"}), {"acl": ["u:1", "public"]}, key="metadata")
    store.ensure_payload_index("acl", "metadata.acl", "keyword")
    assert store.open_collection("acl").payload_indexes["metadata.acl"] == "keyword"
    assert store.count("acl", Filter(must={"metadata.acl": ["public"]})) == 3
    got = {str(p.id): p for p in store.iter_points("acl", with_vectors=True)}
    for p in pts:
        md = got[str(p.id)].payload["metadata"]
        assert md["n"] == p.payload["metadata"]["n"] and ("acl" in md) == (md["doc_id"] == "a")
        assert np.array_equal(got[str(p.id)].vector, p.vector)
    with pytest.raises(StoreError, match="needs a non-empty filter"):
        store.set_payload("acl", Filter(), {"acl": []}, key="metadata")

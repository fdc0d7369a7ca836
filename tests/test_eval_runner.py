"""Runner (raw and pipeline modes), reports and the ``eval`` command; e5-small end to end on UDHR."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval_fakes import BagOfWordsEmbedder
from lusifer_rag.errors import ConfigError, LusiferRagError
from lusifer_rag.rag.eval.beir import BeirDataset, Document, Query, load_beir
from lusifer_rag.rag.eval.metrics import evaluate_run, read_trec_run
from lusifer_rag.rag.eval.report import markdown_report, matrix, plot_heatmap, read_json, write_json
from lusifer_rag.rag.eval.runner import best_chunk_per_doc, evaluate_pipeline, evaluate_raw, exact_top
from lusifer_rag.rag.eval.udhr import TEST_SUBSET_DIR, build_test_benchmark

TOPICS = ["cats purr and sleep", "dogs bark at night", "rivers flow to the sea", "stock markets fell today",
          "rain falls in april", "bread is baked in ovens"]


def _synthetic(exclude: bool = False, cell_mode: str = "pooled") -> BeirDataset:
    """Two 'languages' (x, y) holding the same six topics with a language-specific word; queries in both."""
    corpus = [Document(f"{lang}{i}", f"{t} {lang}word extra{i % 2}", "", lang) for lang in "xy" for i, t in enumerate(TOPICS)]
    queries = [Query(f"q{lang}{i}", t.split()[0] + f" {lang}word", lang) for lang in "xy" for i, t in enumerate(TOPICS)]
    qrels = {f"q{ql}{i}": {f"{dl}{i}": 1 for dl in "xy" if not (exclude and dl == ql)} for ql in "xy" for i in range(len(TOPICS))}
    return BeirDataset("synthetic", corpus, queries, qrels, exclude, cell_mode, extra={"languages": ["x", "y"]})


def _brute_force(emb, ds: BeirDataset) -> dict[str, list[str]]:
    d = emb.embed_documents([doc.full_text for doc in ds.corpus])
    q = emb.embed_queries([qq.text for qq in ds.queries])
    out = {}
    for i, qq in enumerate(ds.queries):
        order = np.argsort(-(d @ q[i]), kind="stable")
        out[qq.id] = [ds.corpus[j].id for j in order
                      if not (ds.exclude_query_language and ds.corpus[j].language == qq.language)]
    return out


@pytest.mark.parametrize("exclude", [False, True])
def test_evaluate_raw_matches_brute_force(exclude):
    emb = BagOfWordsEmbedder()
    ds = _synthetic(exclude)
    res = evaluate_raw(emb, ds, k_values=(1, 3, 10))
    brute = _brute_force(emb, ds)
    assert {q: [d for d, _ in r] for q, r in res.run.items()} == brute
    expected = evaluate_run({q: [(d, 0.0) for d in r] for q, r in brute.items()}, ds.qrels, (1, 3, 10))
    assert res.per_query == expected
    if exclude:  # own language never ranked
        assert all(not d.startswith(q[1]) for q, r in res.run.items() for d, _ in r)
    assert res.overall["n_queries"] == len(ds.queries)
    assert set(res.by_query_language) == {"x", "y"}


def test_exact_top_partial_equals_full_sort():
    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((7, 8)).astype(np.float32), rng.standard_normal((50, 8)).astype(np.float32)
    mask = rng.random((7, 50)) < 0.3
    full_i, full_v = exact_top(q, d, 50, mask)
    part_i, part_v = exact_top(q, d, 5, mask)
    assert np.array_equal(full_i[:, :5], part_i) and np.allclose(full_v[:, :5], part_v)
    assert not mask[np.arange(7)[:, None], part_i].any()  # 5 < unmasked count: no masked doc in the top


def test_best_chunk_per_doc_by_hand():
    class Hit:  # RetrievedChunk-like
        def __init__(self, doc_id, score):
            self.doc_id, self.score = doc_id, score

    hits = [("a", 0.5), ("b", 0.9), ("a", 0.95), Hit("c", 0.5), ("b", 0.1)]
    # a: max(0.5, 0.95) = 0.95; b: 0.9; c: 0.5
    assert best_chunk_per_doc(hits) == [("a", 0.95), ("b", 0.9), ("c", 0.5)]
    assert best_chunk_per_doc([("x", 0.3), ("y", 0.3)]) == [("x", 0.3), ("y", 0.3)]  # ties: first seen first
    assert best_chunk_per_doc([]) == []


@pytest.mark.parametrize("exclude", [False, True])
def test_pipeline_mode_document_search_equals_raw(exclude):
    """A search_fn over whole documents with the same vectors reproduces the raw mode exactly."""
    emb = BagOfWordsEmbedder()
    ds = _synthetic(exclude, "restricted")
    vecs = emb.embed_documents([d.full_text for d in ds.corpus])
    calls = []

    def search(text: str, k: int):
        calls.append(k)
        s = vecs @ emb.embed_queries([text])[0]
        return [(ds.corpus[i].id, float(s[i])) for i in np.argsort(-s, kind="stable")[:k]]

    res = evaluate_pipeline(search, ds, k_values=(1, 3, 10), name="bow-pipeline")
    raw = evaluate_raw(emb, ds, k_values=(1, 3, 10))
    assert res.mode == "pipeline" and res.name == "bow-pipeline"
    assert {q: [d for d, _ in r] for q, r in res.run.items()} == {q: [d for d, _ in r] for q, r in raw.run.items()}
    assert res.per_query == raw.per_query and res.cells == raw.cells
    if exclude:  # asked for more to make up for the dropped own-language documents
        assert max(calls) == len(ds.corpus)


def test_pipeline_mode_over_chunks():
    """Chunk hits (a whole-document chunk plus a one-word chunk per document) become documents scored by
    their best chunk; recall@10 stays within the issue's 0.99x of the raw mode."""
    emb = BagOfWordsEmbedder()
    ds = _synthetic(True, "restricted")
    chunks = [(d.id, d.full_text) for d in ds.corpus] + [(d.id, d.full_text.split()[0]) for d in ds.corpus]
    vecs = emb.embed_documents([t for _, t in chunks])

    def search(text: str, k: int):
        s = vecs @ emb.embed_queries([text])[0]
        hits = [(chunks[i][0], float(s[i])) for i in np.argsort(-s, kind="stable")]
        return best_chunk_per_doc(hits)[:k]

    res = evaluate_pipeline(search, ds, k_values=(1, 3, 10))
    raw = evaluate_raw(emb, ds, k_values=(1, 3, 10))
    for q, ranking in res.run.items():
        docs = [d for d, _ in ranking]
        assert len(docs) == len(set(docs))  # one entry per document
        assert all(s1 >= s2 for (_, s1), (_, s2) in zip(ranking, ranking[1:]))
        assert not any(d.startswith(q[1]) for d in docs)
    assert res.overall["recall@10"] >= 0.99 * raw.overall["recall@10"]


def test_reports(tmp_path):
    emb = BagOfWordsEmbedder()
    ds = _synthetic(False, "pooled")
    a = evaluate_raw(emb, ds, k_values=(1, 10))
    b = evaluate_raw(BagOfWordsEmbedder(dim=8), ds, k_values=(1, 10))
    b.name = "bow-8"
    path = write_json(tmp_path / "r.json", [a, b])
    back = read_json(path)
    assert [r["name"] for r in back] == ["bow", "bow-8"]
    assert back[0]["overall"]["recall@10"] == pytest.approx(a.overall["recall@10"], abs=1e-6)
    assert back[0]["cells"]["x"]["y"]["recall@10"] == pytest.approx(a.cells["x"]["y"]["recall@10"], abs=1e-6)
    assert set(back[0]["per_query"]) == set(a.per_query)
    assert json.loads(path.read_text())["format"] == "lusifer-rag-eval/1"
    md = markdown_report(back)
    assert "| bow | raw |" in md and "| bow-8 | raw |" in md and "### recall@10: query language" in md
    langs, mat = matrix(back[0])
    assert langs == ["x", "y"]
    assert mat[0][1] == pytest.approx(a.cells["x"]["y"]["recall@10"], abs=1e-6)
    # the row for query language x in the per-language table carries its recall@10
    row = next(line for line in md.splitlines() if line.startswith("| x | 6 |"))
    assert f"{a.by_query_language['x']['recall@10']:.3f}" in row
    png = plot_heatmap(tmp_path / "m.png", [a, b])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100


def _register_bow(monkeypatch):
    from lusifer_rag.embedder import registry

    def factory(arg, device=None, dtype=None, **options):
        return BagOfWordsEmbedder(dim=int(arg) if arg else 32)

    monkeypatch.setitem(registry._REGISTRY, "bow-test", (factory, "test bag of words"))


def test_cli_eval_builds_udhr_and_writes_everything(tmp_path, monkeypatch, capsys):
    import lusifer_rag.rag.eval.cli  # noqa: F401  registers `eval`
    from lusifer_rag.cli import main

    _register_bow(monkeypatch)
    bench = tmp_path / "bench"
    code = main(["eval", str(bench), "--build-udhr", str(TEST_SUBSET_DIR), "--languages", "en,sw,zh",
                 "--variant", "mixed", "--raw", "--embedder", "bow-test", "--embedder", "bow-test:8",
                 "--run", str(tmp_path / "run.trec"), "--json", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "m.png"), "--k", "1,10"])
    assert code == 0
    out = capsys.readouterr().out
    assert "# Retrieval evaluation: udhr-mixed-3lang" in out
    ds = load_beir(bench)
    assert len(ds.corpus) == 3 * 12
    results = read_json(tmp_path / "r.json")
    assert [r["name"] for r in results] == ["bow-test", "bow-test:8"]
    for r, tag in zip(results, ["bow-test", "bow-test_8"]):
        run = read_trec_run(tmp_path / f"run.{tag}.trec")
        assert set(run) == set(ds.qrels) and all(len(v) == len(ds.corpus) for v in run.values())
        # the run file alone reproduces the reported metrics
        again = evaluate_run(run, ds.qrels, (1, 10))
        assert np.mean([m["recall@10"] for m in again.values()]) == pytest.approx(r["overall"]["recall@10"], abs=1e-6)
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_cli_eval_errors(tmp_path, monkeypatch, capsys):
    import lusifer_rag.rag.eval.cli  # noqa: F401
    from lusifer_rag.cli import main

    _register_bow(monkeypatch)
    bench = tmp_path / "b"
    build_test_benchmark(bench, languages=["en", "sw"])
    assert main(["eval", str(bench), "--raw", "--embedder", "bow-test", "--k", "0,5"]) == 2
    assert main(["eval", str(bench), "--raw", "--embedder", "bow-test", "--matrix-metric", "recall@3"]) == 2
    assert main(["eval", str(tmp_path / "none"), "--raw", "--embedder", "bow-test"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_evaluate_raw_rejects_empty():
    with pytest.raises(ConfigError, match="no judged queries"):
        evaluate_raw(BagOfWordsEmbedder(), BeirDataset("e", [Document("d", "t")], [Query("q", "t")], {}))


# ---- the real multilingual-e5-small ----------------------------------------------------------------
@pytest.mark.slow
def test_e5_small_udhr_end_to_end(e5, tmp_path):
    ds = build_test_benchmark(languages=["en", "sw", "zh"], variant="crosslingual")
    res = evaluate_raw(e5, ds)
    n = len(ds.queries)
    assert res.overall["n_queries"] == n and len(res.run) == n
    # restricted cells: 3 languages, own language empty -> 6 cells, each over 12 queries
    assert sum(len(row) for row in res.cells.values()) == 6
    assert all(c["n_queries"] == 12 for row in res.cells.values() for c in row.values())
    assert res.gap["same_language"] is None and res.gap["cross_language"] is not None
    # chance: 2 relevant among 24 candidates -> P@1 ~ 0.08; offline_models.md measures e5-small P@1 .87 (zh)
    # and .93 (sw) against English, so a working embedder clears 0.5 by far
    assert res.overall["p@1"] > 0.5
    # restricted en->sw among 12 documents: chance MRR ~ 0.26
    assert res.cells["en"]["sw"]["mrr@10"] > 0.6
    md = markdown_report([res])
    assert "| en | — |" in md  # empty diagonal cell
    assert plot_heatmap(tmp_path / "e5.png", [res]).stat().st_size > 1000


def test_pipeline_mode_keeps_raw_quality(tmp_path, e5):
    """The full pipeline (files, language id, chunking, store, retriever) keeps >= 0.99x the raw recall@10."""
    from lusifer_rag.settings import Settings
    from lusifer_rag.rag.eval.runner import pipeline_search_fn

    ds = build_test_benchmark(tmp_path / "b", languages=["en", "sw", "zh", "hi"], variant="crosslingual")
    raw = evaluate_raw(e5, ds, k_values=(1, 10))
    settings = Settings.from_env(env={}, cache_dir=tmp_path / "cache", debias="off", search_mode="dense")
    settings.cache_dir = Settings.from_env().cache_dir  # reuse the converted model
    from lusifer_rag import runtime

    runtime._embedders[("e5-small", None, None)] = e5
    piped = evaluate_pipeline(pipeline_search_fn("e5-small", ds, settings), ds, k_values=(1, 10), name="e5-pipeline")
    assert piped.overall["recall@10"] >= 0.99 * raw.overall["recall@10"], (piped.overall, raw.overall)
    assert piped.overall["ndcg@10"] >= 0.99 * raw.overall["ndcg@10"]

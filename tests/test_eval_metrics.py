"""Retrieval metrics on hand-computed cases, the language matrix, TREC run / qrels files."""

from __future__ import annotations

import math
import random

import pytest

from lusifer_rag.errors import ConfigError, IngestError
from lusifer_rag.rag.eval.metrics import (
    cell_metrics, evaluate_run, language_gap, mean_metrics, mrr_at_k, ndcg_at_k, precision_at_k, query_metrics,
    read_qrels, read_trec_run, recall_at_k, write_qrels, write_trec_run,
)

RANKED = ["d1", "d2", "d3", "d4", "d5"]


def test_recall_precision_mrr_by_hand():
    qrels = {"d2": 1, "d5": 1, "d9": 1}  # 3 relevant, d9 never retrieved
    # top1: {d1} -> 0 of 3; top5: {d2, d5} -> 2/3
    assert recall_at_k(RANKED, qrels, 1) == 0.0
    assert recall_at_k(RANKED, qrels, 5) == pytest.approx(2 / 3)
    # first relevant at rank 2 -> 1/2
    assert mrr_at_k(RANKED, qrels, 10) == 0.5
    # nothing relevant in the top 1
    assert mrr_at_k(RANKED, qrels, 1) == 0.0
    assert precision_at_k(RANKED, qrels, 1) == 0.0
    # top 5 has 2 relevant -> 2/5
    assert precision_at_k(RANKED, qrels, 5) == pytest.approx(0.4)
    # grade 0 is "judged, not relevant"
    assert recall_at_k(RANKED, {"d1": 0, "d3": 1}, 1) == 0.0


def test_ndcg_binary_by_hand():
    qrels = {"d2": 1, "d5": 1, "d9": 1}
    # DCG = 1/log2(3) + 1/log2(6) = 0.630930 + 0.386853 = 1.017783
    # IDCG (3 relevant at ranks 1..3) = 1 + 0.630930 + 0.5 = 2.130930
    assert ndcg_at_k(RANKED, qrels, 10) == pytest.approx(1.017783 / 2.130930, abs=1e-6)  # 0.477628


def test_ndcg_graded_by_hand():
    qrels = {"d1": 1, "d3": 3, "d4": 2}
    # DCG = 1/1 + 3/log2(4) + 2/log2(5) = 1 + 1.5 + 0.861353 = 3.361353
    # IDCG: grades 3,2,1 at ranks 1..3 = 3 + 2/log2(3) + 1/2 = 3 + 1.261860 + 0.5 = 4.761860
    assert ndcg_at_k(RANKED, qrels, 10) == pytest.approx(3.361353 / 4.761860, abs=1e-6)  # 0.705891
    # cut at 2: top 2 = d1 (grade 1), d2 (0): DCG = 1; IDCG@2 = 3 + 2/log2(3) = 4.261860
    assert ndcg_at_k(RANKED, qrels, 2) == pytest.approx(1 / 4.261860, abs=1e-6)  # 0.234639
    # the ideal order scores exactly 1
    assert ndcg_at_k(["d3", "d4", "d1"], qrels, 10) == pytest.approx(1.0)


def test_no_relevant_is_nan_and_skipped_in_means():
    assert math.isnan(recall_at_k(RANKED, {"d1": 0}, 5))
    assert math.isnan(ndcg_at_k(RANKED, {}, 10))
    rows = [{"m": 1.0}, {"m": float("nan")}, {"m": 0.0}]
    assert mean_metrics(rows) == {"m": 0.5, "n_queries": 3}
    # evaluate_run skips queries without relevant docs, and a query missing from the run scores 0
    per_q = evaluate_run({"q1": [("d1", 1.0)]}, {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}}, (1,))
    assert set(per_q) == {"q1", "q2"}
    assert per_q["q1"]["recall@1"] == 1.0 and per_q["q2"]["recall@1"] == 0.0


def test_query_metrics_names():
    m = query_metrics(RANKED, {"d1": 1}, (1, 5))
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "ndcg@10": 1.0, "mrr@10": 1.0, "p@1": 1.0}


def test_against_pytrec_eval_on_random_runs():
    """Our numbers equal trec_eval's (pytrec_eval) on random graded cases."""
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) not installed")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(40)]
    qrels, run = {}, {}
    for q in range(25):
        rel = rng.sample(docs, rng.randint(1, 6))
        qrels[f"q{q}"] = {d: rng.randint(1, 3) for d in rel}
        ranked = rng.sample(docs, 30)
        run[f"q{q}"] = [(d, 1.0 - i / 100) for i, d in enumerate(ranked)]
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.1,5,10", "P.1"}).evaluate(
        {q: dict(r) for q, r in run.items()})
    ours = evaluate_run(run, qrels, (1, 5, 10))
    for q in qrels:
        assert ours[q]["ndcg@10"] == pytest.approx(trec[q]["ndcg_cut_10"], abs=1e-9)
        for k in (1, 5, 10):
            assert ours[q][f"recall@{k}"] == pytest.approx(trec[q][f"recall_{k}"], abs=1e-9)
        assert ours[q]["p@1"] == pytest.approx(trec[q]["P_1"], abs=1e-9)


# ---- language cells ------------------------------------------------------------------------------
def _two_language_case():
    # query qa in en; relevant: en doc e1 and sw doc s1; the ranking puts both en docs before s1
    qrels = {"qa": {"e1": 1, "s1": 1}, "qb": {"s1": 1}}
    run = {"qa": [("e2", 0.9), ("e1", 0.8), ("s1", 0.7), ("s2", 0.1)],
           "qb": [("e1", 0.9), ("s2", 0.8), ("s1", 0.7)]}
    q_lang = {"qa": "en", "qb": "sw"}
    d_lang = {"e1": "en", "e2": "en", "s1": "sw", "s2": "sw"}
    return qrels, run, q_lang, d_lang


def test_cells_pooled_by_hand():
    qrels, run, q_lang, d_lang = _two_language_case()
    cells = cell_metrics(run, qrels, q_lang, d_lang, (1, 2), mode="pooled")
    # (en, en): qa's relevant cut to {e1}, at rank 2 of the pooled ranking -> recall@1 0, recall@2 1, mrr 1/2
    assert cells["en"]["en"]["recall@1"] == 0.0 and cells["en"]["en"]["recall@2"] == 1.0
    assert cells["en"]["en"]["mrr@10"] == 0.5
    # (en, sw): {s1} at rank 3 -> recall@2 0, mrr 1/3
    assert cells["en"]["sw"]["recall@2"] == 0.0 and cells["en"]["sw"]["mrr@10"] == pytest.approx(1 / 3)
    # (sw, sw): qb's s1 at rank 3 -> mrr 1/3; qb has no en judgement -> no (sw, en) cell
    assert cells["sw"]["sw"]["mrr@10"] == pytest.approx(1 / 3)
    assert "en" not in cells["sw"]
    assert cells["en"]["sw"]["n_queries"] == 1


def test_cells_restricted_by_hand():
    qrels, run, q_lang, d_lang = _two_language_case()
    cells = cell_metrics(run, qrels, q_lang, d_lang, (1, 2), mode="restricted")
    # (en, sw): ranking cut to sw docs = [s1, s2] -> s1 first: recall@1 1, mrr 1
    assert cells["en"]["sw"]["recall@1"] == 1.0 and cells["en"]["sw"]["mrr@10"] == 1.0
    # (en, en): [e2, e1] -> e1 second: mrr 1/2
    assert cells["en"]["en"]["mrr@10"] == 0.5
    # (sw, sw): [s2, s1] -> mrr 1/2
    assert cells["sw"]["sw"]["mrr@10"] == 0.5
    with pytest.raises(ConfigError, match="allowed"):
        cell_metrics(run, qrels, q_lang, d_lang, mode="diagonal")


def test_language_gap_by_hand():
    cells = {"en": {"en": {"r": 1.0}, "sw": {"r": 0.5}}, "sw": {"sw": {"r": 0.8}, "en": {"r": 0.3}}}
    g = language_gap(cells, "r")
    # same = (1.0 + 0.8) / 2 = 0.9; cross = (0.5 + 0.3) / 2 = 0.4; gap 0.5
    assert g["same_language"] == pytest.approx(0.9) and g["cross_language"] == pytest.approx(0.4)
    assert g["gap"] == pytest.approx(0.5)
    # no same-language cells (cross-lingual benchmark): gap is undefined
    g = language_gap({"en": {"sw": {"r": 0.5}}}, "r")
    assert g["same_language"] is None and g["gap"] is None and g["cross_language"] == 0.5


# ---- files ---------------------------------------------------------------------------------------
def test_trec_run_round_trip(tmp_path):
    run = {"q1": [(f"d{i}", 1.0 - i * 0.01) for i in range(150)], "q-2": [("a", 0.5), ("b", 0.5), ("c", 0.25)]}
    path = write_trec_run(tmp_path / "run.trec", run, tag="e5 small")
    lines = path.read_text().splitlines()
    assert len(lines) == 100 + 3  # top 100 per query
    assert lines[0].split() == ["q1", "Q0", "d0", "1", "1.00000000", "e5_small"]
    back = read_trec_run(path)
    assert [d for d, _ in back["q1"]] == [d for d, _ in run["q1"][:100]]
    assert back["q1"][5][1] == pytest.approx(run["q1"][5][1])
    # the tie a/b is nudged apart so that trec_eval's score sort keeps our order
    assert [d for d, _ in back["q-2"]] == ["a", "b", "c"]
    assert back["q-2"][0][1] > back["q-2"][1][1]
    with pytest.raises(ConfigError, match="whitespace"):
        write_trec_run(tmp_path / "bad.trec", {"q 1": [("d", 1.0)]}, tag="t")


def test_trec_run_malformed_names_file_and_line(tmp_path):
    p = tmp_path / "bad.trec"
    p.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2 0.4\n")
    with pytest.raises(IngestError, match=r"bad.trec:2: .*6 fields"):
        read_trec_run(p)


def test_qrels_round_trip_and_errors(tmp_path):
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    path = write_qrels(tmp_path / "qrels" / "test.tsv", qrels)
    assert path.read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    assert read_qrels(path) == qrels
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(IngestError, match=r"bad.tsv:3: .*integer"):
        read_qrels(bad)
    bad.write_text("query-id\tcorpus-id\tscore\nq1 d1 1\n")
    with pytest.raises(IngestError, match=r"bad.tsv:2: expected 3 tab-separated"):
        read_qrels(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_qrels(tmp_path / "none.tsv")

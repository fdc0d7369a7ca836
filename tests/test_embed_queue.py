"""Dynamic batching of concurrent embedding calls (embedder/queue.py): batched == one at a time, requests really
merge, a full queue refuses with BusyError ("retry"), errors stay with their caller, bulk calls bypass it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lusifer_rag.embedder import queue as equeue
from lusifer_rag.errors import BusyError, EmbedderError
from tests.eval_fakes import BagOfWordsEmbedder


def test_concurrent_calls_are_merged_and_equal_one_at_a_time(e5, udhr):
    queries = [udhr("sw")[i][:80] for i in range(12)] + [udhr("ja")[i][:60] for i in range(12)]
    passages = udhr("fr")[:12]
    e5.queue_enabled = False
    try:
        alone_q = np.stack([e5.embed_queries([q])[0] for q in queries])
        alone_d = e5.embed_documents(passages)
    finally:
        e5.queue_enabled = True
    q = equeue.queue_for(e5)
    before = (q.stats.requests, q.stats.rounds)
    start = threading.Barrier(len(queries) + 3)

    def ask_query(text):
        start.wait()
        return e5.embed_queries([text])[0]

    def ask_docs(chunk):
        start.wait()
        return e5.embed_documents(chunk)

    with ThreadPoolExecutor(len(queries) + 3) as pool:
        fq = [pool.submit(ask_query, t) for t in queries]
        fd = [pool.submit(ask_docs, passages[i:i + 4]) for i in range(0, 12, 4)]
        got_q = np.stack([f.result() for f in fq])
        got_d = np.concatenate([f.result() for f in fd])
    np.testing.assert_allclose(got_q, alone_q, atol=2e-5)  # padding in a shared batch changes nothing
    np.testing.assert_allclose(got_d, alone_d, atol=2e-5)
    requests, rounds = q.stats.requests - before[0], q.stats.rounds - before[1]
    assert requests == len(queries) + 3
    assert rounds < requests / 2, (rounds, requests)  # merged: far fewer forward rounds than calls


class _GatedEmbedder(BagOfWordsEmbedder):
    """Holds its forward pass until ``gate`` is set, so the queue behind it fills up."""

    def __init__(self):
        super().__init__()
        self.gate, self.entered = threading.Event(), threading.Event()
        self.forwards = 0

    def embed_batch(self, batch, replica=None):
        self.entered.set()
        self.gate.wait(30)
        self.forwards += 1
        return super().embed_batch(batch, replica)


def test_a_full_queue_refuses_with_busy_and_the_rest_completes():
    emb = _GatedEmbedder()
    emb.queue_limit, emb.queue_wait_ms = 6, 0
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(emb.embed_queries, ["held in the forward pass"])
        assert emb.entered.wait(10)
        waiting = [pool.submit(emb.embed_queries, [f"query {i}", f"other {i}"]) for i in range(3)]  # 6 texts wait
        deadline = time.time() + 10
        while equeue.queue_for(emb)._pending_texts < 6 and time.time() < deadline:
            time.sleep(0.01)
        with pytest.raises(BusyError, match=r"busy: 6 texts are waiting.*adds 1 \(limit 6.*retry"):
            emb.embed_queries(["one too many"])
        emb.gate.set()
        assert first.result(10).shape == (1, emb.dim)
        got = [f.result(10) for f in waiting]
    want = [emb.embed_queries([f"query {i}", f"other {i}"], direct=True) for i in range(3)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6)
    stats = equeue.queue_for(emb).stats
    assert stats.refused == 1 and stats.largest_round == 3  # the three waiting requests ran as one round


def test_errors_stay_with_their_caller_and_bulk_calls_bypass_the_queue(monkeypatch):
    emb = BagOfWordsEmbedder()
    with pytest.raises(EmbedderError, match="item 1 is int"):
        emb.embed_queries(["fine", 3])  # validated in the caller's thread, before queueing
    q = equeue.queue_for(emb)
    n = q.stats.requests
    big = [f"text {i}" for i in range(emb.queue_max_texts + 1)]
    emb.embed_documents(big)
    emb.embed_documents(["a bulk job's page"], direct=True)
    assert q.stats.requests == n  # neither went through the queue
    emb.embed_documents(["an interactive call"])
    assert q.stats.requests == n + 1


def test_an_idle_worker_exits_and_a_new_request_starts_another(monkeypatch):
    monkeypatch.setattr(equeue, "IDLE_EXIT_S", 0.05)
    emb = BagOfWordsEmbedder()
    a = emb.embed_queries(["first"])
    q = equeue.queue_for(emb)
    deadline = time.time() + 5
    while q._worker is not None and time.time() < deadline:
        time.sleep(0.02)
    assert q._worker is None
    np.testing.assert_allclose(emb.embed_queries(["first"]), a)

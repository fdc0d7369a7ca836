"""Dynamic batching of concurrent embedding requests (TEI's queue, in process).

Many threads ask one embedder for a few vectors each: a search embeds its query, its highlight embeds a few
dozen sentences, a LangChain app embeds a question. Run alone, each of these is a forward pass over a batch of
one; merged, fifty queries cost about what three do. Callers tokenize in their own thread and hand the token
ids to :class:`RequestQueue`; one worker thread per embedder takes everything that is waiting (up to a token
budget per round, first come first served), drops duplicate texts, runs one length-sorted, token-budgeted
embedding (``Embedder.embed_tokens``) and hands each caller its rows. While a round runs, new requests collect
for the next one, so under load batches grow by themselves; an idle queue waits ``wait_ms`` after the first
request for company, then runs.

The queue is bounded (``limit`` texts waiting): beyond it a request fails at once with :class:`BusyError`
("busy, retry") instead of piling up latency for everyone. Bulk jobs (ingestion) bypass the queue.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from lusifer_rag.errors import BusyError

#: the worker thread exits after this long without requests (a new request starts it again)
IDLE_EXIT_S = 30.0


@dataclass
class _Request:
    ids: list[list[int]]  # token ids of the request's texts, formatted and truncated
    future: Future = field(default_factory=Future)
    tokens: int = 0


@dataclass
class QueueStats:
    """What the queue has done since it started (for benchmarks and the settings view)."""

    requests: int = 0
    texts: int = 0
    rounds: int = 0
    unique_texts: int = 0  # texts embedded after de-duplication within rounds
    refused: int = 0
    largest_round: int = 0  # requests merged into one round


class RequestQueue:
    """One embedder's request queue and its worker thread. Use :func:`queue_for` to get the shared one."""

    def __init__(self, embedder, wait_ms: float = 2.0, limit: int = 4096, round_tokens: int | None = None):
        self.embedder = embedder
        self.wait_ms, self.limit = float(wait_ms), int(limit)
        # a round holds at most this many tokens (several forward batches), so a request arriving behind a
        # large one waits for at most one such round
        self.round_tokens = round_tokens or 4 * embedder.batch_token_budget()
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._pending_texts = 0
        self._worker: threading.Thread | None = None
        self.stats = QueueStats()

    # ---- callers ---------------------------------------------------------------------------------
    def embed(self, ids: list[list[int]]) -> np.ndarray:
        """(n, dim) float32 unit vectors of already tokenized texts; blocks until the round holding them ran."""
        if not ids:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        req = _Request(ids, tokens=sum(map(len, ids)))
        with self._cond:
            if self._pending_texts and self._pending_texts + len(ids) > self.limit:
                self.stats.refused += 1
                raise BusyError(
                    f"the embedder is busy: {self._pending_texts} texts are waiting to be embedded and this request "
                    f"adds {len(ids)} (limit {self.limit}, setting embed_queue_limit); retry in a moment")
            self._pending.append(req)
            self._pending_texts += len(ids)
            self.stats.requests += 1
            self.stats.texts += len(ids)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=f"embed-queue-{self.embedder.spec}",
                                                daemon=True)
                self._worker.start()
            self._cond.notify()
        return req.future.result()

    # ---- the worker ------------------------------------------------------------------------------
    def _take_round(self) -> list[_Request] | None:
        """The next round's requests (FIFO, up to ``round_tokens``); None when idle long enough to exit."""
        with self._cond:
            while not self._pending:
                if not self._cond.wait(IDLE_EXIT_S) and not self._pending:
                    self._worker = None  # under the lock: a new request starts a new worker
                    return None
            first_seen = time.monotonic()
        if self.wait_ms > 0:  # an idle queue waits a moment for concurrent requests to join
            deadline = first_seen + self.wait_ms / 1000
            with self._cond:
                while sum(r.tokens for r in self._pending) < self.round_tokens:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
        with self._cond:
            taken, tokens = [], 0
            while self._pending and (not taken or tokens + self._pending[0].tokens <= self.round_tokens):
                req = self._pending.pop(0)
                taken.append(req)
                tokens += req.tokens
                self._pending_texts -= len(req.ids)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take_round()
            if taken is None:
                return
            try:
                self._embed_round(taken)
            except BaseException as exc:  # every caller of the round gets the error; the worker goes on
                for req in taken:
                    if not req.future.done():
                        req.future.set_exception(exc)

    def _embed_round(self, taken: list[_Request]) -> None:
        unique: dict[tuple[int, ...], int] = {}  # token ids -> row: the same text asked twice is embedded once
        rows = []
        for req in taken:
            rows.append([unique.setdefault(tuple(t), len(unique)) for t in req.ids])
        vecs = self.embedder.embed_tokens([list(t) for t in unique])  # (unique, dim)
        s = self.stats
        s.rounds += 1
        s.unique_texts += len(unique)
        s.largest_round = max(s.largest_round, len(taken))
        for req, r in zip(taken, rows):
            req.future.set_result(vecs[r])


_QUEUES: "weakref.WeakKeyDictionary[object, tuple[int, RequestQueue]]" = weakref.WeakKeyDictionary()
_QUEUES_LOCK = threading.Lock()


def queue_for(embedder) -> RequestQueue:
    """The request queue shared by every caller of ``embedder`` in this process (a forked child gets its own)."""
    with _QUEUES_LOCK:
        entry = _QUEUES.get(embedder)
        if entry is None or entry[0] != os.getpid():
            entry = (os.getpid(), RequestQueue(embedder, embedder.queue_wait_ms, embedder.queue_limit))
            _QUEUES[embedder] = entry
        return entry[1]

"""Worker processes that parse and chunk one file at a time each, under a per-file wall-clock and memory cap.

A file is untrusted input: a parser may loop for minutes, allocate gigabytes or crash. Each worker runs one file at a
time, so whatever happens is that file's alone: past its deadline the worker is killed and the file reported
``timeout``; its address space is capped (RLIMIT_AS: the worker's size when ready plus the cap), so an allocation
past the cap fails and the file is reported ``too-large``; a worker that dies reports its file ``crash``. A killed or
dead worker is replaced and the other files go on. Parsing in processes also keeps it off the interpreter lock of the
process that serves searches. ``cancel()`` kills the workers at once (Ctrl-C, the app's Cancel).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

#: why a file failed in its worker, beside the loaders' reasons
TIMEOUT, TOO_LARGE, CRASH, CANCELLED = "timeout", "too-large", "crash", "cancelled"


@dataclass(frozen=True)
class FileLimits:
    """Per-file caps of the parse/chunk workers (Settings.ingest_file_timeout / ingest_file_memory_mb); 0: none."""

    timeout: float = 900.0  # seconds
    memory_mb: int = 2048  # address space the file's parsing may add to its worker

    @classmethod
    def from_settings(cls, settings) -> "FileLimits":
        return cls(float(settings.ingest_file_timeout), int(settings.ingest_file_memory_mb))


class BoundedPool:
    """``workers`` processes (``mp_context``), each running ``task(item)`` for one item at a time after
    ``initializer(*initargs)``. ``submit`` returns a Future that always gets a result: the task's, or what
    ``failure(item, reason, message)`` makes of a timeout, a memory failure or a death."""

    def __init__(self, workers: int, mp_context, initializer: Callable, initargs: tuple, task: Callable,
                 failure: Callable[[Any, str, str], Any], limits: FileLimits = FileLimits()):
        self.ctx, self.initializer, self.initargs, self.task = mp_context, initializer, initargs, task
        self.failure, self.limits = failure, limits
        self._queue: deque[tuple[Any, Future]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._failed_starts = 0  # workers in a row that died before they were ready
        self._workers = [self._start() for _ in range(max(1, workers))]
        self._thread = threading.Thread(target=self._supervise, name="lusifer-ingest-pool", daemon=True)
        self._thread.start()

    # ---- public ----------------------------------------------------------------------------------
    def submit(self, item) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._queue.append((item, future))
        return future

    def cancel(self) -> None:
        """Kill every worker now: queued items' futures are cancelled, running ones fail ``cancelled``."""
        self._shutdown(kill=True)

    def close(self) -> None:
        self._shutdown(kill=False)

    # ---- internals -------------------------------------------------------------------------------
    def _start(self) -> "_Worker":
        parent, child = self.ctx.Pipe()
        memory = self.limits.memory_mb * (1 << 20) if self.limits.memory_mb else 0
        process = self.ctx.Process(target=_worker_main, name="lusifer-ingest-worker", daemon=True,
                                   args=(child, self.initializer, self.initargs, self.task, memory))
        process.start()
        child.close()
        return _Worker(process, parent, self.limits)

    def _shutdown(self, kill: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
        self._thread.join()
        for _, future in queued:
            future.cancel()
        for w in self._workers:
            if w.job is not None and not kill:
                kill = True  # a file still running when the pool closes (an error unwinding): not waited for
            w.stop(kill)
            if w.job is not None:  # a running future cannot be cancelled: it gets a failure
                w.job[1].set_result(self.failure(w.job[0], CANCELLED, "not finished: the ingest was cancelled"))

    def _supervise(self) -> None:
        try:
            self._supervise_loop()
        except BaseException as e:  # noqa: BLE001 - never leave a future unanswered: the ingest would wait forever
            with self._lock:
                waiting, self._queue = list(self._queue), deque()
            for item, future in waiting + [w.job for w in self._workers if w.job is not None]:
                if future.running() or future.set_running_or_notify_cancel():
                    future.set_result(self.failure(item, CRASH, f"the worker pool failed: {type(e).__name__}: {e}"))
            raise

    def _supervise_loop(self) -> None:
        from multiprocessing.connection import wait

        while True:
            with self._lock:
                if self._closed:
                    return
                for w in self._workers:
                    if w.ready and w.job is None and self._queue:
                        w.run(*self._queue.popleft())
            waits = [x for w in self._workers for x in (w.conn, w.process.sentinel)]
            deadlines = [w.deadline for w in self._workers if w.job is not None and w.deadline]
            timeout = min([0.1] + [max(0.0, d - time.monotonic()) for d in deadlines])
            wait(waits, timeout=timeout)
            for i, w in enumerate(self._workers):
                outcome = w.check()
                if outcome is None:
                    continue
                reason, detail = outcome
                item, future = w.job if w.job is not None else (None, None)
                w.job = None
                w.stop(kill=True)
                self._failed_starts = 0 if w.ready else self._failed_starts + 1
                if future is not None:
                    future.set_result(self.failure(item, reason, detail))
                if self._failed_starts >= 3:  # workers cannot start: fail what waits rather than retry forever
                    with self._lock:
                        queued, self._queue = list(self._queue), deque()
                    for item, future in queued:
                        if future.set_running_or_notify_cancel():
                            future.set_result(self.failure(item, CRASH, "the parser process could not start"))
                self._workers[i] = self._start()


class _Worker:
    def __init__(self, process, conn, limits: FileLimits):
        self.process, self.conn, self.limits = process, conn, limits
        self.ready = False
        self.job: tuple[Any, Future] | None = None
        self.deadline = 0.0

    def run(self, item, future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        self.job = (item, future)
        self.deadline = time.monotonic() + self.limits.timeout if self.limits.timeout else 0.0
        self.conn.send(item)

    def check(self) -> tuple[str, str] | None:
        """Read what the worker said; (reason, detail) when it must be replaced (dead, or past its deadline)."""
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message == "ready":
                    self.ready = True
                elif self.job is not None:
                    self.job[1].set_result(message)
                    self.job = None
        except (EOFError, OSError):
            pass
        if not self.process.is_alive():
            code = self.process.exitcode
            if code == _OUT_OF_MEMORY:
                return TOO_LARGE, f"reading it needs more than {self.limits.memory_mb} MB of memory " \
                                  "(ingest_file_memory_mb)"
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return CRASH, f"the parser process died while reading it ({how}: out of memory, or a crash in a " \
                          "parsing library)"
        if self.job is not None and self.deadline and time.monotonic() > self.deadline:
            return TIMEOUT, f"stopped after {self.limits.timeout:g} s (ingest_file_timeout)"
        return None

    def stop(self, kill: bool) -> None:
        """Kill the worker, or ask it to leave (killed all the same if it is busy or does not within 2 s)."""
        try:
            if kill or self.job is not None:
                self.process.kill()
            else:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _worker_main(conn, initializer: Callable, initargs: tuple, task: Callable, memory: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it cancels and kills us
    try:  # a hostile file's parse yields the CPU to searches (the server's threads keep their priority)
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):
        pass
    initializer(*initargs)
    if memory:
        _cap_address_space(memory)
    conn.send("ready")
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        try:
            out = task(item)
            conn.send(out)
        except MemoryError:
            out = None
        if out is None:  # the task or pickling its result ran out of memory: the parent reports it
            os._exit(_OUT_OF_MEMORY)


_OUT_OF_MEMORY = 77
WORKER_NICENESS = 10


def _cap_address_space(extra: int) -> None:
    """Let this process grow by ``extra`` bytes of address space from its size now (Linux; elsewhere no cap)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + extra if hard == resource.RLIM_INFINITY else min(hard, size + extra)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass

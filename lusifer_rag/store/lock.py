"""One process at a time per embedded store directory.

An OS lock (``flock``, non-blocking) on ``<dir>/.lock`` plus a JSON record ``<dir>/.lock.holder.json`` saying
who holds it. The OS drops the lock when the holder dies, so a stale record never blocks anyone: the next
opener takes the lock and overwrites the record. A second process fails at once with a StoreError naming the
holder — no waiting, so no hang, and it never touches the data. The record is the holder's own (mode 0600) and
carries no secret: values of password/key/token/secret options and passwords in URLs are redacted from its argv.

A process that serves the store over HTTP (``lusifer-rag serve``) adds where it listens to its record (``serve``:
host, port, scheme) once bound; ``serving_record`` reads it back for another process, which then sends its work to
that server instead of failing on the lock (lusifer_rag/remote.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import StoreError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOCK_NAME = ".lock"
#: this process's held locks by the real path of their directory (to add to their records)
_HELD: dict[str, "StoreLock"] = {}
HOLDER_NAME = ".lock.holder.json"
REDACTED = "***"
_SECRET_WORDS = {"password", "passwd", "passphrase", "secret", "token", "key", "apikey"}
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]*@")


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` without secrets: the value of an option named like a password, key, token or secret (as
    ``--opt VALUE`` or ``--opt=VALUE``) and the password of a ``scheme://user:password@host`` URL."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        if name.startswith("-") and _SECRET_WORDS & set(re.split(r"[-_]", name.lstrip("-").lower())):
            if eq:
                arg = f"{name}={REDACTED}"
            else:
                hide_next = True
        out.append(_URL_PASSWORD.sub(rf"\1:{REDACTED}@", arg))
    return out


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def describe_holder(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process (it left no holder record)"
    since = record.get("since", "?")
    try:
        age = time.time() - datetime.fromisoformat(since).timestamp()
        since = f"{since} ({_ago(age)} ago)"
    except (TypeError, ValueError):
        pass
    cmd = " ".join(record.get("argv") or []) or "?"
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}, command {cmd!r}, since {since}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


class StoreLock:
    """Exclusive, non-blocking lock of a store directory for this process."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.lock_path = self.directory / LOCK_NAME
        self.holder_path = self.directory / HOLDER_NAME
        self._fd: int | None = None
        self._record: dict[str, Any] = {}

    def read_holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def acquire(self) -> "StoreLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            record = self.read_holder()
            starting = (" It is a `lusifer-rag serve` that does not listen yet: once it does, `lusifer-rag ingest`, "
                        "`search`, `stats` and `ask` go through it." if record and "serve" not in record
                        and (record.get("argv") or [])[1:2] == ["serve"] else "")
            raise StoreError(
                f"the embedded store {self.directory} is in use by {describe_holder(record)}. "
                "Only one process can open an embedded store at a time. Use the running app (its web UI or API), "
                "stop that process, or run a Qdrant server and point every process at it with --store http://HOST:6333"
                + starting
            )
        self._fd = fd
        self._record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "argv": redact_argv(list(sys.argv)),
            "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        }
        self._write_record()
        _HELD[os.path.realpath(self.directory)] = self
        return self

    def _write_record(self) -> None:
        tmp = self.holder_path.with_name(f"{HOLDER_NAME}.{os.getpid()}.tmp")
        fd_tmp = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd_tmp, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # a leftover tmp file of another mode is ours to fix
            f.write(json.dumps(self._record))
        os.replace(tmp, self.holder_path)  # readers never see a half-written record

    def annotate(self, **fields: Any) -> None:
        """Set (or, with None, remove) fields of this process's holder record, e.g. ``serve``; the record stays
        0600, its argv redacted."""
        if self._fd is None:
            raise StoreError(f"the lock of {self.directory} is not held by this process")
        for key, value in fields.items():
            if key in ("pid", "host", "argv", "since"):
                raise ValueError(f"{key!r} is the lock's own field")
            if value is None:
                self._record.pop(key, None)
            else:
                self._record[key] = value
        self._write_record()

    def release(self) -> None:
        if self._fd is None:
            return
        if _HELD.get(os.path.realpath(self.directory)) is self:
            del _HELD[os.path.realpath(self.directory)]
        try:
            self.holder_path.unlink(missing_ok=True)
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def held_lock(directory: str | os.PathLike) -> StoreLock | None:
    """The lock of ``directory`` if this process holds it."""
    return _HELD.get(os.path.realpath(directory))


def serving_record(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The holder record of a store directory whose lock is held (by any process, this one too) by a process that
    serves it over HTTP (the record has ``serve``); None when the lock is free (a record left by a process that died
    is stale), held by a process that does not serve, or there is no store there. A lock held elsewhere is seen by
    taking it for an instant, non-blocking: it is released at once when it was free."""
    lock_path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        try:  # another user's store: its lock file is read-only to us (flock works on it all the same)
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
    finally:
        os.close(fd)
    record = StoreLock(directory).read_holder()
    return record if record and isinstance(record.get("serve"), dict) else None


def announce_serving(directory: str | os.PathLike, host: str, port: int, scheme: str = "http"):
    """Record in this process's lock record of store ``directory`` that it serves the store at
    ``scheme://host:port`` (``serve``); returns what takes it back out. Nothing (and a no-op) when this process
    does not hold that directory's lock (a Qdrant server store, a store opened elsewhere)."""
    lock = held_lock(directory)
    if lock is None:
        return lambda: None
    serve = {"host": host, "port": int(port), "scheme": scheme}
    lock.annotate(serve=serve)

    def retract() -> None:
        if lock.held and lock._record.get("serve") == serve:
            lock.annotate(serve=None)

    return retract

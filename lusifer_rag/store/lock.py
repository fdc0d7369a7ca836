"""One process at a time per embedded store directory.

An OS lock (``flock``, non-blocking) on ``<dir>/.lock`` plus a JSON record ``<dir>/.lock.holder.json`` saying
who holds it. The OS drops the lock when the holder dies, so a stale record never blocks anyone: the next
opener takes the lock and overwrites the record. A second process fails at once with a StoreError naming the
holder — no waiting, so no hang, and it never touches the data. The record is the holder's own (mode 0600) and
carries no secret: values of password/key/token/secret options and passwords in URLs are redacted from its argv.
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
            raise StoreError(
                f"the embedded store {self.directory} is in use by {describe_holder(self.read_holder())}. "
                "Only one process can open an embedded store at a time. Use the running app (its web UI or API), "
                "stop that process, or run a Qdrant server and point every process at it with --store http://HOST:6333"
            )
        self._fd = fd
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "argv": redact_argv(list(sys.argv)),
            "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        }
        tmp = self.holder_path.with_name(f"{HOLDER_NAME}.{os.getpid()}.tmp")
        fd_tmp = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd_tmp, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # a leftover tmp file of another mode is ours to fix
            f.write(json.dumps(record))
        os.replace(tmp, self.holder_path)  # readers never see a half-written record
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.holder_path.unlink(missing_ok=True)
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

"""The audit log: one JSON object per line under ``<data dir>/audit/audit.jsonl``, rotated by size.

What is recorded: sign-ins (ok and failed), API key creation and revocation, grant and ownership changes, user and
group changes, ingests, deletions, re-indexes, collection creation and deletion, and every search and answer with
the ids of the documents it returned. Each line has ``ts`` (UTC, ISO 8601), ``event``, ``actor`` (the user name,
"anonymous" or "local" for the command line), and the event's fields. Passwords, keys and document text are never
written; a search's query is, cut to 300 characters.

Writes append whole lines (one ``write`` on a file opened with O_APPEND), so several processes on one data dir (the
server and the CLI) can share the log. The file and its folder are readable by this user only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
MAX_QUERY = 300


class AuditLog:
    def __init__(self, data_dir: str | os.PathLike, max_bytes: int = MAX_BYTES, backups: int = BACKUPS):
        self.dir = Path(data_dir) / "audit"
        self.path = self.dir / "audit.jsonl"
        self.max_bytes, self.backups = max_bytes, backups
        self._lock = threading.Lock()

    def record(self, event: str, actor, **fields) -> None:
        """Append one event; ``actor``: a Principal, a user name or None (anonymous). Never raises: an audit
        failure (disk full) must not turn a search into an error; it is reported on stderr once per process."""
        name = getattr(actor, "name", actor)
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event,
                "actor": name if name else "anonymous"}
        if getattr(actor, "user_id", None):
            line["actor_id"] = actor.user_id
        if isinstance(fields.get("query"), str):
            fields["query"] = fields["query"][:MAX_QUERY]
        line.update({k: v for k, v in fields.items() if v is not None})
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            with self._lock:
                self._rotate_if_full(len(data))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
        except OSError as e:
            _warn_once(f"lusifer-rag: cannot write the audit log ({type(e).__name__}: {e.strerror or e})")

    def _rotate_if_full(self, incoming: int) -> None:
        if not self.dir.exists():
            self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= self.max_bytes:
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def read(self) -> list[dict]:
        """Every event of the current file, oldest first (tests, `lusifer-rag audit`)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


_warned = False


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        import sys

        print(message, file=sys.stderr)
        _warned = True


def doc_ids_of(hits) -> list[str]:
    """The distinct document ids of search hits or answer contexts, in order."""
    out: dict[str, None] = {}
    for h in hits:
        chunk = getattr(h, "chunk", h)
        doc = getattr(chunk, "doc_id", None) or (getattr(chunk, "metadata", None) or {}).get("doc_id")
        if doc:
            out[doc] = None
    return list(out)

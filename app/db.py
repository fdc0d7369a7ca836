"""The app's own records in one SQLite database under the data dir: saved conversations, server-side settings,
and users, groups, grants and API keys (app/identity.py); every row that belongs to someone names its owner.

SQLite through the standard library: WAL, one connection per thread, foreign keys on, the schema versioned by
``PRAGMA user_version`` and migrated forward on open. The file is readable by this user only (it holds an LLM key).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lusifer_rag.errors import NotFoundError, RagError

DB_NAME = "app.sqlite3"
MAX_TITLE_CHARS = 120

#: schema migrations, applied in order; user_version = how many have run
MIGRATIONS = (
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        title TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX conversations_owner ON conversations(owner, updated DESC);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE INDEX messages_conversation ON messages(conversation_id, id);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated REAL NOT NULL,
        updated_by TEXT NOT NULL
    );
    """,
    # users, groups, grants and API keys (app/identity.py); principals are 'u:<user id>' and 'g:<group id>'
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT,
        is_admin INTEGER NOT NULL DEFAULT 0,
        origin TEXT NOT NULL DEFAULT 'local',
        disabled INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE groups (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        created REAL NOT NULL
    );
    CREATE TABLE memberships (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, group_id)
    );
    CREATE TABLE collections (
        name TEXT PRIMARY KEY,
        owner TEXT,
        public INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE grants (
        collection TEXT NOT NULL,
        principal TEXT NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('read', 'write', 'admin')),
        PRIMARY KEY (collection, principal)
    );
    CREATE TABLE document_readers (
        collection TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        principals TEXT NOT NULL,
        PRIMARY KEY (collection, doc_id)
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        revoked REAL,
        last_used REAL
    );
    CREATE INDEX api_keys_user ON api_keys(user_id)
    """,
    # each collection's access version (bumped by every grant change) and the version its chunks' acl payloads
    # were last written with: the process holding the store rewrites them when the two differ (app/workspace.py)
    """
    ALTER TABLE collections ADD COLUMN acl_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN acl_synced INTEGER NOT NULL DEFAULT -1
    """,
)


class NotFound(NotFoundError):
    """No such record for this owner (another owner's records are not found either)."""


class AppDatabase:
    """Conversations and settings. Every conversation call takes the ``owner`` and only ever sees that owner's rows."""

    def __init__(self, data_dir: str | os.PathLike):
        d = Path(data_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / DB_NAME
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._local = threading.local()
        self._migrate_lock = threading.Lock()
        with self._migrate_lock, self._tx() as db:  # BEGIN IMMEDIATE: one process migrates, the others wait
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):  # plain DDL: no ';' inside a statement
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {i}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- conversations ---------------------------------------------------------------------------
    def create_conversation(self, owner: str, title: str = "New chat") -> str:
        cid = uuid.uuid4().hex
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO conversations (id, owner, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                       (cid, owner, _title(title), now, now))
        return cid

    def conversations(self, owner: str, limit: int = 200) -> list[dict]:
        """The owner's conversations, most recently updated first: id, title, created, updated, messages."""
        rows = self._conn().execute(
            "SELECT c.id, c.title, c.created, c.updated, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)"
            " AS messages FROM conversations c WHERE c.owner = ? ORDER BY c.updated DESC, c.created DESC LIMIT ?",
            (owner, limit)).fetchall()
        return [dict(r) for r in rows]

    def conversation(self, owner: str, cid: str) -> dict:
        row = self._conn().execute("SELECT id, title, created, updated FROM conversations WHERE id = ? AND owner = ?",
                                   (cid, owner)).fetchone()
        if row is None:
            raise NotFound(f"no conversation {str(cid)[:40]!r}")
        return dict(row)

    def messages(self, owner: str, cid: str) -> list[dict]:
        """The conversation's messages in order: id, role, content, meta (dict), created."""
        self.conversation(owner, cid)
        rows = self._conn().execute("SELECT id, role, content, meta, created FROM messages WHERE conversation_id = ? "
                                    "ORDER BY id", (cid,)).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def add_message(self, owner: str, cid: str, role: str, content: str, meta: dict | None = None) -> int:
        with self._tx() as db:
            self.conversation(owner, cid)
            cur = db.execute("INSERT INTO messages (conversation_id, role, content, meta, created) VALUES (?, ?, ?, ?, ?)",
                             (cid, role, content, json.dumps(meta or {}, ensure_ascii=False), time.time()))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), cid))
            return int(cur.lastrowid)

    def message(self, owner: str, message_id: int) -> dict:
        row = self._conn().execute(
            "SELECT m.id, m.conversation_id, m.role, m.content, m.meta FROM messages m JOIN conversations c "
            "ON c.id = m.conversation_id WHERE m.id = ? AND c.owner = ?", (int(message_id), owner)).fetchone()
        if row is None:
            raise NotFound(f"no message {message_id!r}")
        return {**dict(row), "meta": json.loads(row["meta"])}

    def rename_conversation(self, owner: str, cid: str, title: str) -> None:
        if not (title or "").strip():
            raise RagError("give the conversation a name")
        with self._tx() as db:
            if db.execute("UPDATE conversations SET title = ? WHERE id = ? AND owner = ?",
                          (_title(title), cid, owner)).rowcount == 0:
                raise NotFound(f"no conversation {str(cid)[:40]!r}")

    def delete_conversation(self, owner: str, cid: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?", (cid, owner)).rowcount == 0:
                raise NotFound(f"no conversation {str(cid)[:40]!r}")

    # ---- settings --------------------------------------------------------------------------------
    def get_settings(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._conn().execute("SELECT key, value FROM settings")}

    def set_settings(self, values: dict[str, Any], by: str) -> None:
        """Store (value None: remove) server-side settings."""
        now = time.time()
        with self._tx() as db:
            for key, value in values.items():
                if value is None:
                    db.execute("DELETE FROM settings WHERE key = ?", (key,))
                else:
                    db.execute("INSERT INTO settings (key, value, updated, updated_by) VALUES (?, ?, ?, ?) ON CONFLICT"
                               "(key) DO UPDATE SET value = excluded.value, updated = excluded.updated, "
                               "updated_by = excluded.updated_by", (key, json.dumps(value), now, by))


def _title(text: str) -> str:
    t = " ".join(str(text or "").split())
    return (t[: MAX_TITLE_CHARS - 1] + "…") if len(t) > MAX_TITLE_CHARS else (t or "New chat")

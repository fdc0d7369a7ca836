"""Users, groups, collection grants and API keys, in the app database (app/db.py).

- Passwords: argon2id (argon2-cffi), re-hashed on sign-in when the parameters change. The first admin is created
  by ``lusifer-rag users add NAME --admin``; there is no default password.
- Principals: ``u:<user id>``, ``g:<group id>``, and ``public`` (every caller who may read at all).
- Grants: per collection, a principal gets ``read``, ``write`` or ``admin``; a collection's creator owns it
  (admin on it). A document inherits its collection's readers and may be narrowed to some of them.
- API keys: ``lrk_<prefix>_<secret>``; only the prefix and a SHA-256 of the whole key are stored (a key is random
  with 256 bits, so a fast hash is enough; argon2 would cost every API call). Scopes ``search`` (read), ``ingest``
  (read, write), ``admin``; an optional expiry; revocable. A key never gives more than its user has.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from lusifer_rag.errors import AccessError, ConfigError

from .db import AppDatabase, NotFound

LEVELS = ("read", "write", "admin")
SCOPES = {"search": ("read",), "ingest": ("read", "write"), "admin": ("read", "write", "admin")}
KEY_PREFIX = "lrk"
_NAME = re.compile(r"^[\w.@+-]{1,64}$")
MIN_PASSWORD = 10


def rights_of_level(level: str | None) -> frozenset[str]:
    if level is None:
        return frozenset()
    return frozenset(LEVELS[: LEVELS.index(level) + 1])


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, the library's current recommended parameters


@dataclass(frozen=True)
class User:
    id: str
    name: str
    is_admin: bool
    groups: tuple[str, ...]  # group ids
    origin: str = "local"


class Identity:
    """The directory: users, groups, grants, keys. Thread-safe through AppDatabase (a connection per thread)."""

    def __init__(self, db: AppDatabase, audit=None):
        """``audit``: an app/audit.py AuditLog that records who changed users, groups, grants and keys."""
        self.db = db
        self.audit = audit

    def _record(self, event: str, actor, **fields) -> None:
        if self.audit is not None:
            self.audit.record(event, actor, **fields)

    def _q(self, sql: str, args: tuple = ()) -> list:
        return self.db._conn().execute(sql, args).fetchall()

    # ---- users -----------------------------------------------------------------------------------
    def has_users(self) -> bool:
        return bool(self._q("SELECT 1 FROM users LIMIT 1"))

    def add_user(self, name: str, password: str | None, *, admin: bool = False, origin: str = "local") -> User:
        if not _NAME.match(name or ""):
            raise ConfigError(f"user name {name!r} is not valid: 1-64 letters, digits, '.', '_', '-', '@', '+'")
        if origin == "local":
            check_password_strength(password)
        hashed = _hasher().hash(password) if password else None
        uid = uuid.uuid4().hex
        with self.db._tx() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"a user named {name!r} exists already")
            db.execute("INSERT INTO users (id, name, password_hash, is_admin, origin, created) VALUES (?, ?, ?, ?, ?, ?)",
                       (uid, name, hashed, int(admin), origin, time.time()))
        return self.user(uid)

    def user(self, uid: str) -> User:
        rows = self._q("SELECT id, name, is_admin, origin FROM users WHERE id = ? AND disabled = 0", (uid,))
        if not rows:
            raise NotFound(f"no user {uid!r}")
        groups = tuple(r[0] for r in self._q("SELECT group_id FROM memberships WHERE user_id = ? ORDER BY group_id",
                                             (uid,)))
        r = rows[0]
        return User(r["id"], r["name"], bool(r["is_admin"]), groups, r["origin"])

    def user_by_name(self, name: str) -> User | None:
        rows = self._q("SELECT id FROM users WHERE name = ? AND disabled = 0", (name or "",))
        return self.user(rows[0][0]) if rows else None

    def users(self) -> list[User]:
        return [self.user(r[0]) for r in self._q("SELECT id FROM users WHERE disabled = 0 ORDER BY name")]

    def set_password(self, name: str, password: str) -> None:
        check_password_strength(password)
        with self.db._tx() as db:
            if db.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                          (_hasher().hash(password), name)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

    def verify_password(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs. A wrong name costs as much as a wrong password (no user probe)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        _ensure_dummy()
        rows = self._q("SELECT id, password_hash FROM users WHERE name = ? AND disabled = 0 AND origin = 'local'",
                       (name or "",))
        ph = _hasher()
        stored = rows[0]["password_hash"] if rows and rows[0]["password_hash"] else _DUMMY_HASH
        try:
            ph.verify(stored, password or "")
        except (VerificationError, InvalidHashError):
            return None
        if not rows or stored is _DUMMY_HASH:
            return None
        if ph.check_needs_rehash(stored):
            with self.db._tx() as db:
                db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (ph.hash(password), rows[0]["id"]))
        return self.user(rows[0]["id"])

    def external_user(self, name: str, origin: str, groups: list[str] | None = None) -> User:
        """A user signed in elsewhere (OIDC, a trusted proxy): created on first sign-in; their group list mapped to
        local groups of those names (created when missing) and kept in sync at each sign-in."""
        user = self.user_by_name(name)
        if user is None:
            user = self.add_user(name, None, origin=origin)
        if groups is not None:
            wanted = {self.group_id(g, create=True) for g in groups if _NAME.match(g)}
            with self.db._tx() as db:
                db.execute("DELETE FROM memberships WHERE user_id = ?", (user.id,))
                db.executemany("INSERT INTO memberships (user_id, group_id) VALUES (?, ?)",
                               [(user.id, g) for g in sorted(wanted)])
        return self.user(user.id)

    # ---- groups ----------------------------------------------------------------------------------
    def group_id(self, name: str, *, create: bool = False) -> str:
        rows = self._q("SELECT id FROM groups WHERE name = ?", (name,))
        if rows:
            return rows[0][0]
        if not create:
            raise NotFound(f"no group {name!r}")
        if not _NAME.match(name or ""):
            raise ConfigError(f"group name {name!r} is not valid: 1-64 letters, digits, '.', '_', '-', '@', '+'")
        gid = uuid.uuid4().hex
        with self.db._tx() as db:
            db.execute("INSERT OR IGNORE INTO groups (id, name, created) VALUES (?, ?, ?)", (gid, name, time.time()))
        return self._q("SELECT id FROM groups WHERE name = ?", (name,))[0][0]

    def groups(self) -> list[dict]:
        return [{"id": r["id"], "name": r["name"], "members": [m[0] for m in self._q(
            "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.name",
            (r["id"],))]} for r in self._q("SELECT id, name FROM groups ORDER BY name")]

    def add_member(self, group: str, user: str) -> None:
        u = self.user_by_name(user)
        if u is None:
            raise NotFound(f"no user {user!r}")
        gid = self.group_id(group, create=True)
        with self.db._tx() as db:
            db.execute("INSERT OR IGNORE INTO memberships (user_id, group_id) VALUES (?, ?)", (u.id, gid))

    def remove_member(self, group: str, user: str) -> None:
        u = self.user_by_name(user)
        if u is None:
            raise NotFound(f"no user {user!r}")
        with self.db._tx() as db:
            db.execute("DELETE FROM memberships WHERE user_id = ? AND group_id = ?", (u.id, self.group_id(group)))

    def principal_id(self, ref: str) -> str:
        """'user:NAME' / 'group:NAME' / 'public' (or an id form 'u:…', 'g:…') -> the principal string."""
        if ref == "public" or re.fullmatch(r"[ug]:[0-9a-f]{32}", ref or ""):
            return ref
        kind, _, name = (ref or "").partition(":")
        if kind == "user":
            u = self.user_by_name(name)
            if u is None:
                raise NotFound(f"no user {name!r}")
            return f"u:{u.id}"
        if kind == "group":
            return f"g:{self.group_id(name)}"
        raise ConfigError(f"principal {ref!r} is not valid; give user:NAME, group:NAME or public")

    def describe(self, principal: str) -> str:
        if principal == "public":
            return "public"
        kind, _, pid = principal.partition(":")
        table = "users" if kind == "u" else "groups"
        rows = self._q(f"SELECT name FROM {table} WHERE id = ?", (pid,))
        return f"{'user' if kind == 'u' else 'group'}:{rows[0][0] if rows else pid}"

    # ---- collections and grants ----------------------------------------------------------------------
    def claim_collection(self, collection: str, owner: str | None, public: bool = False) -> None:
        """Record a collection's owner (its creator) the first time it is seen."""
        with self.db._tx() as db:
            db.execute("INSERT OR IGNORE INTO collections (name, owner, public, created) VALUES (?, ?, ?, ?)",
                       (collection, owner, int(public), time.time()))

    def set_owner(self, collection: str, owner: str | None) -> None:
        self.claim_collection(collection, owner)
        with self.db._tx() as db:
            db.execute("UPDATE collections SET owner = ?, acl_version = acl_version + 1 WHERE name = ?",
                       (owner, collection))

    def acl_pending(self, collection: str) -> int | None:
        """The collection's access version when its chunks' acl payloads do not have it yet, else None."""
        rows = self._q("SELECT acl_version, acl_synced FROM collections WHERE name = ?", (collection,))
        if not rows or rows[0]["acl_version"] == rows[0]["acl_synced"]:
            return None
        return rows[0]["acl_version"]

    def acl_synced(self, collection: str, version: int) -> None:
        with self.db._tx() as db:
            db.execute("UPDATE collections SET acl_synced = ? WHERE name = ?", (version, collection))

    @staticmethod
    def _bump(db, collection: str) -> None:
        db.execute("UPDATE collections SET acl_version = acl_version + 1 WHERE name = ?", (collection,))

    def forget_collection(self, collection: str) -> None:
        with self.db._tx() as db:
            for table in ("collections", "grants", "document_readers"):
                db.execute(f"DELETE FROM {table} WHERE {'name' if table == 'collections' else 'collection'} = ?",
                           (collection,))

    def collection_info(self, collection: str) -> dict:
        rows = self._q("SELECT owner, public FROM collections WHERE name = ?", (collection,))
        owner, public = (rows[0]["owner"], bool(rows[0]["public"])) if rows else (None, False)
        grants = {r["principal"]: r["level"] for r in self._q(
            "SELECT principal, level FROM grants WHERE collection = ?", (collection,))}
        return {"owner": owner, "public": public, "grants": grants}

    def set_public(self, collection: str, public: bool) -> None:
        self.claim_collection(collection, None)
        with self.db._tx() as db:
            db.execute("UPDATE collections SET public = ? WHERE name = ?", (int(public), collection))
            self._bump(db, collection)

    def grant(self, collection: str, principal: str, level: str | None) -> None:
        """Give ``principal`` (u:…, g:…) ``level`` on ``collection``; None removes its grant."""
        if level is not None and level not in LEVELS:
            raise ConfigError(f"grant level {level!r} is not valid; allowed: {', '.join(LEVELS)}")
        self.claim_collection(collection, None)
        with self.db._tx() as db:
            if level is None:
                db.execute("DELETE FROM grants WHERE collection = ? AND principal = ?", (collection, principal))
            else:
                db.execute("INSERT INTO grants (collection, principal, level) VALUES (?, ?, ?) ON CONFLICT"
                           "(collection, principal) DO UPDATE SET level = excluded.level", (collection, principal, level))
            self._bump(db, collection)

    def level_on(self, collection: str, principals: list[str]) -> str | None:
        """The highest level any of ``principals`` (the caller's u:/g:/public) has on ``collection``."""
        info = self.collection_info(collection)
        best = -1
        if info["owner"] and info["owner"] in principals:
            best = LEVELS.index("admin")
        if info["public"] and "public" in principals:
            best = max(best, 0)
        for p, level in info["grants"].items():
            if p in principals:
                best = max(best, LEVELS.index(level))
        return LEVELS[best] if best >= 0 else None

    def readers(self, collection: str) -> list[str]:
        """The principals that may read the whole collection (what its chunks' ``acl`` holds by default)."""
        info = self.collection_info(collection)
        out = set(info["grants"])
        if info["owner"]:
            out.add(info["owner"])
        if info["public"]:
            out.add("public")
        return sorted(out)

    def set_document_readers(self, collection: str, doc_id: str, principals: list[str] | None) -> None:
        """Narrow a document's readers to ``principals`` (None: back to the collection's)."""
        self.claim_collection(collection, None)
        with self.db._tx() as db:
            self._bump(db, collection)
            if principals is None:
                db.execute("DELETE FROM document_readers WHERE collection = ? AND doc_id = ?", (collection, doc_id))
            else:
                db.execute("INSERT INTO document_readers (collection, doc_id, principals) VALUES (?, ?, ?) ON CONFLICT"
                           "(collection, doc_id) DO UPDATE SET principals = excluded.principals",
                           (collection, doc_id, json.dumps(sorted(set(principals)))))

    def document_readers(self, collection: str) -> dict[str, list[str]]:
        return {r["doc_id"]: json.loads(r["principals"]) for r in self._q(
            "SELECT doc_id, principals FROM document_readers WHERE collection = ?", (collection,))}

    def acl_of(self, collection: str, doc_id: str | None = None) -> list[str]:
        """A chunk's ``acl``: the collection's readers, narrowed by the document's own list where it has one (a
        narrowing can only keep readers the collection has)."""
        readers = self.readers(collection)
        narrowed = self.document_readers(collection).get(doc_id) if doc_id else None
        return readers if narrowed is None else sorted(set(readers) & set(narrowed))

    # ---- API keys --------------------------------------------------------------------------------
    def create_key(self, user: str, name: str, scopes: list[str], expires_in_s: float | None = None) -> tuple[str, dict]:
        """A new key for user ``user``: (the key, shown once; its record)."""
        bad = [s for s in scopes if s not in SCOPES]
        if not scopes or bad:
            raise ConfigError(f"key scopes {scopes!r} are not valid; allowed: {', '.join(SCOPES)}")
        u = self.user_by_name(user)
        if u is None:
            raise NotFound(f"no user {user!r}")
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = f"{KEY_PREFIX}_{prefix}_{secret}"
        kid, now = uuid.uuid4().hex, time.time()
        with self.db._tx() as db:
            db.execute("INSERT INTO api_keys (id, user_id, prefix, hash, name, scopes, created, expires) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?)", (kid, u.id, prefix, _key_hash(key), name or "key",
                                                   ",".join(sorted(set(scopes))), now,
                                                   now + expires_in_s if expires_in_s else None))
        return key, self.key_record(prefix)

    def key_record(self, prefix: str) -> dict:
        rows = self._q("SELECT k.prefix, k.name, k.scopes, k.created, k.expires, k.revoked, k.last_used, u.name AS user "
                       "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?", (prefix,))
        if not rows:
            raise NotFound(f"no API key with prefix {prefix!r}")
        r = dict(rows[0])
        r["scopes"] = r["scopes"].split(",")
        return r

    def keys(self, user: str | None = None) -> list[dict]:
        sql = "SELECT k.prefix FROM api_keys k JOIN users u ON u.id = k.user_id"
        rows = self._q(sql + (" WHERE u.name = ?" if user else "") + " ORDER BY k.created", (user,) if user else ())
        return [self.key_record(r[0]) for r in rows]

    def revoke_key(self, prefix: str, user: str | None = None) -> None:
        """Revoke a key (``user``: only if it is theirs)."""
        rec = self.key_record(prefix)
        if user is not None and rec["user"].lower() != user.lower():
            raise NotFound(f"no API key with prefix {prefix!r}")
        with self.db._tx() as db:
            db.execute("UPDATE api_keys SET revoked = ? WHERE prefix = ? AND revoked IS NULL", (time.time(), prefix))

    def check_key(self, key: str) -> tuple[User, frozenset[str]]:
        """(the key's user, the rights its scopes give) for a valid key; AccessError (401) otherwise."""
        parts = (key or "").split("_", 2)  # the secret itself may hold "_" (URL-safe base64)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            raise AccessError("the API key is not valid", status=401)
        rows = self._q("SELECT user_id, hash, scopes, expires, revoked FROM api_keys WHERE prefix = ?", (parts[1],))
        if not rows or not hmac.compare_digest(rows[0]["hash"], _key_hash(key)):
            raise AccessError("the API key is not valid", status=401)
        r = rows[0]
        if r["revoked"] is not None:
            raise AccessError("the API key was revoked", status=401)
        if r["expires"] is not None and r["expires"] < time.time():
            raise AccessError("the API key has expired", status=401)
        with self.db._tx() as db:
            db.execute("UPDATE api_keys SET last_used = ? WHERE prefix = ?", (time.time(), parts[1]))
        rights = frozenset(x for s in r["scopes"].split(",") for x in SCOPES.get(s, ()))
        return self.user(r["user_id"]), rights


def acl_function(data_dir, collection: str):
    """For an in-process ingest (the CLI): doc_id -> its chunks' acl from the app database under ``data_dir``, or None
    when there is no app database (nothing to grant yet; a later grant rewrites the payloads, app/workspace.py)."""
    from pathlib import Path

    from .db import DB_NAME

    if not (Path(data_dir) / DB_NAME).exists():
        return None
    identity = Identity(AppDatabase(data_dir))
    return lambda doc_id: identity.acl_of(collection, doc_id)


def key_prefix(key_or_prefix: str) -> str:
    """The prefix of an API key given whole (``lrk_<prefix>_<secret>``) or as its prefix."""
    text = (key_or_prefix or "").strip()
    return text.split("_", 2)[1] if text.startswith(KEY_PREFIX + "_") else text


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_password_strength(password: str | None) -> None:
    if not password or len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD} characters")


def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


_DUMMY_HASH = None  # set on first use (hashing costs ~50 ms; not at import)


def _ensure_dummy() -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _dummy_hash()


# ---- audit: every change to users, groups, grants and keys is recorded (app/audit.py) ---------------------------
def _audited(fn, event: str, fields):
    """``fn`` with a keyword ``by`` (who did it: a Principal or a name; default 'local', the command line) that
    records ``event`` with ``fields(*args, **kwargs)`` after it succeeded."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *args, by=None, **kwargs):
        out = fn(self, *args, **kwargs)
        self._record(event, by or "local", **fields(*args, **kwargs))
        return out

    return wrapper


_AUDITED = (
    ("add_user", "user.add", lambda name, password=None, admin=False, origin="local":
        {"user": name, "admin": admin, "origin": origin}),
    ("set_password", "user.password", lambda name, password: {"user": name}),
    ("add_member", "group.add_member", lambda group, user: {"group": group, "user": user}),
    ("remove_member", "group.remove_member", lambda group, user: {"group": group, "user": user}),
    ("set_owner", "grant.owner", lambda collection, owner: {"collection": collection, "owner": owner}),
    ("set_public", "grant.public", lambda collection, public: {"collection": collection, "public": public}),
    ("grant", "grant.set", lambda collection, principal, level: {"collection": collection, "principal": principal,
                                                                "level": level}),
    ("set_document_readers", "grant.document", lambda collection, doc_id, principals: {
        "collection": collection, "document": doc_id, "readers": principals}),
    ("create_key", "key.create", lambda user, name, scopes, expires_in_s=None: {
        "user": user, "name": name, "scopes": sorted(scopes), "expires_in_s": expires_in_s}),
    ("revoke_key", "key.revoke", lambda prefix, user=None: {"prefix": key_prefix(prefix)}),  # never a whole key
)
for _name, _event, _fields in _AUDITED:
    setattr(Identity, _name, _audited(getattr(Identity, _name), _event, _fields))

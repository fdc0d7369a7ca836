"""Who is calling and what they may do; sign-in throttling; the session secret.

Rights: ``read`` (search, ask, list and open documents), ``write`` (ingest, delete), ``admin`` (re-index, drop a
collection). Every state-changing operation checks its right in ``RagService`` itself, whichever entry point called
it (a UI event, the HTTP API, gradio_client), so no event is reachable without its check.

Modes:
- Single-user mode: one login (``LUSIFER_RAG_AUTH_USER`` / ``..._PASSWORD``) with every right; callers that are not
  signed in get nothing.
- Multi-user mode (the app database has users, app/identity.py, or single sign-on is configured): users sign in
  (password, OIDC, a trusted proxy) or send an API key; what they may do is decided per collection by its owner and
  grants, and what they may read by each chunk's ``acl`` payload (``read_filter``). Administrators may do
  everything. Callers that are not signed in get nothing (or, with ``anonymous_access=read``, public collections).
- No login: callers get ``anonymous_access``: by default every right when the server listens on loopback only (this
  machine's user), and ``read`` when it listens on a network, so that anyone who reaches the port cannot delete.

Principals whose ``ids`` is None (this machine's user, the single login, administrators) read every chunk; every
other caller reads only chunks whose ``acl`` names one of its ids. ``read_filter`` is the one function that turns a
caller into the store filter every read goes through; it fails closed (no caller, no results).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lusifer_rag.errors import AccessError, ConfigError, ThrottledError
from lusifer_rag.store.filters import Filter, both

RIGHTS = ("read", "write", "admin")
ANONYMOUS_LEVELS = ("none", "read", "write", "admin")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANONYMOUS = "anonymous"  # the user name Gradio handlers see for a caller who is not signed in
USER_PREFIX = "user:"
UID_PREFIX = "uid:"  # Gradio user names of multi-user mode: 'uid:<user id>'
#: the payload field (a keyword index) listing who may read a chunk: 'u:<user id>', 'g:<group id>', 'public'
ACL_KEY = "metadata.acl"


def rights_up_to(level: str) -> frozenset[str]:
    if level not in ANONYMOUS_LEVELS:
        raise ConfigError(f"access level {level!r} is not valid; allowed: {', '.join(ANONYMOUS_LEVELS)}")
    return frozenset(RIGHTS[: ANONYMOUS_LEVELS.index(level)])


@dataclass(frozen=True)
class Principal:
    """A caller: ``name`` None for one who is not signed in. ``rights``: the most it may do anywhere (an API key's
    scopes narrow them); ``ids``: the acl principals it reads as (its user, its groups, ``public``), None for a
    caller who reads everything; ``user_id``: its user in the directory (multi-user mode)."""

    name: str | None
    rights: frozenset[str]
    ids: frozenset[str] | None = None
    user_id: str | None = None

    def require_site_admin(self, action: str) -> None:
        """Raise AccessError unless this caller administers the whole app (not only some collections)."""
        self.require("admin", action)
        if self.ids is not None:
            raise AccessError(f"{self.name or 'this caller'!r} may not {action} (only an administrator may)")

    def require(self, right: str, action: str) -> None:
        """Raise AccessError unless this caller has ``right``; ``action`` says what was refused ("delete documents")."""
        if right in self.rights:
            return
        if self.name is None:
            raise AccessError(f"sign in to {action}", status=401)
        raise AccessError(f"{self.name!r} may not {action} (it needs the {right!r} right)")


#: the caller of in-process code (the CLI, scripts, tests of the library): whoever can run it owns the data
LOCAL = Principal("local", frozenset(RIGHTS))


def read_filter(principal: Principal | None, flt: Filter | None = None, action: str = "search") -> Filter | None:
    """The store filter of what ``principal`` may read, ANDed with the caller's own ``flt`` (which can narrow it,
    never widen it). Fails closed: no principal, or one without the read right or any acl id, raises AccessError."""
    if not isinstance(principal, Principal):
        raise AccessError(f"no caller given: every read needs a principal to {action}", status=401)
    principal.require("read", action)
    if principal.ids is None:
        return flt
    if not principal.ids:
        raise AccessError(f"{principal.name or 'this caller'!r} may not {action}: it can read no collection")
    return both(Filter(must={ACL_KEY: sorted(principal.ids)}), flt)


def can_read(principal: Principal | None, metadata: dict) -> bool:
    """Whether ``principal`` may read a chunk with this payload ``metadata`` (the viewer's per-document check; the
    same rule as ``read_filter``)."""
    if not isinstance(principal, Principal) or "read" not in principal.rights:
        return False
    if principal.ids is None:
        return True
    acl = metadata.get("acl") or []
    return bool(principal.ids.intersection(acl if isinstance(acl, list) else [acl]))


class Authorizer:
    """Per-collection rights: a caller who reads everything has its own rights on every collection; any other has
    the level its ids hold on the collection (owner: admin; grants; public: read), capped by its rights."""

    def __init__(self, identity=None):
        self.identity = identity  # app/identity.py Identity, or None (no directory: no per-collection grants)

    def rights_on(self, principal: Principal | None, collection: str) -> frozenset[str]:
        if not isinstance(principal, Principal):
            return frozenset()
        if principal.ids is None:
            return principal.rights
        if self.identity is None:
            return frozenset()
        from .identity import rights_of_level

        return rights_of_level(self.identity.level_on(collection, sorted(principal.ids))) & principal.rights

    def require(self, principal: Principal | None, collection: str, right: str, action: str) -> None:
        if not isinstance(principal, Principal):
            raise AccessError(f"no caller given: sign in to {action}", status=401)
        principal.require(right, action)
        if right not in self.rights_on(principal, collection):
            raise AccessError(f"{principal.name or 'this caller'!r} may not {action} in collection {collection!r} "
                              f"(it needs the {right!r} right there; ask the collection's owner for a grant)")


class AccessPolicy:
    """Maps a request (its session, a trusted proxy's user, an API key) to a Principal; checks passwords."""

    def __init__(self, auth: tuple[str, str] | None, anonymous: str | None, host: str = "127.0.0.1",
                 identity=None, sso: bool = False):
        """``identity``: the user directory (app/identity.py) or None; ``sso``: OIDC or a trusted proxy is configured
        (multi-user mode before the first user signs in)."""
        self.auth, self.identity, self.sso = auth, identity, sso
        self._anonymous_level = anonymous
        self._single_anonymous = Principal(None, rights_up_to(
            anonymous if anonymous is not None else "none" if auth else ("admin" if host in LOOPBACK else "read")))

    @property
    def multi_user(self) -> bool:
        return self.auth is None and self.identity is not None and (self.sso or self.identity.has_users())

    @property
    def anonymous(self) -> Principal:
        if not self.multi_user:
            return self._single_anonymous
        if self._anonymous_level in ("read", "write", "admin"):  # multi-user mode: public collections, read only
            return Principal(None, frozenset({"read"}), frozenset({"public"}))
        return Principal(None, frozenset())

    @property
    def login_required(self) -> bool:
        return self.auth is not None or (self.multi_user and not self.anonymous.rights)

    def check_password(self, user: str, password: str) -> bool:
        return self.sign_in(user, password) is not None

    def sign_in(self, user: str, password: str) -> dict | None:
        """The session fields of a right user name and password ({'user'} single-user, {'uid', 'user'} multi-user),
        else None."""
        if self.auth is not None:
            ok_user = hmac.compare_digest(user.encode(), self.auth[0].encode())
            ok_password = hmac.compare_digest(password.encode(), self.auth[1].encode())
            return {"user": user} if ok_user and ok_password else None
        if self.multi_user:
            u = self.identity.verify_password(user, password)
            return {"uid": u.id, "user": u.name} if u is not None else None
        return None

    def user_principal(self, user, cap: frozenset[str] | None = None) -> Principal:
        """A directory user (app/identity.py User) as a caller; ``cap``: an API key's rights."""
        rights = frozenset(RIGHTS) if cap is None else frozenset(RIGHTS) & cap
        ids = None if user.is_admin else frozenset({f"u:{user.id}", "public", *(f"g:{g}" for g in user.groups)})
        return Principal(user.name, rights, ids, user.id)

    def _user_by_id(self, uid: str | None) -> Principal | None:
        from .db import NotFound

        if not uid or self.identity is None:
            return None
        try:
            return self.user_principal(self.identity.user(uid))
        except NotFound:  # deleted or disabled since the session began
            return None

    def principal(self, user: str | None) -> Principal:
        """Single-user mode: the principal of a signed-in user name (every right), else the anonymous one."""
        if user and self.auth is not None and user == self.auth[0]:
            return Principal(user, frozenset(RIGHTS))
        return self.anonymous

    def principal_of(self, session: dict | None, scope: dict | None = None) -> Principal:
        """The caller of a request: a trusted proxy's user (``scope['lusifer_user_id']``, set by app/proxy_auth.py
        only for requests from configured proxies), else the session's user, else the anonymous caller."""
        session = session or {}
        if self.multi_user:
            p = self._user_by_id((scope or {}).get("lusifer_user_id") or session.get("uid"))
            return p or self.anonymous
        return self.principal(session.get("user"))

    def principal_of_key(self, key: str) -> Principal:
        """The caller of an API key (its user, rights narrowed by its scopes); AccessError (401) if not valid."""
        if self.identity is None or not self.multi_user:
            raise AccessError("API keys need users (lusifer-rag users add NAME)", status=401)
        user, rights = self.identity.check_key(key)
        return self.user_principal(user, rights)

    def principal_of_username(self, username: str | None) -> Principal:
        """From the user name a Gradio handler sees (``gr.Request.username``, set by ``gradio_user``)."""
        if username and username.startswith(UID_PREFIX):
            return self._user_by_id(username[len(UID_PREFIX):]) or self.anonymous
        if username and username.startswith(USER_PREFIX) and not self.multi_user:
            return self.principal(username[len(USER_PREFIX):])
        return self.anonymous

    def gradio_user(self, session: dict, scope: dict | None = None) -> str | None:
        """What Gradio's auth dependency returns for a request: 'uid:<id>' (multi-user) or 'user:<name>' signed in,
        else 'anonymous:<browser id>' (or ANONYMOUS) when anonymous callers may do something, else None (401)."""
        p = self.principal_of(session, scope)
        if p.user_id is not None:
            return UID_PREFIX + p.user_id
        if p.name is not None:
            return USER_PREFIX + p.name
        if not p.rights:
            return None
        return f"{ANONYMOUS}:{session['anon']}" if session.get("anon") else ANONYMOUS

    def owner_of(self, username: str | None) -> str | None:
        """Whose records (saved conversations) a caller's are: 'u:<user id>' or 'u:<name>' signed in; anonymous
        callers with every right are this machine's user ('local'); other anonymous callers own their browser's
        ('a:<id>'), or nothing without a browser id."""
        p = self.principal_of_username(username)
        if p.user_id is not None:
            return f"u:{p.user_id}"
        if p.name is not None:
            return f"u:{p.name}"
        if "admin" in p.rights and p.ids is None:
            return "local"
        if username and username.startswith(ANONYMOUS + ":"):
            return "a:" + username.split(":", 1)[1]
        return None


class LoginThrottle:
    """Exponential back-off after failed sign-ins, per client address and per user name: FREE failures are free,
    then each one doubles the wait (1 s, 2 s, 4 s … up to MAX_WAIT_S). A success clears both counters; a counter
    is forgotten after FORGET_S without failures."""

    FREE = 5
    MAX_WAIT_S = 900.0
    FORGET_S = 3600.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._fails: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last)

    def _wait(self, key: str, now: float) -> float:
        n, last = self._fails.get(key, (0, 0.0))
        if n < self.FREE or now - last > self.FORGET_S:
            return 0.0
        return max(0.0, last + min(2.0 ** (n - self.FREE), self.MAX_WAIT_S) - now)

    def check(self, client: str, user: str) -> None:
        """Raise ThrottledError while this client or this user name must wait."""
        now = self.clock()
        with self._lock:
            wait = max(self._wait("c:" + client, now), self._wait("u:" + user, now))
        if wait > 0:
            raise ThrottledError(f"too many failed sign-ins; try again in {int(wait) + 1} s", retry_after=wait)

    def failed(self, client: str, user: str) -> None:
        now = self.clock()
        with self._lock:
            for key in ("c:" + client, "u:" + user):
                n, last = self._fails.get(key, (0, now))
                self._fails[key] = (0 if now - last > self.FORGET_S else n) + 1, now
            if len(self._fails) > 100_000:  # bounded memory under a spray of names
                cutoff = now - self.FORGET_S
                self._fails = {k: v for k, v in self._fails.items() if v[1] >= cutoff}

    def succeeded(self, client: str, user: str) -> None:
        with self._lock:
            self._fails.pop("c:" + client, None)
            self._fails.pop("u:" + user, None)


def session_secret(configured: str | None, data_dir: str | os.PathLike) -> str:
    """The secret that signs session cookies: the configured one, else one generated once and kept in
    ``<data dir>/secrets/session.key``, readable by this user only."""
    if configured:
        if len(configured) < 32:
            raise ConfigError(f"LUSIFER_RAG_SESSION_SECRET has {len(configured)} characters; give at least 32 "
                              "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return configured
    d = Path(data_dir) / "secrets"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    path = d / "session.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()

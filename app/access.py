"""Who is calling and what they may do; sign-in throttling; the session secret.

Rights: ``read`` (search, ask, list and open documents), ``write`` (ingest, delete), ``admin`` (re-index, drop a
collection). Every state-changing operation checks its right in ``RagService`` itself, whichever entry point called
it (a UI event, the HTTP API, gradio_client), so no event is reachable without its check.

Single-user mode: one login (``LUSIFER_RAG_AUTH_USER`` / ``..._PASSWORD``) with every right; callers that are not
signed in get nothing. Without a login, callers get ``anonymous_access``: by default every right when the server
listens on loopback only (this machine's user), and ``read`` when it listens on a network, so that anyone who
reaches the port cannot delete documents.
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

RIGHTS = ("read", "write", "admin")
ANONYMOUS_LEVELS = ("none", "read", "write", "admin")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANONYMOUS = "anonymous"  # the user name Gradio handlers see for a caller who is not signed in
USER_PREFIX = "user:"


def rights_up_to(level: str) -> frozenset[str]:
    if level not in ANONYMOUS_LEVELS:
        raise ConfigError(f"access level {level!r} is not valid; allowed: {', '.join(ANONYMOUS_LEVELS)}")
    return frozenset(RIGHTS[: ANONYMOUS_LEVELS.index(level)])


@dataclass(frozen=True)
class Principal:
    """A caller: ``name`` None for one who is not signed in."""

    name: str | None
    rights: frozenset[str]

    def require(self, right: str, action: str) -> None:
        """Raise AccessError unless this caller has ``right``; ``action`` says what was refused ("delete documents")."""
        if right in self.rights:
            return
        if self.name is None:
            raise AccessError(f"sign in to {action}", status=401)
        raise AccessError(f"{self.name!r} may not {action} (it needs the {right!r} right)")


#: the caller of in-process code (the CLI, scripts, tests of the library): whoever can run it owns the data
LOCAL = Principal("local", frozenset(RIGHTS))


class AccessPolicy:
    """Maps a request's signed-in user (or none) to a Principal; checks passwords in single-user mode."""

    def __init__(self, auth: tuple[str, str] | None, anonymous: str | None, host: str = "127.0.0.1"):
        self.auth = auth
        if anonymous is None:
            anonymous = "none" if auth else ("admin" if host in LOOPBACK else "read")
        self.anonymous = Principal(None, rights_up_to(anonymous))

    @property
    def login_required(self) -> bool:
        return self.auth is not None

    def check_password(self, user: str, password: str) -> bool:
        if self.auth is None:
            return False
        ok_user = hmac.compare_digest(user.encode(), self.auth[0].encode())
        ok_password = hmac.compare_digest(password.encode(), self.auth[1].encode())
        return ok_user and ok_password

    def principal(self, user: str | None) -> Principal:
        """The principal of a signed-in user name (single-user mode: every right), else the anonymous one."""
        if user and self.auth is not None and user == self.auth[0]:
            return Principal(user, frozenset(RIGHTS))
        return self.anonymous

    def principal_of_username(self, username: str | None) -> Principal:
        """From the user name a Gradio handler sees (``gr.Request.username``, set by ``gradio_user``)."""
        if username and username.startswith(USER_PREFIX):
            return self.principal(username[len(USER_PREFIX):])
        return self.anonymous

    def gradio_user(self, session: dict) -> str | None:
        """What Gradio's auth dependency returns for a request's session: 'user:<name>' signed in, else
        'anonymous:<browser id>' (or ANONYMOUS) when anonymous callers may do anything, else None (Gradio: 401)."""
        p = self.principal(session.get("user"))
        if p.name is not None:
            return USER_PREFIX + p.name
        if not p.rights:
            return None
        return f"{ANONYMOUS}:{session['anon']}" if session.get("anon") else ANONYMOUS

    def owner_of(self, username: str | None) -> str | None:
        """Whose records (saved conversations) a caller's are: 'u:<name>' signed in; anonymous callers with every
        right are this machine's user ('local'); other anonymous callers own their browser's ('a:<id>'), or
        nothing without a browser id."""
        p = self.principal_of_username(username)
        if p.name is not None:
            return f"u:{p.name}"
        if "admin" in p.rights:
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

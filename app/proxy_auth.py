"""Trusted-header single sign-on: a reverse proxy that signs users in (oauth2-proxy, Authelia, Pomerium, a
Keycloak gatekeeper …) names the user in a header, and the app believes it from that proxy only.

For a request whose direct peer address is among ``trusted_proxies`` (addresses or CIDRs), the user named in
``trusted_user_header`` (default ``X-Forwarded-User``) is created on first sight (origin "proxy") with the groups
of ``trusted_groups_header`` (comma-separated; default ``X-Forwarded-Groups``), and the request's ASGI scope gets
``lusifer_user_id``: the app's principal resolution reads it before the session. From any other address both
headers are removed from the request before anything else sees it, and nothing is signed in.

The direct peer is the TCP connection's address, before any ``X-Forwarded-For`` rewriting: this middleware is
installed outside uvicorn's proxy-header handling (which create_app's server then runs inside the app, trusting
``FORWARDED_ALLOW_IPS`` if set, else loopback and the trusted proxies), so a client cannot claim a proxy's address.

Warning: the port the app listens on must be reachable only through the proxy (or the trusted addresses must be
the proxy's alone), and the proxy must set (never pass on) the headers: whoever can send a request from a trusted
address with these headers is whoever they name.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time

from lusifer_rag.errors import AccessError, ConfigError

from .sso import group_names, identity_of, sign_in

log = logging.getLogger(__name__)

ORIGIN = "proxy"
SCOPE_KEY = "lusifer_user_id"
CACHE_TTL_S = 60.0  # a user and group list seen within this is not written to the directory again
CACHE_MAX = 10_000


def parse_networks(value: str | None) -> list:
    """``trusted_proxies`` as networks; ConfigError names an entry that is neither an address nor a CIDR."""
    nets = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"LUSIFER_RAG_TRUSTED_PROXIES entry {item[:80]!r} is not valid; give IP addresses or "
                              "CIDRs, comma-separated (e.g. 127.0.0.1,10.0.0.0/24)") from None
    return nets


def _header_name(value: str | None, setting: str, *, optional: bool) -> bytes | None:
    name = (value or "").strip().lower()
    if not name:
        if optional:
            return None
        raise ConfigError(f"LUSIFER_RAG_{setting.upper()} is empty; give a header name, e.g. X-Forwarded-User")
    if not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"LUSIFER_RAG_{setting.upper()}={value[:80]!r} is not a header name")
    return name.encode("latin-1")


class TrustedHeaderAuth:
    """ASGI middleware: signs in the user a trusted proxy names; strips the headers from everyone else."""

    def __init__(self, app, identity, networks: list, user_header: bytes, groups_header: bytes | None, audit=None):
        self.app, self.identity, self.networks, self.audit = app, identity, networks, audit
        self.user_header, self.groups_header = user_header, groups_header
        self.names = {user_header} | ({groups_header} if groups_header else set())
        self._cache: dict[tuple, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def trusted(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        scope.pop(SCOPE_KEY, None)  # only this middleware sets it
        headers = scope.get("headers") or []
        ours = [(k.lower(), v) for k, v in headers if k.lower() in self.names]
        if ours:
            scope = {**scope, "headers": [(k, v) for k, v in headers if k.lower() not in self.names]}
        client = scope.get("client")
        if not ours or not self.trusted(client[0] if client else None):
            return await self.app(scope, receive, send)
        users = [v.decode("latin-1").strip() for k, v in ours if k == self.user_header]
        if len(users) != 1 or not users[0]:
            if len(users) > 1:
                return await _refuse(scope, receive, send, 400, "the proxy sent the user header more than once")
            return await self.app(scope, receive, send)  # no user named: not signed in
        groups = None
        if self.groups_header is not None:
            raw = ",".join(v.decode("latin-1") for k, v in ours if k == self.groups_header)
            groups = group_names(raw, f"the proxy's {self.groups_header.decode()} header")
        try:
            scope[SCOPE_KEY] = await self._user_id(users[0], groups, client[0])
        except AccessError as e:
            if self.audit is not None:
                self.audit.record("login.failed", None, method="proxy", reason=str(e)[:200], client=client[0])
            return await _refuse(scope, receive, send, e.status, str(e))
        return await self.app(scope, receive, send)

    async def _user_id(self, name: str, groups: list[str] | None, proxy: str) -> str:
        """The user's id; the directory is written (user created, groups synced) and the sign-in audited at most
        once a CACHE_TTL_S for the same name and groups."""
        from starlette.concurrency import run_in_threadpool

        key = (name.lower(), tuple(groups) if groups is not None else None)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[1] < CACHE_TTL_S:
            return hit[0]
        user = await run_in_threadpool(sign_in, self.identity, name, ORIGIN, groups,
                                       f"the proxy's {self.user_header.decode()} header")
        if self.audit is not None:
            self.audit.record("login", user.name, method="proxy", client=proxy, groups=len(user.groups))
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (user.id, now)
        return user.id


async def _refuse(scope, receive, send, status: int, message: str):
    from starlette.responses import JSONResponse

    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


def install_proxy_auth(app, workspace, settings) -> bool:
    """With ``trusted_proxies`` set, add the middleware as ``app``'s outermost layer, with uvicorn's proxy-header
    handling inside it (AppServer then leaves it off in uvicorn: ``app.state.proxy_headers_inside``). Call it
    after every other ``add_middleware``. Returns whether trusted-header sign-in is on."""
    networks = parse_networks(getattr(settings, "trusted_proxies", None))
    if not networks:
        return False
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    user_header = _header_name(settings.trusted_user_header, "trusted_user_header", optional=False)
    groups_header = _header_name(settings.trusted_groups_header, "trusted_groups_header", optional=True)
    forwarded = os.environ.get("FORWARDED_ALLOW_IPS") or ",".join(
        ["127.0.0.1", "::1"] + [str(n) for n in networks])
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=forwarded)
    app.add_middleware(TrustedHeaderAuth, identity=identity_of(workspace), networks=networks,
                       user_header=user_header, groups_header=groups_header, audit=getattr(workspace, "audit", None))
    app.state.proxy_headers_inside = True
    log.info("trusted-header sign-in: %s from %s", user_header.decode(), ", ".join(map(str, networks)))
    return True

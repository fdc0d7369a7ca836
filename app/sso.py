"""What the two single sign-on modes share (OpenID Connect: app/oidc.py; a trusted reverse proxy: app/proxy_auth.py):
the directory they sign users into, the checks on the user name and groups an identity provider sends, and the
error page a browser sees.

A user signed in from outside is created on first sign-in with that origin ("oidc", "proxy") and no password, and
their groups are replaced by the provider's list at every sign-in (``Identity.external_user``). An external
sign-in never takes over an account of another origin: a provider that sends the name of a local user is refused,
whatever the names' case.
"""

from __future__ import annotations

import html
import logging
import re

from lusifer_rag.errors import AccessError, ConfigError

log = logging.getLogger(__name__)

#: most groups taken from one sign-in (a provider sending thousands is misconfigured; each is a database row)
MAX_GROUPS = 200
_NAME = re.compile(r"^[\w.@+-]{1,64}$")  # as app/identity.py accepts for user and group names


def identity_of(workspace):
    """The workspace's user directory (``ws.identity``), or one over its database where the workspace has none."""
    ident = getattr(workspace, "identity", None)
    if ident is None:
        from .identity import Identity

        ident = Identity(workspace.db)
    return ident


def group_names(value, source: str) -> list[str]:
    """A provider's group list (a JSON list of names, or one text of comma-separated names) as local group names:
    a leading '/' (Keycloak's full group path) is dropped; names the directory cannot hold are skipped (logged)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    skipped: list[str] = []
    for item in items:
        name = str(item).strip().lstrip("/")
        if not name:
            continue
        (out if _NAME.match(name) else skipped).append(name)
    if skipped:
        log.warning("%s: %d group name(s) skipped (allowed: 1-64 letters, digits, '.', '_', '-', '@', '+'): %s",
                    source, len(skipped), ", ".join(repr(s[:40]) for s in skipped[:10]))
    if len(out) > MAX_GROUPS:
        log.warning("%s: %d groups given; the first %d kept", source, len(out), MAX_GROUPS)
        out = out[:MAX_GROUPS]
    return sorted(set(out))


def sign_in(identity, name: str, origin: str, groups: list[str] | None, source: str):
    """The directory's user for an external sign-in (created on the first one; ``groups`` None: memberships left
    as they are). AccessError (403) for a name the directory cannot hold, a user of another origin, or a
    disabled user; ``source`` says who sent the name ("the identity provider", "the proxy's X-Forwarded-User")."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise AccessError(f"the user name {name[:80]!r} from {source} is not valid here; allowed: 1-64 letters, "
                          "digits, '.', '_', '-', '@', '+'")
    existing = identity.user_by_name(name)
    if existing is not None and existing.origin != origin:
        raise AccessError(f"user {name!r} exists here as a {existing.origin} user; a sign-in through {source} "
                          "cannot use that account")
    try:
        return identity.external_user(name, origin, groups)
    except ConfigError as e:
        again = identity.user_by_name(name)  # created by a concurrent first sign-in
        if again is not None and again.origin == origin:
            return identity.external_user(name, origin, groups)
        raise AccessError(f"user {name!r} may not sign in here ({e})") from None


ERROR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lusifer-rag: sign-in failed</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin-top:12vh;background:#f6f6f7}}
main{{background:#fff;padding:28px 32px;border-radius:10px;box-shadow:0 1px 4px #0002;max-width:460px}}
.err{{color:#b00020}}</style></head><body><main><h2>Sign-in failed</h2><p class="err" id="sso-error">{message}</p>
<p><a href="/login">Back to sign-in</a></p></main></body></html>"""


def error_response(request, status: int, message: str):
    """An HTML page for a browser (Accept: text/html), else JSON ``{"error": message}``; never a traceback."""
    from starlette.responses import HTMLResponse, JSONResponse

    headers = {"Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(ERROR_PAGE.format(message=html.escape(message)), status_code=status, headers=headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)

"""The Settings tab's access section: the caller's API keys (create, shown once; revoke) and the grants of the
collection chosen in Documents. Each handler takes the caller's Principal; the checks are the same as the HTTP API's
(app/api.py): a key of one's own, grants for whoever has admin on the collection."""

from __future__ import annotations

import html

from lusifer_rag.errors import AccessError, RagError

from .access import Principal

KEY_COLUMNS = ["prefix", "name", "scopes", "expires", "last used", "state"]


def _directory(ws):
    if not ws.policy.multi_user:
        raise RagError("API keys and grants need users: create the first with `lusifer-rag users add NAME --admin`")
    return ws.identity


def _when(t) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "-"


def key_rows(ws, principal: Principal) -> list[list[str]]:
    """The caller's own keys (never the keys themselves)."""
    if not ws.policy.multi_user or principal.user_id is None:
        return []
    return [[k["prefix"], k["name"], ",".join(k["scopes"]), _when(k["expires"]), _when(k["last_used"]),
             "revoked" if k["revoked"] else "active"] for k in ws.identity.keys(principal.name)]


def create_key(ws, principal: Principal, name: str, scopes: list[str], expires_days) -> str:
    """A new key of the caller's; returns it (shown once)."""
    ident = _directory(ws)
    if principal.user_id is None:
        raise AccessError("sign in to create API keys", status=401)
    days = float(expires_days) if expires_days not in (None, "", 0) else None
    if days is not None and days <= 0:
        raise RagError(f"expiry must be a positive number of days; got {expires_days!r}")
    key, _ = ident.create_key(principal.name, (name or "key").strip()[:64], list(scopes or ["search"]),
                              days * 86400 if days else None, by=principal)
    return key


def revoke_key(ws, principal: Principal, prefix: str) -> str:
    ident = _directory(ws)
    if principal.user_id is None:
        raise AccessError("sign in to revoke API keys", status=401)
    from .identity import key_prefix

    prefix = key_prefix(prefix)
    ident.revoke_key(prefix, principal.name, by=principal)  # only one's own: another's is "no API key"
    return f"Revoked key `{html.escape(prefix)}`."


def grants_md(ws, principal: Principal, collection: str | None) -> str:
    """The collection's owner, public flag and grants, for a caller with admin on it."""
    if not collection:
        return "Choose a collection in the Documents tab."
    ident = _directory(ws)
    ws.authorizer.require(principal, collection, "admin", "see the collection's grants")
    info = ident.collection_info(collection)
    lines = [f"**{html.escape(collection)}**: owner {html.escape(ident.describe(info['owner'])) if info['owner'] else '—'}"
             f"; {'public' if info['public'] else 'not public'}"]
    lines += [f"- {html.escape(ident.describe(p))}: {lv}" for p, lv in sorted(info["grants"].items())]
    return "\n".join(lines)


def set_grant(ws, principal: Principal, collection: str | None, who: str, level: str | None) -> str:
    """Give ``who`` (user:NAME, group:NAME, public) ``level`` (read/write/admin; 'none' removes) on the collection."""
    if not collection:
        raise RagError("choose a collection in the Documents tab first")
    ws.authorizer.require(principal, collection, "admin", "change the collection's grants")
    ident = _directory(ws)
    level = None if level in (None, "", "none") else level
    target = ident.principal_id((who or "").strip())
    if target == "public":
        if level not in (None, "read"):
            raise RagError(f"public access is read or none; got {level!r}")
        ident.set_public(collection, level == "read", by=principal)
    else:
        ident.grant(collection, target, level, by=principal)
    ws.sync_acl(collection)
    return grants_md(ws, principal, collection)

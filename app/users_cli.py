"""``lusifer-rag users | groups | grant | keys``: the user directory of the web app (app/identity.py), on the command
line. They change the app database under the data dir only (no store lock: they work while the server runs); a
running server applies grant changes to the chunks' acl payloads before its next read of the collection."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from lusifer_rag.cli import command
from lusifer_rag.errors import ConfigError
from lusifer_rag.settings import Settings

LEVELS = ("read", "write", "admin", "none")


def _identity(settings: Settings):
    from .audit import AuditLog
    from .db import AppDatabase
    from .identity import Identity

    return Identity(AppDatabase(settings.data_dir), audit=AuditLog(settings.data_dir))


def _password(args: argparse.Namespace) -> str:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password on: give it on stdin with --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def _print(rows, as_json: bool, fmt) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    else:
        for r in rows:
            print(fmt(r))


# ---- users -------------------------------------------------------------------------------------------
def _users_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a local user (the first one: --admin); asks for the password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may do everything: users, settings, every collection")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    pw = sub.add_parser("passwd", help="set a user's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    sub.add_parser("list", help="users, their groups and whether they are administrators").add_argument(
        "--json", action="store_true")


@command("users", "manage the web app's users (multi-user mode starts with the first one)", _users_args)
def users_cmd(args: argparse.Namespace, settings: Settings) -> int:
    ident = _identity(settings)
    if args.action == "add":
        user = ident.add_user(args.name, _password(args), admin=args.admin)
        print(f"created user {user.name!r}{' (administrator)' if user.is_admin else ''}")
        if not any(u.is_admin for u in ident.users()):
            print("note: there is no administrator yet: create one with `lusifer-rag users add NAME --admin`",
                  file=sys.stderr)
    elif args.action == "passwd":
        ident.set_password(args.name, _password(args))
        print(f"password of {args.name!r} changed")
    else:
        names = {g["id"]: g["name"] for g in ident.groups()}
        rows = [{"name": u.name, "admin": u.is_admin, "origin": u.origin, "groups": [names.get(g, g) for g in u.groups]}
                for u in ident.users()]
        _print(rows, args.json, lambda r: f"{r['name']}\t{'admin' if r['admin'] else 'user'}\t{r['origin']}\t"
                                          f"{','.join(r['groups'])}")
    return 0


# ---- groups ------------------------------------------------------------------------------------------
def _groups_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help in (("add", "add users to a group (created if missing)"), ("remove", "remove users from a group")):
        a = sub.add_parser(name, help=help)
        a.add_argument("group")
        a.add_argument("users", nargs="+")
    sub.add_parser("list", help="groups and their members").add_argument("--json", action="store_true")


@command("groups", "manage the web app's groups", _groups_args)
def groups_cmd(args: argparse.Namespace, settings: Settings) -> int:
    ident = _identity(settings)
    if args.action == "list":
        _print(ident.groups(), args.json, lambda g: f"{g['name']}\t{','.join(g['members'])}")
        return 0
    for user in args.users:
        (ident.add_member if args.action == "add" else ident.remove_member)(args.group, user)
    print(f"group {args.group!r}: {'added' if args.action == 'add' else 'removed'} {', '.join(args.users)}")
    return 0


# ---- grants ------------------------------------------------------------------------------------------
def _grant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("collection")
    p.add_argument("principal", nargs="?", help="user:NAME, group:NAME or public (none: list the grants)")
    p.add_argument("level", nargs="?", choices=LEVELS, help="read, write, admin, or none to remove the grant")
    p.add_argument("--owner", action="store_true", help="make PRINCIPAL (a user) the collection's owner instead")
    p.add_argument("--json", action="store_true")


@command("grant", "give users, groups or everyone (public) access to a collection; without a principal, list it",
         _grant_args)
def grant_cmd(args: argparse.Namespace, settings: Settings) -> int:
    ident = _identity(settings)
    if args.principal is None:
        info = ident.collection_info(args.collection)
        rows = {"collection": args.collection, "owner": ident.describe(info["owner"]) if info["owner"] else None,
                "public": info["public"], "grants": {ident.describe(p): lv for p, lv in info["grants"].items()}}
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            print(f"{args.collection}: owner {rows['owner'] or 'none (administrators only)'}; "
                  f"{'public (every signed-in user reads it)' if rows['public'] else 'not public'}")
            for who, level in sorted(rows["grants"].items()):
                print(f"  {who}\t{level}")
        return 0
    principal = ident.principal_id(args.principal)
    if args.owner:
        if not principal.startswith("u:"):
            raise ConfigError(f"an owner is a user (user:NAME); got {args.principal!r}")
        ident.set_owner(args.collection, principal)
        print(f"{args.collection}: owner is now {args.principal}")
        return 0
    if args.level is None:
        raise ConfigError(f"give the level for {args.principal}: one of {', '.join(LEVELS)}")
    if principal == "public":
        if args.level not in ("read", "none"):
            raise ConfigError(f"public access is read or none; got {args.level!r}")
        ident.set_public(args.collection, args.level == "read")
    else:
        ident.grant(args.collection, principal, None if args.level == "none" else args.level)
    print(f"{args.collection}: {args.principal} {'has no grant now' if args.level == 'none' else args.level}")
    return 0


# ---- API keys ----------------------------------------------------------------------------------------
def _keys_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="a new API key for USER (printed once; only its hash is kept)")
    c.add_argument("user")
    c.add_argument("--name", default="key", help="what it is for (shown in lists)")
    c.add_argument("--scope", action="append", choices=("search", "ingest", "admin"),
                   help="search (read), ingest (read and write), admin; repeatable (default: search)")
    c.add_argument("--expires-days", type=float, help="the key stops working after this many days")
    ls = sub.add_parser("list", help="keys (prefix, user, scopes, expiry, last use); never the keys themselves")
    ls.add_argument("user", nargs="?")
    ls.add_argument("--json", action="store_true")
    r = sub.add_parser("revoke", help="revoke a key by its prefix (lrk_PREFIX_…)")
    r.add_argument("prefix")


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


@command("keys", "create, list and revoke API keys (Authorization: Bearer KEY on the HTTP API)", _keys_args)
def keys_cmd(args: argparse.Namespace, settings: Settings) -> int:
    ident = _identity(settings)
    if args.action == "create":
        if args.expires_days is not None and args.expires_days <= 0:
            raise ConfigError(f"--expires-days must be positive; got {args.expires_days}")
        key, rec = ident.create_key(args.user, args.name, args.scope or ["search"],
                                    args.expires_days * 86400 if args.expires_days else None)
        print(key)
        print(f"API key {rec['prefix']} for {rec['user']}, scopes {','.join(rec['scopes'])}, expires "
              f"{_when(rec['expires'])}: shown once; keep it secret (send it as 'Authorization: Bearer KEY')",
              file=sys.stderr)
    elif args.action == "list":
        _print(ident.keys(args.user), args.json, lambda k: (
            f"{k['prefix']}\t{k['user']}\t{k['name']}\t{','.join(k['scopes'])}\texpires {_when(k['expires'])}\t"
            f"{'revoked' if k['revoked'] else 'active'}\tlast used {_when(k['last_used'])}"))
    else:
        from .identity import key_prefix

        prefix = key_prefix(args.prefix)
        ident.revoke_key(prefix)
        print(f"revoked API key {prefix}")
    return 0

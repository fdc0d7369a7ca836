"""The directory of users, groups, grants and API keys (app/identity.py) on the real SQLite app database: argon2
password hashes, no user probe, keys stored as hashes with a visible prefix, scoped, expiring and revocable, grants
and the flat per-document reader list. (Wiring it into the app's access checks is issue 35's remaining work.)"""

from __future__ import annotations

import time

import pytest

from lusifer_rag.app.db import AppDatabase
from lusifer_rag.app.identity import Identity, rights_of_level
from lusifer_rag.errors import AccessError, ConfigError


@pytest.fixture()
def ident(tmp_path):
    return Identity(AppDatabase(tmp_path))


def test_passwords_are_argon2_and_checked_without_a_user_probe(ident, tmp_path):
    alice = ident.add_user("alice", "correct horse battery", admin=True)
    assert alice.is_admin and ident.has_users()
    stored = ident._q("SELECT password_hash FROM users WHERE name = 'alice'")[0][0]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert ident.verify_password("alice", "correct horse battery").id == alice.id
    assert ident.verify_password("alice", "wrong password!!") is None
    assert ident.verify_password("nobody", "correct horse battery") is None
    with pytest.raises(ConfigError, match="at least"):
        ident.add_user("bob", "short")
    with pytest.raises(ConfigError, match="exists already"):
        ident.add_user("ALICE", "another long password")


def test_api_keys_are_hashed_scoped_expiring_and_revocable(ident):
    ident.add_user("alice", "correct horse battery")
    key, rec = ident.create_key("alice", "laptop", ["search"])
    assert key.startswith(f"lrk_{rec['prefix']}_") and rec["scopes"] == ["search"]
    assert key not in str(ident._q("SELECT * FROM api_keys")[0][:])  # only its hash is stored
    user, rights = ident.check_key(key)
    assert user.name == "alice" and rights == frozenset({"read"})
    with pytest.raises(AccessError):
        ident.check_key(key[:-1] + ("A" if key[-1] != "A" else "B"))  # right prefix, wrong secret
    with pytest.raises(ConfigError, match="scopes"):
        ident.create_key("alice", "bad", ["everything"])
    for _ in range(20):  # secrets that hold "_" (URL-safe base64) are valid keys too
        assert ident.check_key(ident.create_key("alice", "many", ["search"])[0])[0].name == "alice"
    short, rec2 = ident.create_key("alice", "ci", ["ingest"], expires_in_s=0.01)
    time.sleep(0.05)
    with pytest.raises(AccessError, match="expired"):
        ident.check_key(short)
    ident.revoke_key(rec["prefix"], user="alice")
    with pytest.raises(AccessError, match="revoked"):
        ident.check_key(key)


def test_grants_levels_and_document_readers(ident):
    a = ident.add_user("alice", "correct horse battery")
    b = ident.add_user("bob", "correct horse battery")
    ident.group_id("hr", create=True)
    ident.add_member("hr", "bob")
    ident.claim_collection("policies", f"u:{a.id}")
    hr = f"g:{ident.group_id('hr')}"
    ident.grant("policies", hr, "read")
    assert ident.level_on("policies", [f"u:{a.id}"]) == "admin"
    assert ident.level_on("policies", [f"u:{b.id}", *[f"g:{g}" for g in ident.user(b.id).groups]]) == "read"
    assert rights_of_level("write") == frozenset({"read", "write"})
    assert set(ident.acl_of("policies")) >= {f"u:{a.id}", hr}
    ident.set_document_readers("policies", "doc1", [f"u:{a.id}"])  # narrowed to Alice
    assert ident.acl_of("policies", "doc1") == [f"u:{a.id}"]
    assert hr in ident.acl_of("policies", "doc2")  # other documents inherit the collection's readers

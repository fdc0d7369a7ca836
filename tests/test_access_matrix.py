"""Alice never sees Bob's documents, through any entry point, on either store backend.

A real served app in multi-user mode (e5-small, real HTTP on 127.0.0.1, real SQLite, argon2 passwords): an
administrator (root), Alice, Bob, Carol (in group hr), a public collection. Every check is made through the HTTP API
with API keys, through the UI's own events (Gradio's queue, signed in with a session cookie), and through the
workspace the CLI and LangChain reach; on the embedded store and on the Qdrant client backend (the same code path
as a Qdrant server).
"""

from __future__ import annotations

import contextlib

import httpx
import pytest

from app_fixtures import app_settings, running_app
from gradio_raw import call_fn, error_of
from lusifer_rag.app.access import LOCAL, Principal, read_filter
from lusifer_rag.errors import AccessError, NotFoundError, RagError
from lusifer_rag.store import Filter

PASSWORD = "correct horse battery"
#: collection -> (owner, its one document's file name, a phrase only that document holds)
DOCS = {
    "alice-notes": ("alice", "plan.txt", "The Zanzibar pineapple budget for next spring is four thousand shillings."),
    "bob-notes": ("bob", "salary.txt", "The quokka salary ledger lists every bonus paid in the last quarter."),
    "hr": ("root", "policy.txt", "The heliotrope leave policy grants twelve extra days to new parents."),
    "open": ("root", "faq.txt", "The lighthouse opening hours are nine to five on weekdays."),
}
#: who reads which collections (root: administrator, everything; carol: group hr; open: public)
READS = {"root": set(DOCS), "alice": {"alice-notes", "open"}, "bob": {"bob-notes", "open"}, "carol": {"hr", "open"}}


@pytest.fixture(scope="module", params=["embedded", "qdrant-client"])
def world(request, tmp_path_factory, e5):
    """The served app with the four collections, each document ingested by its owner through the HTTP API."""
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.store import open_store

    tmp = tmp_path_factory.mktemp(f"matrix-{request.param}")
    settings = app_settings(tmp)
    store = open_store(str(tmp / "store") if request.param == "embedded" else ":memory:")
    from lusifer_rag.app.db import AppDatabase
    from lusifer_rag.app.identity import Identity

    ident = Identity(AppDatabase(tmp))
    ident.add_user("root", PASSWORD, admin=True)
    for name in ("alice", "bob", "carol"):
        ident.add_user(name, PASSWORD)
    ident.add_member("hr", "carol")
    keys = {name: ident.create_key(name, "test", ["admin" if name == "root" else "ingest"])[0] for name in READS}
    with contextlib.closing(store), running_app(settings, e5, store=store,
                                                options=AppOptions(ingest_workers=0)) as app:
        for coll, (owner, fname, text) in DOCS.items():
            h = {"Authorization": f"Bearer {keys[owner]}"}
            assert httpx.post(app.url + "api/v1/collections", json={"name": coll}, headers=h).status_code == 200
            r = httpx.post(app.url + "api/v1/documents", files={"files": (fname, text.encode())},
                           data={"collection": coll}, headers=h, timeout=120)
            assert r.status_code == 200 and len(r.json()["ingested"]) == 1, r.text
        root = {"Authorization": f"Bearer {keys['root']}"}
        for body, coll in (({"principal": "group:hr", "level": "read"}, "hr"),
                           ({"principal": "public", "level": "read"}, "open")):
            assert httpx.put(app.url + f"api/v1/collections/{coll}/grants", json=body, headers=root).status_code == 200
        yield app, keys


def _doc_ids(app) -> dict[str, str]:
    return {coll: app.workspace.service(coll).documents(principal=LOCAL)[0]["doc_id"] for coll in DOCS}


def _principal(app, name: str) -> Principal:
    return app.workspace.policy.user_principal(app.workspace.identity.user_by_name(name))


def _signed_in(app, name: str) -> httpx.Client:
    c = httpx.Client(base_url=app.url, timeout=120)
    r = c.post("login", data={"username": name, "password": PASSWORD})
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    return c


def _fn(app, name: str) -> int:
    return next(i for i, fn in app.demo.fns.items() if fn.name == name)


@pytest.mark.parametrize("who", sorted(READS))
def test_search_ask_list_and_open_show_exactly_what_each_user_may_read(world, who):
    app, keys = world
    ids = _doc_ids(app)
    api = httpx.Client(base_url=app.url, timeout=120, headers={"Authorization": f"Bearer {keys[who]}"})
    ui = _signed_in(app, who)
    p = _principal(app, who)
    try:
        visible = {c["name"] for c in api.get("api/v1/collections").json()}
        assert visible == READS[who] | ({"docs"} if who == "root" else set())
        for coll, (_, fname, text) in DOCS.items():
            may = coll in READS[who]
            query = text.split(" for ")[0].split(" lists ")[0].split(" grants ")[0].split(" are ")[0]
            # the HTTP API with a key: search over everything the caller may read
            hits = api.post("api/v1/search", json={"query": query, "k": 10}).json()
            assert any(h["source"] == fname for h in hits) == may, (who, coll, hits)
            # the UI's own event (a signed-in browser session), and the workspace (what the CLI's server path runs)
            out = call_fn(ui, _fn(app, "search_api"), [query, [], [], 10, False, []])
            assert error_of(out) == "", out
            assert any(h["source"] == fname for h in out["output"]["data"][0]) == may
            assert any(h.chunk.source == fname for h in app.workspace.search(query, k=10, principal=p)) == may
            # ask: the passages given to the answerer, through the API and the UI's own event
            ans = api.post("api/v1/ask", json={"question": query + "?", "k": 5}).json()
            assert any(c["source"] == fname for c in ans["contexts"]) == may, (who, coll, ans["contexts"])
            out = call_fn(ui, _fn(app, "ask_api"), [query + "?", "auto", [], 5, [], []])
            assert error_of(out) == "", out
            final = out["output"]["data"][0]
            assert final["done"] and any(c["source"] == fname for c in final["contexts"]) == may
            # document list, stats, the viewer and the original file
            r = api.get("api/v1/documents", params={"collection": coll})
            assert (r.status_code == 200 and [d["doc_id"] for d in r.json()] == [ids[coll]]) if may else \
                r.status_code == 403, (who, coll, r.text)
            r = api.get(f"api/v1/documents/{ids[coll]}/view", params={"collection": coll})
            assert r.status_code == (200 if may else 403), (who, coll, r.status_code)
            r = api.get(f"api/v1/documents/{ids[coll]}/original", params={"collection": coll})
            assert r.status_code == (200 if may else 403) and ((text in r.text) == may)
            out = call_fn(ui, _fn(app, "refresh_documents"), [coll])
            rows = out["output"]["data"][0]["data"] if not error_of(out) else []
            assert any(fname in str(row) for row in rows) == may, (who, coll, error_of(out))
    finally:
        api.close()
        ui.close()


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
def test_changes_to_another_users_collection_are_refused(world, who, tmp_path):
    app, keys = world
    ids = _doc_ids(app)
    h = {"Authorization": f"Bearer {keys[who]}"}
    for coll in DOCS:
        owner = DOCS[coll][0]
        if owner == who:
            continue
        before = app.workspace.service(coll).documents(principal=LOCAL)
        r = httpx.post(app.url + "api/v1/documents/delete", params={"collection": coll},
                       json={"documents": [ids[coll]]}, headers=h)
        assert r.status_code == 403 and "may not delete documents" in r.json()["error"], r.text
        r = httpx.delete(app.url + f"api/v1/documents/{ids[coll]}", params={"collection": coll}, headers=h)
        assert r.status_code == 403
        r = httpx.post(app.url + "api/v1/documents", files={"files": ("x.txt", b"planted")}, data={"collection": coll},
                       headers=h)
        assert r.status_code == 403 and "may not add documents" in r.json()["error"], r.text
        r = httpx.post(app.url + "api/v1/reindex", params={"collection": coll}, json={"embedder": "e5-small"}, headers=h)
        assert r.status_code == 403
        r = httpx.put(app.url + f"api/v1/collections/{coll}/grants", json={"principal": f"user:{who}", "level": "admin"},
                      headers=h)
        assert r.status_code == 403
        r = httpx.delete(app.url + f"api/v1/collections/{coll}", headers=h)
        assert r.status_code == 403
        assert app.workspace.service(coll).documents(principal=LOCAL) == before
    # the same through the UI's events, signed in
    with contextlib.closing(_signed_in(app, who)) as ui:
        for coll in DOCS:
            if DOCS[coll][0] == who:
                continue
            for name, data in (("delete_docs", [coll, [ids[coll]]]), ("drop_collection", [coll]),
                               ("start_reindex", [coll, "e5-small", True])):
                err = error_of(call_fn(ui, _fn(app, name), data))
                # refused by our check, or before it by Gradio (a document id the session was never shown)
                assert "may not" in err or "not in the list of choices" in err, (who, coll, name, err)
    assert {d["doc_id"] for c in DOCS for d in app.workspace.service(c).documents(principal=LOCAL)} == set(ids.values())


def test_an_owner_changes_their_own_collection_and_a_grant_takes_effect_without_reembedding(world):
    app, keys = world
    # grants need the admin right: an ingest-scoped key cannot change them, an admin-scoped one of the owner can
    r = httpx.put(app.url + "api/v1/collections/alice-notes/grants", json={"principal": "user:bob", "level": "read"},
                  headers={"Authorization": f"Bearer {keys['alice']}"})
    assert r.status_code == 403 and "needs the 'admin' right" in r.json()["error"]
    alice = {"Authorization": f"Bearer {app.workspace.identity.create_key('alice', 'owner', ['admin'])[0]}"}
    bob = httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {keys['bob']}"}, timeout=120)
    query = "Zanzibar pineapple budget"
    svc = app.workspace.service("alice-notes")
    vectors_before = {p.id: p.vector for p in app.workspace.store.iter_points(svc.collection, with_vectors=True)}
    assert not any(h["source"] == "plan.txt" for h in bob.post("api/v1/search", json={"query": query}).json())
    r = httpx.put(app.url + "api/v1/collections/alice-notes/grants", json={"principal": "user:bob", "level": "read"},
                  headers=alice)
    assert r.status_code == 200 and r.json()["grants"] == {"user:bob": "read"}, r.text
    try:
        assert any(h["source"] == "plan.txt" for h in bob.post("api/v1/search", json={"query": query}).json())
        # a document narrowed to its owner: Bob loses it again, Alice keeps it
        doc = svc.documents(principal=LOCAL)[0]["doc_id"]
        r = httpx.put(app.url + f"api/v1/documents/{doc}/readers", params={"collection": "alice-notes"},
                      json={"readers": ["user:alice"]}, headers=alice)
        assert r.status_code == 200 and r.json()["readers"] == ["user:alice"], r.text
        assert not any(h["source"] == "plan.txt" for h in bob.post("api/v1/search", json={"query": query}).json())
        assert bob.get(f"api/v1/documents/{doc}/view", params={"collection": "alice-notes"}).status_code == 404
        assert any(h["source"] == "plan.txt" for h in httpx.post(app.url + "api/v1/search", json={"query": query},
                                                                 headers=alice).json())
        httpx.put(app.url + f"api/v1/documents/{doc}/readers", params={"collection": "alice-notes"},
                  json={"readers": None}, headers=alice).raise_for_status()
    finally:
        httpx.put(app.url + "api/v1/collections/alice-notes/grants", json={"principal": "user:bob", "level": None},
                  headers=alice).raise_for_status()
        bob.close()
    assert not any(h["source"] == "plan.txt" for h in httpx.post(
        app.url + "api/v1/search", json={"query": query}, headers={"Authorization": f"Bearer {keys['bob']}"}).json())
    after = {p.id: p.vector for p in app.workspace.store.iter_points(svc.collection, with_vectors=True)}
    assert after.keys() == vectors_before.keys()  # the payloads changed, the points and vectors did not
    assert all((after[i] == vectors_before[i]).all() for i in after)
    events = app.workspace.audit.read()
    grants = [e for e in events if e["event"] in ("grant.set", "grant.document") and e["collection"] == "alice-notes"]
    assert len(grants) >= 4 and {e["actor"] for e in grants} == {"alice"}
    assert any(e["event"] == "search" and e["actor"] == "bob" and e["query"] == query for e in events)
    assert {"ingest", "collection.create"} <= {e["event"] for e in events}


def test_a_read_without_a_principal_fails_closed_and_a_callers_filter_cannot_widen_access(world):
    app, _ = world
    ws = app.workspace
    with pytest.raises(AccessError, match="needs a principal"):
        read_filter(None)
    with pytest.raises(AccessError):
        ws.search("budget", principal=None)
    with pytest.raises(TypeError):
        ws.service("open").search("budget")  # no default principal: a caller must say who asks
    with pytest.raises(AccessError, match="can read no collection"):
        read_filter(Principal("ghost", frozenset({"read"}), frozenset()))
    bob = _principal(app, "bob")
    # Bob's own filter naming Alice's document, or Alice's acl id, is ANDed with his access, never replaces it
    alice_doc = ws.service("alice-notes").documents(principal=LOCAL)[0]["doc_id"]
    alice_id = "u:" + ws.identity.user_by_name("alice").id
    for wide in (Filter(must={"metadata.doc_id": [alice_doc]}), Filter(must={"metadata.acl": [alice_id]})):
        assert ws.store.count("alice-notes", wide) >= 1
        assert ws.store.count("alice-notes", read_filter(bob, wide)) == 0
    with pytest.raises(RagError, match="no collection 'alice-notes' that you may read"):
        ws.search("budget", ["alice-notes"], principal=bob)


def test_anonymous_callers_and_bad_keys_get_nothing(world):
    app, keys = world
    for path in ("api/v1/collections", "api/v1/documents"):
        assert httpx.get(app.url + path).status_code == 401
    assert httpx.post(app.url + "api/v1/search", json={"query": "lighthouse"}).status_code == 401
    for bad in ("lrk_nope_nope", keys["alice"][:-2] + "xx", "Basic abc"):
        r = httpx.post(app.url + "api/v1/search", json={"query": "lighthouse"},
                       headers={"Authorization": bad if bad.startswith("Basic") else f"Bearer {bad}"})
        assert r.status_code == 401, (bad, r.text)
    # the IDOR case: Alice opens Bob's document by id on the file route of her own collection and of his
    bob_doc = _doc_ids(app)["bob-notes"]
    h = {"Authorization": f"Bearer {keys['alice']}"}
    for coll in ("alice-notes", "bob-notes"):
        r = httpx.get(app.url + f"api/v1/documents/{bob_doc}/original", params={"collection": coll}, headers=h)
        assert r.status_code in (403, 404) and "quokka" not in r.text
    with pytest.raises(NotFoundError):
        from lusifer_rag.app import viewer

        viewer.view(app.workspace.service("alice-notes"), bob_doc, principal=_principal(app, "alice"))


@pytest.mark.parametrize("who", sorted(READS))
def test_the_cli_and_langchain_through_the_server_see_what_the_key_may_read(world, who):
    import json
    import os
    import subprocess
    import sys

    from lusifer_rag.rag.langchain import LusiferRetriever

    app, keys = world
    retriever = LusiferRetriever.from_server(app.url, api_key=keys[who], k=10)
    for coll, (_, fname, text) in DOCS.items():
        docs = retriever.invoke(text)
        assert any(d.metadata.get("source") == fname for d in docs) == (coll in READS[who]), (who, coll)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUSIFER_RAG_")}
    own = sorted(READS[who] - {"open"})[0]
    other = next(c for c in DOCS if c not in READS[who]) if who != "root" else None
    if other is not None:  # statistics and an ingest into another's collection are refused through the server
        note = app.workspace.settings.data_dir / f"{who}_note.txt"
        note.write_text("A note that must not land in another user's collection.", encoding="utf-8")
        for cmd in (["stats", "--json"], ["ingest", str(note)]):
            r = subprocess.run([sys.executable, "-m", "lusifer_rag", *cmd, "--collection", other, "--server", app.url,
                                "--api-key", keys[who]], capture_output=True, text=True, env=env, timeout=300)
            assert r.returncode != 0 and "may not" in r.stderr, (cmd, r.stdout, r.stderr)
        assert all(d["source"] != str(note) for d in app.workspace.service(other).documents(principal=LOCAL))
    for coll in filter(None, (own, other)):
        fname, text = DOCS[coll][1], DOCS[coll][2]
        r = subprocess.run([sys.executable, "-m", "lusifer_rag", "search", text, "--collection", coll, "--json",
                            "--server", app.url, "--api-key", keys[who]], capture_output=True, text=True, env=env,
                           timeout=300)
        if coll == own:
            assert r.returncode == 0, r.stderr
            assert fname in {h["source"] for h in json.loads(r.stdout)}
        else:
            assert r.returncode != 0 and "that you may read" in r.stderr and DOCS[coll][2] not in r.stdout, r.stderr


def test_a_grant_made_by_another_process_takes_effect_at_the_servers_next_read(world):
    """`lusifer-rag grant` writes only the app database (the server holds the store); the server rewrites the
    collection's acl payloads before it next reads it."""
    from lusifer_rag.app.db import AppDatabase
    from lusifer_rag.app.identity import Identity

    app, keys = world
    cli = Identity(AppDatabase(app.workspace.settings.data_dir))  # what the CLI process opens
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    query = DOCS["hr"][2]

    def bob_finds() -> bool:
        hits = httpx.post(app.url + "api/v1/search", json={"query": query}, headers=bob).json()
        return any(h["source"] == "policy.txt" for h in hits)

    assert not bob_finds()
    cli.grant("hr", cli.principal_id("user:bob"), "read")
    try:
        assert app.workspace.identity.acl_pending("hr") is not None and bob_finds()
        assert app.workspace.identity.acl_pending("hr") is None
    finally:
        cli.grant("hr", cli.principal_id("user:bob"), None)
    assert not bob_finds()

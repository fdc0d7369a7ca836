"""The served app as an attacker meets it: other origins, other Host names, every event by fn_index, the explicit
API without rights, sign-in guessing. Real app (e5-small, embedded store), real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app_fixtures import app_settings, running_app
from gradio_raw import call_fn, error_of
from lusifer_rag.app.access import LOCAL

#: every handler behind a Gradio event, by what it may change; a new event must be added to one of them
STATE_CHANGING = {"ingest_api", "ingest_ui", "cancel_ingest", "delete_docs", "start_reindex", "create_collection",
                  "drop_collection", "save_settings", "change_grant"}
OWN_RECORDS = {"chat", "rename_conversation", "delete_conversation",  # the caller's own conversations only
               "create_api_key", "revoke_api_key"}  # and API keys
READ_ONLY = {"search_api", "ask_api", "do_search", "refresh_documents", "reindex_status", "ask_delete", "<lambda>",
             "ask_drop_collection", "load_conversations", "new_chat", "open_conversation", "open_citation",
             "move_viewer", "load_settings", "test_llm", "load_keys", "show_grants", "signed_in_html"}


@pytest.fixture(scope="module")
def lan_app(tmp_path_factory, e5):
    """As served on a network without a login: it answers to lan.example, and callers get read access only."""
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("lan")
    settings = app_settings(tmp, allowed_hosts="127.0.0.1,lan.example", allowed_origins="https://intranet.example")
    with running_app(settings, e5, options=AppOptions(ingest_workers=0, anonymous_access="read"), sample=True) as app:
        yield app


@pytest.fixture(scope="module")
def login_app(tmp_path_factory, e5):
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("login")
    with running_app(app_settings(tmp), e5, options=AppOptions(ingest_workers=0, auth=("ann", "correct horse 9")),
                     sample=True) as app:
        yield app


def _port(app) -> int:
    return int(app.url.rstrip("/").rsplit(":", 1)[1])


def test_a_host_name_the_server_does_not_serve_is_refused(lan_app):
    r = httpx.get(lan_app.url + "gradio_api/info", headers={"Host": f"10.0.0.5:{_port(lan_app)}",
                                                            "Origin": "https://evil.example"})
    assert r.status_code == 400 and "10.0.0.5" in r.json()["error"] and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("method,path,body", [
    ("GET", "gradio_api/info", None), ("GET", "config", None),
    ("POST", "gradio_api/call/search", {"data": ["education", [], [], 3, True]}),
    ("POST", "api/v1/search", {"query": "education"}), ("GET", "api/v1/documents", None),
    ("POST", "api/v1/documents/delete", {"documents": ["sample/udhr_en.txt"]}),
])
def test_other_origins_cannot_read_or_write_whatever_the_host_header(lan_app, method, path, body):
    host = f"lan.example:{_port(lan_app)}"
    r = httpx.request(method, lan_app.url + path, json=body, headers={"Host": host, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(lan_app.url + path, headers={"Host": host, "Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": method})
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    assert len(lan_app.service.documents(principal=LOCAL)) == 10  # nothing was deleted


def test_own_origin_and_allow_listed_origins_are_served(lan_app):
    port = _port(lan_app)
    own = httpx.post(lan_app.url + "api/v1/search", json={"query": "education", "k": 2},
                     headers={"Host": f"lan.example:{port}", "Origin": f"http://lan.example:{port}"})
    assert own.status_code == 200 and len(own.json()) == 2
    listed = httpx.get(lan_app.url + "api/v1/documents",
                       headers={"Host": f"lan.example:{port}", "Origin": "https://intranet.example"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "https://intranet.example"
    assert listed.headers["access-control-allow-credentials"] == "true"


def _gradio_data(app, client: httpx.Client, name: str, upload: Path) -> list:
    """Arguments a caller would send to each state-changing event: real documents, a real uploaded file."""
    doc_ids = [d["doc_id"] for d in app.service.documents(principal=LOCAL)]
    r = client.post("gradio_api/upload", files={"files": (upload.name, upload.read_bytes())})
    r.raise_for_status()
    file_data = {"path": r.json()[0], "orig_name": upload.name, "meta": {"_type": "gradio.FileData"}}
    default = app.workspace.default
    return {"ingest_api": [[file_data]], "ingest_ui": [default, [file_data], None, "replace"],
            "delete_docs": [default, doc_ids], "start_reindex": [default, "e5-small", True],
            "create_collection": ["intruders"], "drop_collection": [default], "cancel_ingest": [default],
            "save_settings": ["openai", "http://127.0.0.1:9/v1", "m", "stolen", False, 3, "auto"],
            "change_grant": [default, "public", "read"]}[name]


def test_every_state_changing_call_without_the_right_is_refused(lan_app, tmp_path):
    fns = {i: fn.name for i, fn in lan_app.demo.fns.items()}
    known = STATE_CHANGING | OWN_RECORDS | READ_ONLY
    assert set(fns.values()) <= known, set(fns.values()) - known
    assert STATE_CHANGING <= set(fns.values())
    before = sorted(d["doc_id"] for d in lan_app.service.documents(principal=LOCAL))
    upload = tmp_path / "intruder.txt"
    upload.write_text("Planted text that must never be searchable.", encoding="utf-8")
    refresh = next(i for i, name in fns.items() if name == "refresh_documents")
    with httpx.Client(base_url=lan_app.url, timeout=120) as client:
        for index, name in fns.items():
            if name not in STATE_CHANGING:
                continue
            # as a page would: the document list loaded in the same session first (its choices are the ids)
            assert error_of(call_fn(client, refresh, [lan_app.workspace.default], session="attacker")) == ""
            err = error_of(call_fn(client, index, _gradio_data(lan_app, client, name, upload), session="attacker"))
            assert "sign in to" in err or "may not" in err, (name, err)
        # the explicit API: each write operation refused with 401 and a message
        for method, path, kw in [
            ("POST", "api/v1/documents", {"files": {"files": ("x.txt", b"planted text")}}),
            ("POST", "api/v1/documents/delete", {"json": {"documents": before[:1]}}),
            ("DELETE", f"api/v1/documents/{before[0]}", {}),
            ("POST", "api/v1/reindex", {"json": {"embedder": "e5-small", "drop_old": True}}),
            ("POST", "api/v1/ingest/cancel", {}),
        ]:
            r = client.request(method, path, **kw)
            assert r.status_code == 401 and "sign in to" in r.json()["error"], (path, r.text)
        # reading is allowed
        assert client.get("api/v1/me").json() == {"user": None, "rights": ["read"], "groups": [], "administrator": False,
                                                 "login_required": False}
        assert client.post("api/v1/search", json={"query": "education", "k": 1}).status_code == 200
    assert sorted(d["doc_id"] for d in lan_app.service.documents(principal=LOCAL)) == before
    assert lan_app.service._reindex is None
    assert lan_app.workspace.collection_names() == [lan_app.workspace.default]
    assert lan_app.workspace.settings.llm_base_url is None and not lan_app.workspace.db.get_settings()
    assert not lan_app.service.search("Planted text that must never be searchable", k=3, highlight=False, principal=LOCAL) or all(
        "Planted" not in h.chunk.text for h in lan_app.service.search("Planted text", k=3, highlight=False, principal=LOCAL))


def test_api_bounds_say_what_was_given_and_what_is_allowed(lan_app):
    with httpx.Client(base_url=lan_app.url, timeout=60) as client:
        r = client.post("api/v1/search", json={"query": "education", "k": 10**9})
        assert r.status_code == 400 and "k must be a whole number from 1 to 100" in r.json()["error"]
        r = client.post("api/v1/search", json={"query": "education", "k": 2**63})
        assert r.status_code in (400, 422) and "store" not in r.text.lower()
        r = client.post("api/v1/search", json={"query": "x" * 1_000_000})
        assert r.status_code == 400 and "at most 2,000" in r.json()["error"]
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    gc = Client(lan_app.url, verbose=False)
    with pytest.raises(AppError, match="k must be a whole number from 1 to 100; got 'abc'"):
        gc.predict("education", [], [], "abc", api_name="/search")


def test_with_a_login_nothing_is_reachable_without_it(login_app):
    with httpx.Client(base_url=login_app.url, timeout=60) as c:
        for method, path in [("GET", "gradio_api/info"), ("GET", "config"), ("GET", "api/v1/documents"),
                             ("POST", "gradio_api/queue/join"), ("POST", "gradio_api/upload"),
                             ("GET", "gradio_api/file=/etc/hostname"), ("POST", "api/v1/search")]:
            r = c.request(method, path, json={})
            assert r.status_code == 401, (path, r.status_code)
        page = c.get("", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        form = c.get("login")
        assert form.status_code == 200 and "<form" in form.text
        ok = c.post("login", data={"username": "ann", "password": "correct horse 9"})
        assert ok.status_code == 200
        assert c.get("api/v1/me").json()["user"] == "ann"
        assert len(c.get("api/v1/documents").json()) == 10
        c.get("logout")
        assert c.get("api/v1/documents").status_code == 401


def test_failed_sign_ins_are_throttled(login_app):
    with httpx.Client(base_url=login_app.url, timeout=60) as c:
        c.post("login", data={"username": "ann", "password": "correct horse 9"})  # clears earlier failures
        c.cookies.clear()
        t0 = time.monotonic()
        codes = [c.post("login", data={"username": "ann", "password": f"guess {i}"}).status_code for i in range(5)]
        assert codes == [401] * 5
        blocked = c.post("login", data={"username": "ann", "password": "correct horse 9"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert "try again in" in blocked.json()["error"]
        page = c.post("login", data={"username": "ann", "password": "x"}, headers={"Accept": "text/html"})
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text
        time.sleep(max(0.0, t0 + 1.2 - time.monotonic()) + float(blocked.headers["retry-after"]))
        assert c.post("login", data={"username": "ann", "password": "correct horse 9"}).status_code == 200


def test_throttle_counts_per_client_and_per_user():
    from lusifer_rag.app.access import LoginThrottle
    from lusifer_rag.errors import ThrottledError

    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])
    for _ in range(LoginThrottle.FREE):
        t.check("1.1.1.1", "ann")
        t.failed("1.1.1.1", "ann")
    with pytest.raises(ThrottledError):
        t.check("1.1.1.1", "bob")  # this client, any user
    with pytest.raises(ThrottledError):
        t.check("2.2.2.2", "ann")  # this user, from any client
    t.check("2.2.2.2", "bob")
    assert [_wait_after_failure(t) for _ in range(3)] == pytest.approx([2, 4, 8])  # each failure doubles the wait
    now[0] += 8.5
    t.check("1.1.1.1", "ann")  # waited long enough
    t.succeeded("1.1.1.1", "ann")
    assert _wait_after_failure(t) == 0  # a success cleared the counters
    now[0] += LoginThrottle.FORGET_S + 1
    for _ in range(LoginThrottle.FREE - 1):
        t.failed("3.3.3.3", "cy")
    now[0] += LoginThrottle.FORGET_S + 1
    assert _wait_after_failure(t, "3.3.3.3", "cy") == 0  # old failures are forgotten


def _wait_after_failure(t, client: str = "1.1.1.1", user: str = "ann") -> float:
    from lusifer_rag.errors import ThrottledError

    t.failed(client, user)
    try:
        t.check(client, user)
    except ThrottledError as e:
        return e.retry_after
    return 0.0


def test_session_secret_is_generated_once_and_private(tmp_path):
    import stat

    from lusifer_rag.app.access import session_secret
    from lusifer_rag.errors import ConfigError

    a = session_secret(None, tmp_path)
    assert a == session_secret(None, tmp_path) and len(a) >= 32
    key = tmp_path / "secrets" / "session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    with pytest.raises(ConfigError, match="at least 32"):
        session_secret("short", tmp_path)


def test_generated_answers_render_no_remote_content_or_styles():
    from lusifer_rag.app.render import extractive_answer_html, llm_answer_html

    out = llm_answer_html("# Session expired\n\nRe-enter your password [here](https://evil.example/login) "
                          "![pixel](https://evil.example/p.png) <div style='position:fixed'>x</div> "
                          "<img src=https://evil.example/q.png> **ok** [1]")
    tags = _tags(out)
    assert not {t for t, _ in tags} & {"img", "a", "h1", "div", "style", "script", "iframe"}
    assert not any(name in ("style", "href", "src") for _, attrs in tags for name, _ in attrs)
    assert "(https://evil.example/login)" in out and "[image: pixel]" in out  # shown, not followed
    assert "&lt;img src=https://evil.example/q.png&gt;" in out and "<strong>ok</strong>" in out
    assert "<sup class='lr-cite lr-n-1'>[1]</sup>" in out
    quoted = extractive_answer_html("![t](http://x/p.png) <b>bold</b> [2]")
    assert {t for t, _ in _tags(quoted)} == {"sup"} and "&lt;b&gt;" in quoted and "lr-n-2" in quoted


def _tags(markup: str) -> list[tuple[str, list]]:
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    P().feed(markup)
    return found

"""Single sign-on (issue 35): OpenID Connect against a real provider on localhost (tests/oidc_idp.py: authlib's
authorization server with PKCE and nonce required, RS256 ID tokens, discovery and JWKS), and trusted-header sign-in
behind a reverse proxy. Each app is the real one (create_app, uvicorn on 127.0.0.1, the real app database); with
single sign-on configured and no single-user login the app is in multi-user mode (sign-in required).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from app_fixtures import app_settings, free_port, running_app
from oidc_idp import IdPUser, TestIdP

SECRET = "idp-client-secret-0123456789"


@pytest.fixture(scope="module")
def idp():
    with TestIdP([], client_id="lusifer-rag", client_secret=SECRET) as provider:
        yield provider


@pytest.fixture(scope="module")
def oidc_app(tmp_path_factory, e5, idp):
    """Single sign-on through the test provider; no local login (callers who are not signed in: loopback default)."""
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("oidc")
    settings = app_settings(tmp, oidc_issuer=idp.issuer, oidc_client_id="lusifer-rag", oidc_client_secret=SECRET,
                            oidc_name="Test IdP")
    with running_app(settings, e5, options=AppOptions(ingest_workers=0)) as app:
        idp.client.redirect_uris[:] = [app.url + "login/oidc/callback"]
        yield app


@pytest.fixture(scope="module")
def proxy_app(tmp_path_factory, e5):
    """Behind a trusted proxy on 127.0.0.1 (the tests' own address); single sign-on configured at a provider that
    does not answer (nothing listens on its port)."""
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("proxy")
    settings = app_settings(tmp, trusted_proxies="127.0.0.1, ::1", oidc_issuer=f"http://127.0.0.1:{free_port()}",
                            oidc_client_id="lusifer-rag")
    with running_app(settings, e5, options=AppOptions(ingest_workers=0)) as app:
        yield app


@pytest.fixture(scope="module")
def untrusted_app(tmp_path_factory, e5):
    """With a login, proxies trusted on another network only, and no single sign-on."""
    from lusifer_rag.app.service import AppOptions

    tmp = tmp_path_factory.mktemp("untrusted")
    settings = app_settings(tmp, trusted_proxies="10.9.8.0/24")
    with running_app(settings, e5, options=AppOptions(ingest_workers=0, auth=("ann", "correct horse 9"))) as app:
        yield app


# ---- helpers ---------------------------------------------------------------------------------------------
def session_of(client: httpx.Client) -> dict:
    """The app's session as its signed cookie carries it (Starlette: base64 JSON, then the signature)."""
    raw = client.cookies.get("lusifer_session")
    if not raw:
        return {}
    payload = raw.strip('"').split(".", 1)[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))


def start(client: httpx.Client, app) -> tuple[httpx.Response, str]:
    """GET /login/oidc, then the provider's authorize URL (it approves at once): (the app's redirect to the
    provider, the callback URL the provider sends the browser to)."""
    to_idp = client.get(app.url + "login/oidc")
    assert to_idp.status_code == 302, to_idp.text
    back = client.get(to_idp.headers["location"])
    assert back.status_code == 302, back.text
    return to_idp, back.headers["location"]


def sign_in(client: httpx.Client, app) -> httpx.Response:
    _, callback = start(client, app)
    assert callback.startswith(app.url + "login/oidc/callback?"), callback
    return client.get(callback)


def user_groups(ws, name: str) -> set[str]:
    from lusifer_rag.app.sso import identity_of

    return {g["name"] for g in identity_of(ws).groups() if name in g["members"]}


def directory_user(ws, name: str):
    from lusifer_rag.app.sso import identity_of

    return identity_of(ws).user_by_name(name)


def audited(ws, event: str, method: str) -> list[dict]:
    lines = [json.loads(x) for x in ws.audit.path.read_text().splitlines() if x.strip()]
    return [e for e in lines if e["event"] == event and e.get("method") == method]


def refused_without_leak(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    text = response.text
    for bad in ("Traceback", "File \"", "/tmp", "/home", SECRET):
        assert bad not in text, (bad, text)
    message = response.json()["error"] if "json" in response.headers.get("content-type", "") else text
    for f in fragments:
        assert f in message, (f, message)
    return message


# ---- OpenID Connect ----------------------------------------------------------------------------------
def test_oidc_sign_in_creates_the_user_and_maps_groups_and_a_new_sign_in_updates_them(oidc_app, idp):
    ws = oidc_app.workspace
    idp.user = IdPUser("sub-alice-1", "alice", "alice@example.org", ["staff", "readers", "/projects"])
    with httpx.Client(timeout=30) as client:
        # not signed in: nothing but the login page, which links to the provider
        assert client.get(oidc_app.url + "api/v1/me").status_code == 401
        login = client.get(oidc_app.url + "login", headers={"Accept": "text/html"})
        assert login.status_code == 200 and "Sign in with Test IdP" in login.text
        to_idp, callback = start(client, oidc_app)
        # authorization code + PKCE S256 + state + nonce, asked of the provider found through discovery
        asked = parse_qs(urlsplit(to_idp.headers["location"]).query)
        assert to_idp.headers["location"].startswith(idp.issuer + "/authorize?")
        assert asked["response_type"] == ["code"] and asked["client_id"] == ["lusifer-rag"]
        assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
        assert asked["state"][0] and asked["nonce"][0] and "openid" in asked["scope"][0].split()
        assert asked["redirect_uri"] == [oidc_app.url + "login/oidc/callback"]
        done = client.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        alice = directory_user(ws, "alice")
        assert alice is not None and alice.origin == "oidc"
        assert user_groups(ws, "alice") == {"staff", "readers", "projects"}  # Keycloak's '/projects' path
        session = session_of(client)
        assert session["uid"] == alice.id and session["user"] == "alice" and session["since"] > 0
        assert not any(k.startswith("_state_") for k in session)  # the flow's state is spent
        # the session signs the API in: who, which groups
        me = client.get(oidc_app.url + "api/v1/me").json()
        assert me["user"] == "alice" and set(me["groups"]) == {"staff", "readers", "projects"}
        assert client.get(oidc_app.url + "api/v1/collections").status_code == 200
        assert audited(ws, "login", "oidc")[-1]["actor"] == "alice"

        # a second sign-in with other groups: the same user, memberships replaced
        idp.user = IdPUser("sub-alice-1", "alice", "alice@example.org", ["staff", "editors"])
        again = sign_in(client, oidc_app)
        assert again.status_code == 303, again.text
        assert directory_user(ws, "alice").id == alice.id
        assert user_groups(ws, "alice") == {"staff", "editors"}
        assert session_of(client)["uid"] == alice.id
        me = client.get(oidc_app.url + "api/v1/me").json()
        assert me["user"] == "alice" and set(me["groups"]) == {"staff", "editors"}


def test_groups_only_in_userinfo_are_read_from_it(oidc_app, idp):
    ws = oidc_app.workspace
    idp.user = IdPUser("sub-bob-1", "bob", "bob@example.org", ["auditors"])
    idp.groups_in_userinfo = True
    try:
        with httpx.Client(timeout=30) as client:
            assert sign_in(client, oidc_app).status_code == 303
    finally:
        idp.groups_in_userinfo = False
    assert directory_user(ws, "bob").origin == "oidc"
    assert user_groups(ws, "bob") == {"auditors"}


def test_a_tampered_state_is_refused_before_the_code_is_exchanged(oidc_app, idp):
    idp.user = IdPUser("sub-mallory", "mallory", "m@example.org", ["staff"])
    with httpx.Client(timeout=30) as client:
        _, callback = start(client, oidc_app)
        parts = urlsplit(callback)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["state"] = query["state"][:-2] + ("AA" if not query["state"].endswith("AA") else "BB")
        tokens_before = idp.token_requests
        bad = client.get(urlunsplit(parts._replace(query=urlencode(query))))
        refused_without_leak(bad, 400, "state does not match")
        assert idp.token_requests == tokens_before  # the code was never sent to the provider
        assert "state does not match" in audited(oidc_app.workspace, "login.failed", "oidc")[-1]["reason"]
        assert "uid" not in session_of(client) and directory_user(oidc_app.workspace, "mallory") is None
        # a browser gets a page, not JSON; a callback with no flow started at all is refused the same way
        page = client.get(urlunsplit(parts._replace(query=urlencode(query))), headers={"Accept": "text/html"})
        assert "text/html" in page.headers["content-type"] and 'id="sso-error"' in page.text
        refused_without_leak(page, 400, "state does not match")
    with httpx.Client(timeout=30) as fresh:
        refused_without_leak(fresh.get(callback), 400, "state does not match")


@pytest.mark.parametrize("attack, reason", [
    ({"issuer_claim": "http://127.0.0.1:1/another-provider"}, "issued by another provider"),
    ({"audience_claim": "another-app"}, "issued for another client"),
    ({"foreign_key": True}, "signature does not match"),
    ({"expired": True}, "expired"),
])
def test_id_tokens_from_elsewhere_or_forged_or_expired_are_refused(oidc_app, idp, attack, reason):
    idp.user = IdPUser("sub-trudy", "trudy", "t@example.org", ["admins"])
    for k, v in attack.items():
        setattr(idp, k, v)
    try:
        with httpx.Client(timeout=30) as client:
            response = sign_in(client, oidc_app)
            refused_without_leak(response, 400, "ID token was refused", reason)
            assert "uid" not in session_of(client)
    finally:
        idp.issuer_claim = idp.audience_claim = None
        idp.foreign_key = idp.expired = False
    assert directory_user(oidc_app.workspace, "trudy") is None


def test_a_provider_user_never_takes_over_a_local_account(oidc_app, idp):
    from lusifer_rag.app.sso import identity_of

    ident = identity_of(oidc_app.workspace)
    carol = ident.add_user("carol", "a local password 1")
    idp.user = IdPUser("sub-carol", "Carol", "carol@example.org", ["admins"])
    with httpx.Client(timeout=30) as client:
        refused_without_leak(sign_in(client, oidc_app), 403, "exists here as a local user")
        assert "uid" not in session_of(client)
    assert ident.user(carol.id).groups == ()


def test_an_unreachable_provider_gives_a_clear_error(proxy_app):
    with httpx.Client(timeout=30) as client:
        r = client.get(proxy_app.url + "login/oidc")
        refused_without_leak(r, 502, "identity provider at http://127.0.0.1:", "did not answer")
        page = client.get(proxy_app.url + "login/oidc", headers={"Accept": "text/html"})
        assert page.status_code == 502 and "Back to sign-in" in page.text and "Traceback" not in page.text


def test_without_oidc_settings_the_routes_answer_404(untrusted_app):
    with httpx.Client(timeout=30) as client:
        for path in ("login/oidc", "login/oidc/callback?code=x&state=y"):
            refused_without_leak(client.get(untrusted_app.url + path), 404, "single sign-on is not configured")
        page = client.get(untrusted_app.url + "login", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "sso-link" not in page.text


def test_the_login_page_links_to_the_provider():
    from lusifer_rag.app.server import login_page

    page = login_page(sso="Keycloak <acme>")
    assert "href='/login/oidc'" in page and "Sign in with Keycloak &lt;acme&gt;" in page
    assert "sso-link" not in login_page()


def test_oidc_settings_are_checked_and_the_secret_is_never_shown(tmp_path):
    from lusifer_rag.app.oidc import OidcConfig
    from lusifer_rag.errors import ConfigError
    from lusifer_rag.settings import Settings

    def config(**kw):
        return OidcConfig(Settings.from_env(env={}, data_dir=tmp_path, **kw))

    with pytest.raises(ConfigError, match="not https"):
        config(oidc_issuer="http://idp.example.org/realms/a", oidc_client_id="x")
    with pytest.raises(ConfigError, match="OIDC_CLIENT_ID"):
        config(oidc_issuer="https://idp.example.org/realms/a")
    c = config(oidc_issuer="https://idp.example.org/realms/a/", oidc_client_id="rag", oidc_client_secret="s3cr3t-x",
               oidc_scopes="profile groups openid", public_url="https://rag.example.org/")
    assert c.issuer == "https://idp.example.org/realms/a" and c.scopes == "openid profile groups"
    assert c.callback_url == "https://rag.example.org/login/oidc/callback" and c.name == "idp.example.org"
    s = Settings.from_env(env={"LUSIFER_RAG_OIDC_CLIENT_SECRET": "s3cr3t-x"})
    assert "s3cr3t-x" not in repr(c) and "s3cr3t-x" not in repr(s) and s.oidc_client_secret == "s3cr3t-x"


# ---- trusted header ------------------------------------------------------------------------------------
def test_a_trusted_proxy_signs_users_in_by_header(proxy_app):
    ws = proxy_app.workspace
    headers = {"X-Forwarded-User": "dave", "X-Forwarded-Groups": "ops, /staff"}
    with httpx.Client(timeout=30) as client:
        r = client.get(proxy_app.url + "api/v1/me", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["user"] == "dave" and r.json()["groups"] == ["ops", "staff"]
        dave = directory_user(ws, "dave")
        assert dave is not None and dave.origin == "proxy" and user_groups(ws, "dave") == {"ops", "staff"}
        assert audited(ws, "login", "proxy")[-1]["actor"] == "dave"
        # groups follow the header (the cache keys on the group list); a missing groups header means none
        client.get(proxy_app.url + "api/v1/me", headers={**headers, "X-Forwarded-Groups": "ops"})
        assert user_groups(ws, "dave") == {"ops"}
        client.get(proxy_app.url + "api/v1/me", headers={"X-Forwarded-User": "dave"})
        assert user_groups(ws, "dave") == set() and directory_user(ws, "dave").id == dave.id
        # a name the directory cannot hold is refused, not signed in as something else
        bad = client.get(proxy_app.url + "api/v1/me", headers={"X-Forwarded-User": "dave smith"})
        refused_without_leak(bad, 403, "not valid here")
        session = session_of(client)  # the header signs in each request: the session holds no user
        assert "uid" not in session and "user" not in session
        # without the header nobody is signed in (sign-in required: single sign-on makes this app multi-user)
        refused_without_leak(client.get(proxy_app.url + "api/v1/me"), 401, "sign in first")


def test_headers_from_an_untrusted_client_are_ignored(untrusted_app):
    ws = untrusted_app.workspace
    with httpx.Client(timeout=30) as client:
        for headers in ({"X-Forwarded-User": "eve", "X-Forwarded-Groups": "admins"},
                        # claiming to come through a trusted proxy does not make the client one
                        {"X-Forwarded-User": "eve", "X-Forwarded-For": "10.9.8.7", "X-Real-IP": "10.9.8.7"}):
            for path in ("api/v1/me", "api/v1/collections"):  # with a login configured: not signed in
                refused_without_leak(client.get(untrusted_app.url + path, headers=headers), 401, "sign in first")
        assert directory_user(ws, "eve") is None


def test_the_middleware_strips_the_headers_unless_the_peer_is_trusted(tmp_path):
    """install_proxy_auth around an echo app on a real server (AppServer, as create_app's app is served): what
    reaches the app from a trusted and an untrusted peer; X-Forwarded-For is applied inside the check, never
    before it, so a client cannot borrow a trusted proxy's address."""
    from types import SimpleNamespace

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from lusifer_rag.app.db import AppDatabase
    from lusifer_rag.app.identity import Identity
    from lusifer_rag.app.proxy_auth import install_proxy_auth, parse_networks
    from lusifer_rag.app.server import AppServer
    from lusifer_rag.errors import ConfigError
    from lusifer_rag.settings import Settings

    def echo(request):
        return JSONResponse({"uid": request.scope.get("lusifer_user_id"), "client": request.client.host,
                             "headers": {k: v for k, v in request.headers.items() if k.startswith("x-")}})

    workspace = SimpleNamespace(identity=Identity(AppDatabase(tmp_path)))
    seen = {}
    for label, nets in (("trusted", "127.0.0.0/8"), ("untrusted", "192.0.2.0/24, 2001:db8::/32")):
        app = Starlette(routes=[Route("/", echo)])
        assert install_proxy_auth(app, workspace, Settings.from_env(env={}, trusted_proxies=nets))
        port = free_port()
        server = AppServer(app, "127.0.0.1", port, quiet=True).start()
        try:
            assert server.config.proxy_headers is False
            seen[label] = httpx.get(f"http://127.0.0.1:{port}/", headers={
                "X-Forwarded-User": "frank", "X-Forwarded-Groups": "g1", "X-Forwarded-For": "192.0.2.9",
                "X-Other": "kept"}).json()
        finally:
            server.close()
    frank = workspace.identity.user_by_name("frank")
    assert seen["trusted"]["uid"] == frank.id and frank.origin == "proxy"
    assert seen["untrusted"]["uid"] is None
    for got in seen.values():
        assert "x-forwarded-user" not in got["headers"] and "x-forwarded-groups" not in got["headers"]
        assert got["headers"]["x-other"] == "kept" and got["client"] == "192.0.2.9"  # rewritten inside only
    assert not install_proxy_auth(Starlette(), workspace, Settings.from_env(env={}))  # off: nothing added
    with pytest.raises(ConfigError, match="not valid"):
        parse_networks("10.0.0.0/8, proxy.example.org")

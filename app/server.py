"""The HTTP server: our FastAPI app in front of the Gradio UI.

Requests pass, in order: the request guard (Host header among the allowed hosts; an ``Origin`` other than the
app's own or the allow-list is refused whatever the Host header says, so no other site's page can read or change
anything through a visitor's browser), CORS (answers only the allow-list), the signed session cookie, and the
sign-in gate (with a login configured, nothing but the login page without a session). With trusted-header
sign-in on (app/proxy_auth.py), its middleware comes before all of these. Then our explicit HTTP API
(``/api/v1``, app/api.py), the login page, and the Gradio UI mounted at ``/``. Every state-changing operation
checks its right in ``RagService`` whatever route reached it (app/access.py).
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from urllib.parse import urlsplit

from fastapi import Request

from lusifer_rag.errors import AccessError, BusyError, ConfigError, LusiferRagError, NotFoundError, ThrottledError

from .access import LOOPBACK, AccessPolicy, LoginThrottle, session_secret

SESSION_COOKIE = "lusifer_session"
SESSION_MAX_AGE_S = 14 * 24 * 3600
#: reachable without a session when a login is configured
OPEN_PATHS = ("/login", "/logout", "/healthz")
OPEN_PREFIXES = ("/login/",)  # single sign-on's start and callback (app/oidc.py)
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    """('host', port) of a Host header or an origin's netloc; IPv6 brackets kept off; default ports filled in."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None
    return host, port if port is not None else DEFAULT_PORTS.get(scheme)


def normalise_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"allowed origin {origin!r} is not valid; give scheme://host[:port], e.g. https://intranet.example")
    host, port = _host_port(parts.netloc, parts.scheme)
    return f"{parts.scheme}://{host}:{port}"


class RequestGuard:
    """ASGI middleware: refuses a Host header outside ``allowed_hosts`` (None: any) with 400, and a request whose
    ``Origin`` is neither the app's own (the Host it was sent to) nor in ``allowed_origins`` with 403. Browsers
    send Origin on every cross-site request that can change state or read a response, so this refuses them before
    any route runs; a request with no Origin (curl, gradio_client) is not a browser acting for another site."""

    def __init__(self, app, allowed_hosts: list[str] | None, allowed_origins: list[str]):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.allowed_origins = {normalise_origin(o) for o in allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme = scope.get("scheme", "http")
        host, port = _host_port(headers.get("host", ""), scheme)
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return await _refuse(scope, receive, send, 400, f"this server does not answer to host {host!r}; "
                                 "add it to LUSIFER_RAG_ALLOWED_HOSTS to serve under that name")
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site" and scope.get("method", "GET") not in ("GET", "HEAD"):
                return await _refuse(scope, receive, send, 403, "cross-site request refused")
            return await self.app(scope, receive, send)
        try:
            o = urlsplit(origin)
            o_host, o_port = _host_port(o.netloc, o.scheme)
            own = (o_host, o_port) == (host, port) or (o_host == host and o.scheme == "https" and scheme == "http"
                                                       and port in (80, None) and o_port == 443)  # TLS proxy
            allowed = own or normalise_origin(origin) in self.allowed_origins
        except (ValueError, ConfigError):
            allowed = False
        if not allowed:
            return await _refuse(scope, receive, send, 403, f"cross-origin request from {origin[:100]!r} refused; "
                                 "allow it with LUSIFER_RAG_ALLOWED_ORIGINS")
        return await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str):
    from starlette.responses import JSONResponse

    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


class SignInGate:
    """ASGI middleware (inside the session middleware): with a login configured, a request without a signed-in
    session reaches only OPEN_PATHS; a browser page is sent to the login page, anything else gets 401."""

    def __init__(self, app, policy: AccessPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        session = scope.get("session")
        if isinstance(session, dict) and not session.get("user") and not session.get("anon"):
            session["anon"] = secrets.token_hex(12)  # this browser's own records (conversations) without a login
        if not self.policy.login_required:
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or \
                self.policy.principal_of(scope.get("session"), scope).name is not None:
            return await self.app(scope, receive, send)
        if path.startswith("/api/v1/") and headers.get("authorization"):
            return await self.app(scope, receive, send)  # an API key: the route checks it (401 if not valid)
        from starlette.responses import RedirectResponse

        if scope["type"] == "http" and scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            return await RedirectResponse("/login", status_code=303)(scope, receive, send)
        return await _refuse(scope, receive, send, 401, "sign in first (POST /login with username and password)")


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lusifer-rag: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin-top:12vh;background:#f6f6f7}}
form{{background:#fff;padding:28px 32px;border-radius:10px;box-shadow:0 1px 4px #0002;width:300px}}
label{{display:block;margin:12px 0 4px}}input{{width:100%;padding:8px;box-sizing:border-box}}
button{{margin-top:18px;width:100%;padding:9px}}.err{{color:#b00020;margin-top:10px}}</style></head>
<body><form method="post" action="/login"><h2>lusifer-rag</h2>
<label for="username">User</label><input id="username" name="username" autocomplete="username" value="{user}" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login-btn">Sign in</button>{sso}{error}</form></body></html>"""


def login_page(error: str = "", user: str = "", sso: str | None = None) -> str:
    """``sso``: the single sign-on provider's name (app/oidc.py), shown as a "Sign in with …" link."""
    err = f"<p class='err' id='login-error'>{html.escape(error)}</p>" if error else ""
    link = (f"<p><a href='/login/oidc' id='sso-link'>Sign in with {html.escape(sso)}</a></p>" if sso else "")
    return LOGIN_PAGE.format(user=html.escape(user, quote=True), error=err, sso=link)


def create_app(workspace, demo, *, host: str = "127.0.0.1", port: int = 7860):
    """Our FastAPI app with the Gradio UI ``demo`` (app/ui.py) of ``workspace`` mounted at ``/``."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.sessions import SessionMiddleware

    from .api import api_router
    from .oidc import install_oidc
    from .proxy_auth import install_proxy_auth

    settings, options = workspace.settings, workspace.options
    policy = workspace.policy
    throttle = LoginThrottle()
    allowed_hosts = _split_list(settings.allowed_hosts) or (
        [*LOOPBACK, "::1"] if host in LOOPBACK else None)
    allowed_origins = _split_list(settings.allowed_origins)

    app = FastAPI(title="lusifer-rag", docs_url="/api/v1/docs", openapi_url="/api/v1/openapi.json", redoc_url=None)
    app.state.workspace, app.state.policy = workspace, policy

    @app.exception_handler(LusiferRagError)
    async def _typed(request: Request, e: LusiferRagError):
        status = 503 if isinstance(e, BusyError) else 404 if isinstance(e, NotFoundError) else 400
        return JSONResponse({"error": str(e)}, status_code=status)

    @app.exception_handler(AccessError)
    async def _access(request: Request, e: AccessError):
        headers = {"Retry-After": str(int(e.retry_after) + 1)} if isinstance(e, ThrottledError) else None
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    sso = install_oidc(app, workspace, settings)  # single sign-on routes; the provider's name or None

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request):
        if not (policy.login_required or policy.multi_user):
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page(sso=sso), headers={"Cache-Control": "no-store"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        user, password = str(form.get("username") or ""), str(form.get("password") or "")
        browser = "text/html" in request.headers.get("accept", "")
        client = request.client.host if request.client else "?"
        try:
            throttle.check(client, user)
        except ThrottledError as e:
            if browser:
                return HTMLResponse(login_page(f"Too many failed sign-ins: try again in {int(e.retry_after) + 1} s.",
                                               user, sso), status_code=429, headers={"Retry-After": str(int(e.retry_after) + 1)})
            raise
        signed_in = policy.sign_in(user, password)
        workspace.audit.record("login" if signed_in else "login.failed", user[:64] if signed_in else None,
                               user=None if signed_in else user[:64], client=client, method="password")
        if signed_in is None:
            throttle.failed(client, user)
            if browser:
                return HTMLResponse(login_page("Wrong user name or password.", user, sso), status_code=401)
            return JSONResponse({"error": "wrong user name or password"}, status_code=401)
        throttle.succeeded(client, user)
        request.session.clear()
        request.session.update({**signed_in, "since": int(time.time())})
        if browser:
            return RedirectResponse("/", status_code=303)
        return {"success": True}

    @app.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
    def logout(request: Request):
        request.session.clear()
        return RedirectResponse("/login" if policy.login_required else "/", status_code=303)

    app.include_router(api_router(workspace), prefix="/api/v1")

    def gradio_user(request) -> str | None:
        return policy.gradio_user(request.scope.get("session") or {}, request.scope)

    from .ui import CSS, HEAD

    app = gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, auth_dependency=gradio_user,
                              max_file_size=f"{options.max_upload_mb}mb", show_error=False, ssr_mode=False,
                              css=CSS, head=HEAD, footer_links=["api"], run_history=False)
    # outermost last: guard -> CORS -> session -> sign-in gate -> routes
    app.add_middleware(SignInGate, policy=policy)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings.session_secret, settings.data_dir),
                       session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S, same_site="lax")
    app.add_middleware(CORSMiddleware, allow_origins=[o.rstrip("/") for o in allowed_origins],
                       allow_credentials=True, allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)
    install_proxy_auth(app, workspace, settings)  # trusted-header sign-in: outermost, so keep it last
    return app


class AppServer:
    """uvicorn serving the app, in this thread (``serve_forever``) or a background one (``start``).

    ``on_started(host, port)``: called once the socket is bound (with the bound address: port 0 becomes the port
    chosen); what it returns, if callable, is called when the server stops (lusifer-rag serve records where it
    listens in the store's lock record with it, so that the CLI can send its work here)."""

    def __init__(self, app, host: str, port: int, quiet: bool = False, on_started=None):
        import uvicorn

        # proxy_headers off where the app handles them itself, inside its trusted-header sign-in (app/proxy_auth.py)
        inside = getattr(getattr(app, "state", None), "proxy_headers_inside", False)
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info",
                                     access_log=False, timeout_graceful_shutdown=5, proxy_headers=not inside)
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.on_started = on_started
        self._hooks = threading.Lock()
        self._stopped = False
        self._undo = None

    def bound(self) -> tuple[str, int]:
        """(host, port) the server listens on (the configured ones until it is bound)."""
        for srv in getattr(self.server, "servers", None) or []:
            for sock in getattr(srv, "sockets", None) or []:
                name = sock.getsockname()
                return self.config.host, int(name[1])
        return self.config.host, self.config.port

    def _announce(self) -> None:
        with self._hooks:
            if self.on_started is not None and not self._stopped:
                undo = self.on_started(*self.bound())
                self._undo = undo if callable(undo) else None

    def _retract(self) -> None:
        with self._hooks:
            self._stopped = True
            undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def _watch(self) -> None:
        while not self.server.started and not self._stopped:
            time.sleep(0.05)
        self._announce()

    def serve_forever(self) -> None:
        if self.on_started is not None:
            threading.Thread(target=self._watch, name="lusifer-http-started", daemon=True).start()
        try:
            self.server.run()
        finally:
            self._retract()

    def start(self, timeout: float = 60.0) -> "AppServer":
        self.thread = threading.Thread(target=self.server.run, name="lusifer-http", daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the web server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.05)
        self._announce()
        return self

    def close(self) -> None:
        self._retract()
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)

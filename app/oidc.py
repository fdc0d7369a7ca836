"""Single sign-on through an OpenID Connect provider (Keycloak, Authentik, Dex, Entra ID, Okta, Google …), with
authlib's Starlette client.

``GET /login/oidc`` sends the browser to the provider's authorization endpoint (found through its discovery
document, ``<issuer>/.well-known/openid-configuration``): authorization-code flow with PKCE (S256), a fresh
``state`` and ``nonce`` kept in the signed session cookie. ``GET /login/oidc/callback`` checks the state, exchanges
the code (with the client secret, if any, and the PKCE verifier) and verifies the ID token: its signature against
the provider's JWKS (asymmetric algorithms only), issuer (the configured one, which the discovery document must
name), audience (our client id), expiry and nonce. The user named by ``oidc_username_claim`` (else ``email``,
else ``sub``) is then created on first sign-in and their ``oidc_groups_claim`` list mapped to local groups
(app/sso.py), the session is renewed with ``uid``/``user``, and the browser goes to ``/``. Where the ID token lacks
the name or group claims and the provider has a userinfo endpoint, they are read from it (same ``sub`` only).

Every failure (provider unreachable, state mismatch, a token refused, a user who may not sign in) answers with a
short message (an HTML page for a browser, else JSON) that names the cause and never shows a traceback, a server
path or the client secret. Without ``oidc_issuer`` the two routes answer 404.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from fastapi import Request  # at module level: the routes' annotations are resolved in this module's globals

from lusifer_rag.errors import AccessError, ConfigError

from .sso import error_response, group_names, identity_of, sign_in

log = logging.getLogger(__name__)

START_PATH = "/login/oidc"
CALLBACK_PATH = "/login/oidc/callback"
ORIGIN = "oidc"
#: ID-token signature algorithms accepted (asymmetric: the JWKS holds only public keys; never 'none' or HMAC)
SAFE_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 60  # clock skew allowed on exp/iat
TIMEOUT_S = 10.0  # each request to the provider


class OidcConfig:
    """The OpenID Connect settings, checked: ConfigError says which one is wrong and what is allowed."""

    def __init__(self, settings):
        from authlib.common.security import is_secure_transport

        issuer = (settings.oidc_issuer or "").strip()
        if not issuer:
            raise ConfigError("oidc_issuer is not set")
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"LUSIFER_RAG_OIDC_ISSUER={issuer[:100]!r} is not valid; give the provider's issuer "
                              "URL, e.g. https://keycloak.example.org/realms/acme")
        if not is_secure_transport(issuer):
            raise ConfigError(f"LUSIFER_RAG_OIDC_ISSUER={issuer[:100]!r} is not https; plain http is allowed only "
                              "for a provider on this machine (localhost)")
        if not (settings.oidc_client_id or "").strip():
            raise ConfigError("single sign-on needs LUSIFER_RAG_OIDC_CLIENT_ID (this app's client id at the provider) "
                              "beside LUSIFER_RAG_OIDC_ISSUER")
        self.issuer = issuer.rstrip("/")
        self.client_id = settings.oidc_client_id.strip()
        self.client_secret = settings.oidc_client_secret or None
        scopes = (settings.oidc_scopes or "").split()
        self.scopes = " ".join(["openid"] + [s for s in dict.fromkeys(scopes) if s != "openid"])
        self.username_claim = (settings.oidc_username_claim or "").strip() or "preferred_username"
        self.groups_claim = (settings.oidc_groups_claim or "").strip() or None
        self.name = (settings.oidc_name or "").strip() or parts.hostname
        public = (settings.public_url or "").strip().rstrip("/")
        if public and (urlsplit(public).scheme not in ("http", "https") or not urlsplit(public).hostname):
            raise ConfigError(f"LUSIFER_RAG_PUBLIC_URL={public[:100]!r} is not valid; give scheme://host[:port][/path], "
                              "e.g. https://rag.example.org")
        self.callback_url = public + CALLBACK_PATH if public else None

    def __repr__(self) -> str:  # never the secret
        return f"OidcConfig(issuer={self.issuer!r}, client_id={self.client_id!r}, scopes={self.scopes!r})"


def enabled(settings) -> bool:
    return bool((getattr(settings, "oidc_issuer", None) or "").strip())


def install_oidc(app, workspace, settings) -> str | None:
    """Add ``GET /login/oidc`` and ``GET /login/oidc/callback`` to ``app`` (404 while OIDC is not configured).
    Returns the provider's name for the login page's "Sign in with …" link, or None without single sign-on.
    ConfigError at start-up for invalid settings."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import RedirectResponse

    config = OidcConfig(settings) if enabled(settings) else None
    client = _register(config) if config is not None else None
    identity = identity_of(workspace) if config is not None else None
    audit = getattr(workspace, "audit", None)  # app/audit.py: sign-ins and refusals

    def refused(request, status: int, message: str):
        if audit is not None:
            audit.record("login.failed", None, method="oidc", reason=message[:200],
                         client=request.client.host if request.client else None)
        return error_response(request, status, message)

    def not_configured(request):
        return error_response(request, 404, "single sign-on is not configured on this server "
                              "(set LUSIFER_RAG_OIDC_ISSUER and LUSIFER_RAG_OIDC_CLIENT_ID)")

    @app.get(START_PATH, include_in_schema=False, name="oidc_login")
    async def oidc_login(request: Request):
        if client is None:
            return not_configured(request)
        redirect_uri = config.callback_url or str(request.url_for("oidc_callback"))
        try:
            await _metadata(client, config)
            return await client.authorize_redirect(request, redirect_uri)
        except _ProviderError as e:
            return error_response(request, 502, str(e))
        except Exception as e:  # noqa: BLE001 - the provider's failures are many; none may show a traceback
            return error_response(request, 502, _unreachable(config, e))

    @app.get(CALLBACK_PATH, include_in_schema=False, name="oidc_callback")
    async def oidc_callback(request: Request):
        if client is None:
            return not_configured(request)
        try:
            claims = await _verified_claims(client, config, request)
            name = next((str(claims[c]) for c in (config.username_claim, "email", "sub") if claims.get(c)), "")
            groups = (group_names(claims.get(config.groups_claim), f"the {config.groups_claim!r} claim")
                      if config.groups_claim else None)
            user = await run_in_threadpool(sign_in, identity, name, ORIGIN, groups,
                                           f"the identity provider {config.name}")
        except _SignInRefused as e:
            return refused(request, 400, str(e))
        except _ProviderError as e:
            return refused(request, 502, str(e))
        except AccessError as e:
            return refused(request, e.status, str(e))
        except Exception:  # noqa: BLE001
            log.exception("single sign-on callback failed")
            return refused(request, 500, "the sign-in failed on this server; the server's log says why")
        request.session.clear()
        request.session.update({"uid": user.id, "user": user.name, "since": int(time.time())})
        if audit is not None:
            audit.record("login", user.name, method="oidc", client=request.client.host if request.client else None,
                         groups=len(user.groups))
        log.info("single sign-on: %s signed in through %s (%d groups)", user.name, config.issuer, len(user.groups))
        return RedirectResponse("/", status_code=303)

    return config.name if config is not None else None


class _SignInRefused(Exception):
    """This sign-in cannot go on (state mismatch, the provider refused, a token failed its checks): 400."""


class _ProviderError(Exception):
    """The provider could not be used (unreachable, an invalid discovery document): 502."""


def _register(config: OidcConfig):
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    kwargs = {"scope": config.scopes, "code_challenge_method": "S256", "timeout": TIMEOUT_S}
    if config.client_secret is None:
        kwargs["token_endpoint_auth_method"] = "none"  # a public client: PKCE alone
    return oauth.register("oidc", client_id=config.client_id, client_secret=config.client_secret,
                          server_metadata_url=config.issuer + "/.well-known/openid-configuration",
                          client_kwargs=kwargs)


def _kinds(e: Exception) -> set[str]:
    """The exception's class names (authlib talks through httpx2 where installed, else httpx: same names)."""
    return {c.__name__ for c in type(e).__mro__}


def _unreachable(config: OidcConfig, e: Exception) -> str:
    down = isinstance(e, OSError) or bool(_kinds(e) & {"TransportError", "TimeoutException"})
    what = "did not answer" if down else "answered with an error"
    log.warning("single sign-on: the provider at %s %s: %s: %s", config.issuer, what, type(e).__name__, e)
    return f"the identity provider at {config.issuer} {what} ({type(e).__name__}); try again later"


async def _metadata(client, config: OidcConfig) -> dict:
    """The provider's discovery document (fetched once, then kept), checked: it must name the configured issuer,
    the endpoints the flow uses, and at least one accepted signature algorithm (others are dropped)."""
    meta = await client.load_server_metadata()
    if meta.get("_lusifer_checked"):
        return meta
    try:
        issuer = meta.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != config.issuer:
            raise _ProviderError(f"the identity provider's discovery document names issuer {str(issuer)[:100]!r}, "
                                 f"not the configured {config.issuer!r} (LUSIFER_RAG_OIDC_ISSUER)")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not meta.get(k)]
        if missing:
            raise _ProviderError(f"the identity provider's discovery document lacks {', '.join(missing)}")
        algs = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        safe = [a for a in algs if a in SAFE_ALGS]
        if not safe:
            raise _ProviderError(f"the identity provider signs ID tokens with {algs!r} only; accepted: "
                                 f"{', '.join(SAFE_ALGS)}")
    except _ProviderError:
        for k in list(meta):  # fetch it again next time (the provider may be fixed meanwhile)
            meta.pop(k)
        raise
    meta["id_token_signing_alg_values_supported"] = safe
    meta["_lusifer_checked"] = True
    return meta


async def _verified_claims(client, config: OidcConfig, request) -> dict:
    """The callback's state checked, its code exchanged, the ID token verified: the user's claims."""
    from authlib.integrations.base_client import MismatchingStateError, OAuthError
    from joserfc.errors import JoseError

    try:
        meta = await _metadata(client, config)
    except _ProviderError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _ProviderError(_unreachable(config, e)) from None
    if request.query_params.get("error"):
        err = request.query_params.get("error", "")[:80]
        desc = request.query_params.get("error_description", "")[:200]
        raise _SignInRefused(f"the identity provider refused the sign-in: {err}" + (f" ({desc})" if desc else ""))
    # the ID token must be issued by the configured provider to this app: authlib checks the signature with the
    # provider's JWKS, exp/iat (LEEWAY_S), the nonce it sent, and what is asked here
    options = {"iss": {"essential": True, "value": meta["issuer"]},
               "aud": {"essential": True, "value": config.client_id}}
    try:
        token = await client.authorize_access_token(request, claims_options=options, leeway=LEEWAY_S)
    except MismatchingStateError:
        raise _SignInRefused("this sign-in was not started from this browser or has expired (its state does not "
                             "match); start again from the login page") from None
    except OAuthError as e:  # the token endpoint refused the code (expired, reused, wrong verifier)
        log.warning("single sign-on: token request refused: %s", e)
        raise _SignInRefused(f"the identity provider refused to exchange the sign-in code: {e.error}"
                             + (f" ({str(e.description)[:200]})" if e.description else "")) from None
    except JoseError as e:
        log.warning("single sign-on: ID token refused: %s: %s", type(e).__name__, e)
        raise _SignInRefused(f"the identity provider's ID token was refused: {_jose_reason(e)}") from None
    except Exception as e:  # noqa: BLE001
        if "HTTPStatusError" in _kinds(e) and 400 <= e.response.status_code < 500:
            raise _SignInRefused(f"the identity provider refused the sign-in code (HTTP {e.response.status_code}); "
                                 "start again from the login page") from None
        raise _ProviderError(_unreachable(config, e)) from None
    claims = token.get("userinfo")
    if not claims or not token.get("id_token"):
        raise _SignInRefused("the identity provider sent no ID token (is 'openid' among the client's scopes?)")
    claims = dict(claims)
    if not claims.get(config.username_claim) or (config.groups_claim and config.groups_claim not in claims):
        claims = await _with_userinfo(client, config, token, claims, meta)
    return claims


async def _with_userinfo(client, config: OidcConfig, token: dict, claims: dict, meta: dict) -> dict:
    """ID-token claims completed from the userinfo endpoint (its answer counts only for the same ``sub``)."""
    if not meta.get("userinfo_endpoint"):
        return claims
    try:
        extra = await client.userinfo(token=token)
    except Exception as e:  # noqa: BLE001 - the ID token alone still signs in
        log.warning("single sign-on: userinfo request failed: %s: %s", type(e).__name__, e)
        return claims
    if extra.get("sub") != claims.get("sub"):
        log.warning("single sign-on: userinfo's sub differs from the ID token's; ignored")
        return claims
    return {**extra, **claims}


def _jose_reason(e: Exception) -> str:
    from joserfc.errors import (BadSignatureError, ExpiredTokenError, InvalidClaimError, InvalidKeyIdError,
                                MissingClaimError, UnsupportedAlgorithmError)

    if isinstance(e, ExpiredTokenError):
        return "it has expired"
    if isinstance(e, BadSignatureError):
        return "its signature does not match the provider's published keys"
    if isinstance(e, InvalidKeyIdError):
        return "it is signed with a key the provider does not publish"
    if isinstance(e, UnsupportedAlgorithmError):
        return f"its signature algorithm is not accepted (accepted: {', '.join(SAFE_ALGS)})"
    if isinstance(e, InvalidClaimError):
        claim = getattr(e, "claim", None) or str(e)
        return {"iss": "it was issued by another provider (iss)", "aud": "it was issued for another client (aud)",
                "nonce": "its nonce is not this sign-in's"}.get(claim, f"its claim {claim!r} is not valid")
    if isinstance(e, MissingClaimError):
        return f"it lacks the claim {getattr(e, 'claim', None) or str(e)!r}"
    return getattr(e, "error", None) or type(e).__name__

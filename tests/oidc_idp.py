"""A real OpenID Connect provider on localhost for the single sign-on tests: authlib's Flask authorization server
(``AuthorizationCodeGrant`` with the ``OpenIDCode`` and ``CodeChallenge`` extensions, PKCE required, nonce
required) serving discovery, JWKS, authorize, token and userinfo, signing ID tokens with an RSA key (RS256).

The authorize endpoint approves ``TestIdP.user`` without a login page (a test has no person to type a password).
A test may make the provider misbehave to check that the app refuses it: ``issuer_claim`` / ``audience_claim``
(an ID token claiming another issuer or audience), ``expired`` (an ID token already expired), ``foreign_key`` (an
ID token signed with a key the JWKS does not publish, under the published key id), ``groups_in_userinfo`` (the
groups only in the userinfo answer, as some providers do). ``authorize_requests`` records what the app asked.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from app_fixtures import free_port


@dataclass
class IdPUser:
    sub: str
    preferred_username: str
    email: str
    groups: list[str] = field(default_factory=list)


class _Client:
    """One registered client (a confidential one: client_secret_basic or _post)."""

    def __init__(self, client_id: str, client_secret: str, redirect_uris: list[str]):
        self.client_id, self.client_secret, self.redirect_uris = client_id, client_secret, redirect_uris

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile", "email", "groups"))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret or "", self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: IdPUser
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class TestIdP:
    """``with TestIdP(redirect_uris) as idp:`` a provider at ``idp.issuer`` (http://127.0.0.1:<port>)."""

    __test__ = False  # not a pytest test class

    def __init__(self, redirect_uris: list[str], client_id: str = "lusifer", client_secret: str | None = None):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client = _Client(client_id, client_secret or secrets.token_urlsafe(24), redirect_uris)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-key-1", "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "idp-key-1", "use": "sig"})
        self.user = IdPUser("0c9e1f6a-sub-alice", "alice", "alice@example.org", ["staff", "readers"])
        self.issuer_claim: str | None = None
        self.audience_claim: str | None = None
        self.expired = False
        self.foreign_key = False
        self.groups_in_userinfo = False
        self.authorize_requests: list[dict] = []
        self.token_requests = 0
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, tuple[IdPUser, str]] = {}
        self._nonces: set[str] = set()
        self.flask = self._build()
        self._server = None
        self._thread = None

    # ---- the provider ------------------------------------------------------------------------------
    def _build(self) -> Flask:
        idp = self
        app = Flask("test-idp")

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                data = req.payload.data
                idp._codes[code] = _Code(code, req.client.get_client_id(), req.payload.redirect_uri,
                                         req.payload.scope, data.get("nonce"), data.get("code_challenge"),
                                         data.get("code_challenge_method"), req.user)
                if data.get("nonce"):
                    idp._nonces.add(data["nonce"])

            def query_authorization_code(self, code, client):
                item = idp._codes.get(code)
                return item if item is not None and item.client_id == client.get_client_id() else None

            def delete_authorization_code(self, authorization_code):
                idp._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class IdPOpenIDCode(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return nonce in idp._nonces

            def resolve_client_private_key(self, client):
                return idp.other_key if idp.foreign_key else idp.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": "idp-key-1"}

            def get_client_claims(self, client):
                now = int(time.time())
                return {"iss": idp.issuer_claim or idp.issuer, "aud": [idp.audience_claim or client.get_client_id()],
                        "iat": now - 7200 if idp.expired else now, "exp": now - 3600 if idp.expired else now + 300}

            def generate_user_info(self, user, scope):
                return idp._user_info(user, scope, for_id_token=True)

        def save_token(token, req):
            idp._tokens[token["access_token"]] = (req.user, token.get("scope", ""))

        server = AuthorizationServer(app, query_client=lambda cid: idp.client if cid == idp.client.client_id
                                     else None, save_token=save_token)
        server.register_grant(CodeGrant, [IdPOpenIDCode(require_nonce=True), CodeChallenge(required=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": idp.issuer,
                "authorization_endpoint": idp.issuer + "/authorize",
                "token_endpoint": idp.issuer + "/token",
                "userinfo_endpoint": idp.issuer + "/userinfo",
                "jwks_uri": idp.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "groups"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "email",
                                     "groups"],
            })

        @app.get("/jwks")
        def jwks():
            return jsonify({"keys": [idp.key.as_dict(private=False)]})

        @app.get("/authorize")
        def authorize():
            idp.authorize_requests.append(dict(request.args))
            try:
                grant = server.get_consent_grant(end_user=idp.user)
            except OAuth2Error as error:  # an unknown client or redirect URI: said here, never redirected
                return jsonify({"error": error.error, "error_description": error.description}), 400
            return server.create_authorization_response(grant_user=idp.user, grant=grant)  # approved at once

        @app.post("/token")
        def token():
            idp.token_requests += 1
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo():
            auth = request.headers.get("Authorization", "")
            found = idp._tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
            if found is None:
                return jsonify({"error": "invalid_token"}), 401
            return jsonify(dict(idp._user_info(found[0], found[1], for_id_token=False)))

        return app

    def _user_info(self, user: IdPUser, scope: str, *, for_id_token: bool) -> UserInfo:
        info = UserInfo(sub=user.sub)
        scopes = (scope or "").split()
        if "profile" in scopes:
            info["preferred_username"] = user.preferred_username
        if "email" in scopes:
            info["email"] = user.email
        if for_id_token != self.groups_in_userinfo:
            info["groups"] = list(user.groups)
        return info

    # ---- running it --------------------------------------------------------------------------------
    def __enter__(self) -> "TestIdP":
        self._server = make_server("127.0.0.1", self.port, self.flask, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-idp", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

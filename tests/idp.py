"""A real OpenID Connect provider on loopback, built from authlib's server components.

authlib's `AuthorizationServer` with the resource owner password grant
(client_secret_basic and client_secret_post), its `OpenIDToken` extension
for ID tokens (RS256 or ES256, a JWKS endpoint, key rotation), its RFC 7662
`IntrospectionEndpoint`, plus userinfo and a discovery document, served by
Starlette under uvicorn (tests.upstreams.Server). authlib's server is
synchronous: each handler reads the form, then hands authlib a request made
from it.

For browsers (the onboarding page), the authorization code grant with PKCE
(`CodeChallenge(required=True)`) and `OpenIDCode` (nonce required) for the
client CODE_CLIENT: GET /authorize shows a login form, POST /authorize checks
the password and redirects back with a code. Its redirect URIs are
`state.redirect_uris` (set once the relying party's port is known); codes live
in `state.codes` and are single-use, for 60 s.

Misbehaviour is chosen by the user name (ID tokens that are expired, not yet
valid, wrongly signed, from another issuer, for another audience, alg=none)
or for the whole server (`state.behaviour`: "error" 500s, "slow" answers
after 2 s, "garbage" a 200 of HTML). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidGrantError,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ResourceOwnerPasswordCredentialsGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.upstreams import form_of

CLIENT = ("zoiper-bridge", "cl1ent-s3cret-8f2e")          # client_secret_basic
POST_CLIENT = ("bridge-post", "p0st-s3cret-71aa")          # client_secret_post
PUBLIC_CLIENT = "phone-public"                             # no secret ("none")
CODE_CLIENT = ("onboarding-web", "c0de-fl0w-s3cret-5d1c")  # authorization code + PKCE
PASSWORD = "Wonder-Land-7"
NAME = "Émile <Zola> & \"Fils\" 'ü' ☎"                       # XML specials, non-ASCII
USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice Liddell", "groups": ["voip", "staff"],
              "realm_access": {"roles": ["phone-users"]}, "ext": "1001"},
    "émile": {"name": NAME, "groups": ["voip", "<admins> & co"], "ext": "1002"},
    "big": {"name": "B" * 2000, "groups": ["voip"], "ext": "1003"},  # answers over 1 KiB
}
TWEAKS = ("expired", "future", "wrong-iss", "wrong-aud", "alg-none", "bad-sig",
          "unknown-kid", "no-username")
for _tweak in TWEAKS:
    USERS[_tweak] = {"name": _tweak, "groups": ["voip"], "ext": "1999"}


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str
    method: str
    grants: tuple[str, ...] = ("password",)
    redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grants

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grants


@dataclass
class Token(TokenMixin):
    access_token: str
    client_id: str
    user: str
    scope: str
    issued_at: float
    expires_in: int
    sloppy: bool = False  # an introspection that forgets to check exp

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return not self.sloppy and time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        return CLIENTS[self.client_id]


CLIENTS = {c[0]: Client(c[0], c[1], m) for c, m in ((CLIENT, "client_secret_basic"),
                                                    (POST_CLIENT, "client_secret_post"),
                                                    ((PUBLIC_CLIENT, ""), "none"))}
CLIENTS[CODE_CLIENT[0]] = Client(*CODE_CLIENT, "client_secret_basic", ("authorization_code",))


@dataclass
class AuthCode:
    """An authorization code, bound to its client, redirect URI, nonce and PKCE challenge."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return time.time() > self.auth_time + 60


@functools.lru_cache(maxsize=64)
def new_key(kid: str, alg: str = "RS256") -> Key:
    """A signing key (the same one again for the same kid and alg: RSA keys are slow to make,
    and a test wanting two keys asks for two kids)."""
    if alg.startswith("ES"):
        return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": alg, "use": "sig"})
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": alg, "use": "sig"})


def impostor(key: Key, alg: str) -> Key:
    """Another key under `key`'s kid."""
    other = new_key(f"impostor-{alg}", alg)
    return type(other).import_key(other.as_dict(private=True) | {"kid": key.kid})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class IdPState:
    issuer: str = ""
    alg: str = "RS256"
    signing: Key = field(default_factory=lambda: new_key("k1"))
    published: list[Key] = field(default_factory=list)
    tokens: dict[str, Token] = field(default_factory=dict)
    behaviour: str = "ok"
    max_age: int = 3600
    seen: list[tuple[str, Headers, dict[str, str]]] = field(default_factory=list)
    fetches: dict[str, int] = field(default_factory=lambda: {"discovery": 0, "jwks": 0})
    paths: list[str] = field(default_factory=list)  # every request, misbehaving or not
    codes: dict[str, AuthCode] = field(default_factory=dict)  # authorization codes, live
    issued_codes: list[str] = field(default_factory=list)  # every code ever issued

    @property
    def redirect_uris(self) -> list[str]:
        """Where CODE_CLIENT may be sent back to (a list the test fills)."""
        return CLIENTS[CODE_CLIENT[0]].redirect_uris

    def __post_init__(self) -> None:
        self.published = [self.signing]

    def rotate(self, alg: str = "RS256", kid: str | None = None) -> Key:
        """A new signing key, published next to the old one."""
        self.alg = alg
        self.signing = new_key(kid or f"k{len(self.published) + 1}", alg)
        self.published.append(self.signing)
        return self.signing

    def mint(self, claims: dict[str, Any], key: Key | None = None, alg: str | None = None,
             **header: Any) -> str:
        """A JWT over `claims` (iss, iat and exp filled in unless given), signed like ID tokens."""
        key = key or self.signing
        now = int(time.time())
        claims = {"iss": self.issuer, "iat": now, "exp": now + 300, **claims}
        alg = alg or self.alg
        if alg == "none":
            return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        kid = {"kid": key.kid} if key.kid else {}
        return jwt.encode({"alg": alg, **kid, **header}, claims, key)

    def forge_hs256(self, claims: dict[str, Any], secret: bytes) -> str:
        """HS256 by hand with any bytes as the secret (joserfc rightly refuses a public key)."""
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + 300, **claims}
        signed = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(body)}"
        mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
        return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def issue(self, user: str, scope: str = "openid phone", expires_in: int = 300,
              age: float = 0, client: str = CLIENT[0], sloppy: bool = False) -> str:
        """An opaque access token in the store, as the provider's portal would hand out."""
        value = secrets.token_urlsafe(24)
        self.tokens[value] = Token(value, client, user, scope, time.time() - age, expires_in,
                                   sloppy)
        return value

    def claims_of(self, user: str, scope: str = "openid") -> dict[str, Any]:
        data = USERS[user]
        claims: dict[str, Any] = {"sub": f"sub-{user}", "name": data["name"],
                                  "groups": data["groups"], "ext": data["ext"],
                                  "email": f"{user}@example.org"}
        if user != "no-username":
            claims["preferred_username"] = user
        if "realm_access" in data:
            claims["realm_access"] = data["realm_access"]
        return claims


class FormRequest(OAuth2Request):
    def __init__(self, request: Request, form: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class PasswordGrant(ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def authenticate_user(self, username: str, password: str) -> str:
        if username in USERS and secrets.compare_digest(password.encode(), PASSWORD.encode()):
            return username
        # What Keycloak, Okta, Auth0 and Entra ID answer (authlib's default is
        # invalid_request).
        raise InvalidGrantError("Invalid user credentials")


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        state: IdPState = self.server.state
        data = request.payload.data
        state.codes[code] = AuthCode(
            code, request.client.client_id, data["redirect_uri"], request.scope,
            request.user, data.get("nonce"), data.get("code_challenge"),
            data.get("code_challenge_method"), int(time.time()))
        state.issued_codes.append(code)

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        found = self.server.state.codes.get(code)
        if found is None or found.client_id != client.client_id or found.is_expired():
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        self.server.state.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> str:
        return authorization_code.user


class IDToken(OpenIDToken):
    def __init__(self, state: IdPState) -> None:
        self.state = state

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.state.issuer, "aud": [client.client_id]}

    def get_client_algorithm(self, client: Client) -> str:
        return self.state.alg

    def resolve_client_private_key(self, client: Client) -> Key:
        return self.state.signing

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": self.state.alg, "kid": self.state.signing.kid}

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(self.state.claims_of(user))

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        user = request.user
        if user not in TWEAKS:
            return str(super().encode_id_token(token, request))
        claims = {**self.get_compatible_claims(request), **self.state.claims_of(user)}
        now = int(time.time())
        key: Key | None = None
        alg = None
        if user == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif user == "future":
            claims.update(nbf=now + 3600)
        elif user == "wrong-iss":
            claims["iss"] = "https://evil.example.org"
        elif user == "wrong-aud":
            claims["aud"] = ["another-app"]
        elif user == "alg-none":
            alg = "none"
        elif user == "bad-sig":  # the published kid, another key
            key = impostor(self.state.signing, self.state.alg)
        elif user == "unknown-kid":
            key = new_key("made-up", self.state.alg)
        return self.state.mint(claims, key, alg)


class IDCode(OpenIDCode, IDToken):
    """ID tokens for the code grant: the same keys and claims, plus the nonce."""

    def __init__(self, state: IdPState) -> None:
        OpenIDCode.__init__(self, require_nonce=True)
        IDToken.__init__(self, state)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self.state.codes.values())


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def __init__(self, server: AuthorizationServer, state: IdPState) -> None:
        super().__init__(server)
        self.state = state

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.state.tokens.get(token_string)

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return True

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {"active": True, "client_id": token.client_id, "token_type": "Bearer",
                "username": token.user, "scope": token.scope, "iss": self.state.issuer,
                "aud": token.client_id, "exp": int(token.issued_at + token.expires_in),
                "iat": int(token.issued_at), **self.state.claims_of(token.user)}


class Server(AuthorizationServer):
    def __init__(self, state: IdPState) -> None:
        super().__init__()
        self.state = state
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(24)))
        self.register_grant(PasswordGrant, [IDToken(state)])
        self.register_grant(CodeGrant, [CodeChallenge(required=True), IDCode(state)])
        self.register_endpoint(Introspection(self, state))

    def query_client(self, client_id: str) -> Client | None:
        return CLIENTS.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.state.tokens[token["access_token"]] = Token(
            token["access_token"], request.client.client_id, request.user, token["scope"],
            time.time(), token["expires_in"])

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # made from the Starlette request by the handler

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        return JSONResponse(body, status, dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def idp_app(state: IdPState) -> Starlette:
    server = Server(state)

    async def form_request(request: Request) -> FormRequest:
        form = await form_of(request)
        state.seen.append((request.url.path, request.headers, form))
        return FormRequest(request, form)

    async def token(request: Request) -> Response:
        response: Response = server.create_token_response(await form_request(request))
        return response

    async def introspect(request: Request) -> Response:
        response: Response = server.create_endpoint_response(
            "introspection", await form_request(request))
        return response

    async def authorize(request: Request) -> Response:
        """The login page of the code flow: GET shows it, POST checks the password."""
        params = dict(request.query_params)
        form = await form_of(request) if request.method == "POST" else {}
        params.update({k: v for k, v in form.items() if k not in ("username", "password")})
        state.seen.append((request.url.path, request.headers, params))
        oauth_request = FormRequest(request, params)
        try:
            grant = server.get_consent_grant(oauth_request)
        except OAuth2Error as exc:
            return HTMLResponse(f"<p>refused: {exc.error}</p>", 400)
        user, error = form.get("username", ""), ""
        if request.method == "POST":
            if user in USERS and secrets.compare_digest(form.get("password", "").encode(),
                                                        PASSWORD.encode()):
                response: Response = server.create_authorization_response(
                    oauth_request, grant_user=user, grant=grant)
                return response
            error = "<p role='alert' id='idp-error'>Invalid username or password.</p>"
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        return HTMLResponse(
            "<!doctype html><title>Test IdP</title><h1>Test IdP</h1>" + error
            + '<form method="post"><label for="u">Username</label>'
            + f'<input id="u" name="username" value="{html.escape(user)}">'
            + '<label for="p">Password</label><input id="p" name="password" type="password">'
            + f'{hidden}<button id="idp-submit">Sign in</button></form>')

    async def userinfo(request: Request) -> Response:
        state.seen.append((request.url.path, request.headers, {}))
        auth = request.headers.get("authorization", "")
        found = state.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or found is None or found.is_expired():
            return JSONResponse({"error": "invalid_token"}, 401,
                                {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse(state.claims_of(found.user))

    async def discovery(request: Request) -> Response:
        state.fetches["discovery"] += 1
        base = state.issuer
        return JSONResponse({
            "issuer": base, "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo", "jwks_uri": f"{base}/jwks",
            "introspection_endpoint": f"{base}/introspect",
            "authorization_endpoint": f"{base}/authorize",
            "grant_types_supported": ["password", "authorization_code"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }, headers={"Cache-Control": f"max-age={state.max_age}"})

    async def jwks(request: Request) -> Response:
        state.fetches["jwks"] += 1
        return JSONResponse({"keys": [k.as_dict(private=False) for k in state.published]},
                            headers={"Cache-Control": f"max-age={state.max_age}"})

    app = Starlette(routes=[
        Route("/.well-known/openid-configuration", discovery),
        Route("/jwks", jwks),
        Route("/token", token, methods=["POST"]),
        Route("/introspect", introspect, methods=["POST"]),
        Route("/userinfo", userinfo),
        Route("/authorize", authorize, methods=["GET", "POST"]),
    ])

    async def misbehaving(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            state.paths.append(scope["path"])
        if scope["type"] == "http" and state.behaviour != "ok":
            if state.behaviour == "slow":
                await asyncio.sleep(2)
            elif state.behaviour == "error":
                await Response("upstream broke", 500)(scope, receive, send)
                return
            elif state.behaviour == "garbage":
                await Response("<html>maintenance</html>", 200,
                               media_type="text/html")(scope, receive, send)
                return
        await app(scope, receive, send)

    return misbehaving  # type: ignore[return-value]

"""Log in at an OAuth2 / OpenID Connect provider: `[auth] type = "oauth2"`.

Keys: bridge.auth.oauth_config. Three modes:

* "password" (RFC 6749 4.3): the phone's name and password go to the token
  endpoint with the client's credentials; the identity comes from the ID token
  (verified against the issuer's JWKS) and/or from userinfo, asked with the
  access token;
* "introspection" / "jwt": the password field carries a token the provider's
  portal gave the user, checked by RFC 7662 introspection or locally against
  the JWKS (bridge.auth.token).

What an answer means:

* `invalid_grant` from the token endpoint: wrong credentials -> None (401);
* `invalid_client`, `unauthorized_client`, `unsupported_grant_type`,
  `invalid_scope` (a 401 without an error code from introspection too): the
  gateway's own configuration is wrong for everyone -> logged at error, an
  outage the breaker counts (503: phones keep their configuration);
* no connection, a timeout, 5xx, 429, a broken HTTP exchange: an outage,
  counted (bridge.upstream.client);
* any other answer that cannot be used (another error code, a body that does
  not parse, no access_token, an ID token that does not verify, userinfo that
  refuses the token, a missing username claim): 503 for this request only,
  marked `answered`, so one odd answer never opens the breaker.

Claims become the identity: `username_claim` (password mode: absent -> the
name as typed), `groups_claims` (each a claim path; text or a list),
`[auth.attributes]` name = claim path (text, numbers and booleans only).
Nothing here logs a password, a token or the client secret, nor puts one in
an error message.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode

import httpx

from bridge.auth import Authenticator
from bridge.auth import token as token_modes
from bridge.auth.oauth_config import OAuthConfig
from bridge.breaker import answered
from bridge.errors import UpstreamUnavailable
from bridge.mapping import text_of
from bridge.models import Credentials, Identity, Scalar
from bridge.upstream import documents
from bridge.upstream.client import Reply, UpstreamClient
from bridge.upstream.oidc import InvalidToken, Provider
from bridge.upstream.templates import Prepared

logger = logging.getLogger("bridge.auth.oauth")

CONFIG_FAULTS = {"invalid_client", "unauthorized_client", "unsupported_grant_type",
                 "invalid_scope"}
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FORM = [("Content-Type", b"application/x-www-form-urlencoded"),
         ("Accept", b"application/json")]


def error_code(reply: Reply) -> str | None:
    """The OAuth2 `error` of an answer, when it is a plain code (never echoed text)."""
    try:
        document = documents.parse(reply.content, "application/json")
    except documents.Malformed:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else None


class OAuthAuthenticator(Authenticator):
    Config = OAuthConfig

    def __init__(self, config: OAuthConfig) -> None:
        super().__init__(config)
        self.settings = config
        origin = config.origin()
        self.upstream = UpstreamClient(f"oauth2 {httpx.URL(origin).host}", origin, config)
        self.provider = Provider(self.upstream, config.issuer, config.endpoints(),
                                 config.refresh_interval, config.allow_http)
        # Older files' per-upstream breaker keys: settings for this backend's one breaker.
        self.breaker_failures: int | None = config.breaker_failures
        self.breaker_cooldown: float | None = config.breaker_cooldown

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    async def ready(self) -> None:
        """The provider answers: its discovery document when there is an issuer."""
        if self.settings.issuer is not None:
            await self.provider.discovery.get()
        else:
            await self.upstream.ready()

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if self.settings.mode == "introspection":
            return await token_modes.introspected(self, credentials)
        if self.settings.mode == "jwt":
            return await token_modes.verified(self, credentials)
        return await self._password_grant(credentials)

    # -- requests ---------------------------------------------------------------------------

    async def post_form(self, endpoint: str, params: dict[str, str]) -> Reply:
        """POST a form to one of the provider's endpoints, authenticated as the client.

        (authlib's client-auth helpers re-parse the body as ASCII, which breaks on
        a non-ASCII name; the two methods are simple enough to apply here.)
        """
        s = self.settings
        params = dict(params)
        auth: httpx.Auth | None = None
        assert s.client_id is not None
        if s.token_auth_method == "client_secret_basic":  # noqa: S105
            auth = httpx.BasicAuth(s.client_id, s.client_secret)
        elif s.token_auth_method == "client_secret_post":  # noqa: S105
            params.update(client_id=s.client_id, client_secret=s.client_secret)
        else:
            params["client_id"] = s.client_id
        url = httpx.URL(await self.provider.endpoint(endpoint))
        body = urlencode(params).encode("ascii")
        return await self.upstream.call(Prepared("POST", url, _FORM, body), lambda r: r, auth)

    def refused(self, reply: Reply, what: str, client: bool = True) -> Exception:
        """The error for an answer that is not a success (invalid_grant is handled before);
        `client`: the request was authenticated as the gateway's client."""
        code = error_code(reply)
        name = self.upstream.name
        if client and (code in CONFIG_FAULTS or (code is None and reply.status == 401)):
            logger.error("%s: the provider refuses the gateway's client at the %s: %s (HTTP "
                         "%d). Check client_id, client_secret, token_auth_method, and that "
                         "the client may use this grant / endpoint", name, what,
                         code or "no error code", reply.status)
            return UpstreamUnavailable(f"{name}: {what}: {code or 'HTTP 401'} "
                                       "(configuration fault)")
        return answered(UpstreamUnavailable(f"{name}: {what}: HTTP {reply.status}"
                                            + (f" {code}" if code else "")))

    def unusable(self, why: str) -> UpstreamUnavailable:
        """An answer that cannot be used for this request only."""
        return answered(UpstreamUnavailable(f"{self.upstream.name}: {why}"))

    def json_object(self, reply: Reply, what: str) -> dict[str, Any]:
        document = reply.document()  # a body that does not parse: answered 503
        if not isinstance(document, dict):
            raise self.unusable(f"{what} is not a JSON object")
        return document

    # -- the password grant -----------------------------------------------------------------

    async def _password_grant(self, credentials: Credentials) -> Identity | None:
        s = self.settings
        params = {"grant_type": "password", "username": credentials.username,
                  "password": credentials.password, **s.token_params}
        if s.scope:
            params["scope"] = s.scope
        reply = await self.post_form("token_endpoint", params)
        if reply.status != 200:
            if error_code(reply) == "invalid_grant":
                return None
            raise self.refused(reply, "token endpoint")
        answer = self.json_object(reply, "the token answer")
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise self.unusable("token answer without access_token")
        claims: dict[str, Any] = {}
        if s.wants_id_token:
            claims.update(await self._id_token(answer))
        if s.userinfo:
            info = await self._userinfo(access_token)
            if claims and info.get("sub") != claims.get("sub"):
                raise self.unusable("userinfo is about another subject than the ID token")
            claims.update(info)
        return self.identity(claims, credentials.username, fallback=True)

    async def _id_token(self, answer: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise self.unusable("token answer without id_token (does the client get "
                                "one for the password grant, with scope \"openid\"?)")
        try:
            claims = await self.provider.verify(
                id_token, algorithms=s.algorithms, audiences=s.audiences, leeway=s.leeway,
                hmac_key=s.hmac_secret or s.client_secret)
            azp = claims.get("azp")
            if azp is not None and azp != s.client_id:
                raise InvalidToken("its azp is another client")
        except InvalidToken as exc:
            logger.warning("%s: ID token refused: %s", self.upstream.name, exc)
            raise self.unusable(f"ID token refused: {exc}") from None
        return claims

    async def _userinfo(self, access_token: str) -> dict[str, Any]:
        if any(ord(c) < 33 or ord(c) > 126 for c in access_token):
            raise self.unusable("access token with characters a header cannot carry")
        url = httpx.URL(await self.provider.endpoint("userinfo_endpoint"))
        headers = [("Accept", b"application/json"),
                   ("Authorization", f"Bearer {access_token}".encode("ascii"))]
        reply = await self.upstream.call(Prepared("GET", url, headers), lambda r: r)
        if reply.status != 200:
            raise self.refused(reply, "userinfo", client=False)
        if "jwt" in reply.headers.get("content-type", ""):
            raise self.unusable("signed userinfo answers are not supported")
        return self.json_object(reply, "userinfo")

    # -- claims -> identity -----------------------------------------------------------------

    def identity(self, claims: dict[str, Any], typed: str, fallback: bool) -> Identity:
        """The identity in `claims`; `fallback`: a missing username claim is the name typed."""
        s = self.settings
        value = documents.scalar(documents.select(claims, s.username_claim))
        if value is None or isinstance(value, bool) or text_of(value) == "":
            if not fallback:
                raise self.unusable(f"no username claim {s.username_claim!r}")
            username = typed
        else:
            username = text_of(value)
        attributes: dict[str, Scalar] = {}
        for name, path in s.attributes.items():
            found = documents.scalar(documents.select(claims, path))
            if found is not None:
                attributes[name] = found  # absent: the mapping's default applies
        groups: set[str] = set()
        for path in s.groups_claims:
            found = documents.select(claims, path)
            items = found if isinstance(found, list) else [found]
            groups |= {text_of(v) for v in items
                       if isinstance(v, str | int) and not isinstance(v, bool)}
        return Identity(username, attributes, frozenset(groups))

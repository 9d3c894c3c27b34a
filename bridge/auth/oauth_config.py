"""The `[auth] type = "oauth2"` table, declared (see bridge.auth.oauth for what it does).

    mode = "password"            # password grant (default) | "introspection" | "jwt": the
                                 # password field carries a token the provider's portal issued
    issuer = "https://idp.example.com/realms/phones"   # discovery + the expected `iss`
    token_endpoint = "..."       # each endpoint: configured, or from discovery
    userinfo_endpoint = "..."
    introspection_endpoint = "..."
    jwks_uri = "..."
    client_id = "zoiper-bridge"
    client_secret_env = "OIDC_CLIENT_SECRET"
    token_auth_method = "client_secret_basic"   # | "client_secret_post" | "none" (public)
    scope = ["openid", "profile"]
    id_token = true              # password mode: verify the ID token (the default) ...
    userinfo = false             # ... and/or ask userinfo with the access token
    audience = ["zoiper-bridge"] # accepted `aud` (default: client_id; required for jwt)
    algorithms = ["RS256", "ES256"]   # allow-list; never "none"; HS* needs hmac_secret
    leeway = 60                  # seconds of clock skew for exp / nbf / iat
    username_claim = "preferred_username"   # password mode: absent -> the name as typed
    match_username = true        # token modes: the name typed must be the token's
    groups_claims = ["groups", "realm_access.roles"]
    required_scope = []          # token modes: scopes the token must carry
    allowed_clients = []         # token modes: client_id / azp the token must be for
    refresh_interval = 30.0      # at most one JWKS refresh for an unknown kid per this
    [auth.token_params]          # extra token request parameters (audience, resource)
    [auth.attributes]            # identity attributes: name = claim path

Plus the connection keys of bridge.upstream.config (timeouts, ca_file, max_bytes ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, PlainValidator

from bridge.config import Secret, describe
from bridge.upstream.config import ConnectionConfig, DocumentPath, scheme_problem
from bridge.upstream.templates import Problem

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                    "ES512", "EdDSA", "HS256", "HS384", "HS512"]
DEFAULT_ALGORITHMS: list[Algorithm] = ["RS256", "PS256", "ES256"]
ENDPOINTS = ("token_endpoint", "userinfo_endpoint", "introspection_endpoint", "jwks_uri")
RESERVED_PARAMS = {"grant_type", "username", "password", "scope", "client_id",
                   "client_secret"}


def _scope(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(s, str) and s and " " not in s
                                       for s in value):
        return " ".join(value)
    if isinstance(value, str):
        return value
    from pydantic_core import PydanticCustomError

    raise PydanticCustomError("scalar", "expected text or a list of text, received {value}",
                              {"value": describe(value)})


class OAuthConfig(ConnectionConfig):
    mode: Literal["password", "introspection", "jwt"] = "password"
    issuer: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    introspection_endpoint: str | None = None
    jwks_uri: str | None = None
    client_id: str | None = Field(None, min_length=1)
    client_secret: Secret = ""
    token_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic")  # noqa: S105 (a method name, not a password)
    scope: Annotated[str, PlainValidator(_scope)] = "openid"
    token_params: dict[str, str] = {}
    id_token: bool | None = None
    userinfo: bool = False
    audience: list[Annotated[str, Field(min_length=1)]] = []
    algorithms: list[Algorithm] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS),
                                        min_length=1)
    hmac_secret: Secret = ""
    leeway: int = Field(60, ge=0, le=600)
    username_claim: DocumentPath = "preferred_username"
    match_username: bool = True
    groups_claims: list[DocumentPath] = []
    attributes: dict[str, DocumentPath] = {}
    required_scope: list[str] = []
    allowed_clients: list[str] = []
    refresh_interval: float = Field(30.0, ge=1, le=3600)

    @property
    def wants_id_token(self) -> bool:
        return self.mode == "password" and (self.id_token if self.id_token is not None
                                            else not self.userinfo)

    @property
    def audiences(self) -> list[str]:
        """Accepted `aud` values: the configured ones, else the client's own id."""
        return self.audience or ([self.client_id] if self.client_id else [])

    def endpoints(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ENDPOINTS if getattr(self, name)}

    def origin(self) -> str:
        """The provider's origin (for the readiness check and same-origin redirects)."""
        url = httpx.URL(self.issuer or next(iter(self.endpoints().values())))
        return str(url.copy_with(path="/", query=None, fragment=None))

    def _problems(self) -> list[Problem]:
        found = super()._problems()
        for name in ("issuer", *ENDPOINTS):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                url: httpx.URL | None = httpx.URL(value)
            except httpx.InvalidURL:
                url = None
            if url is None or url.scheme not in ("http", "https") or not url.host:
                found.append(((name,), "must be an http(s):// URL"))
            elif (why := scheme_problem(url, self.allow_http)) is not None:
                found.append(((name,), why))
        found += self._mode_problems()
        if "none" in self.algorithms:  # pragma: no cover (not in the Literal; kept explicit)
            found.append((("algorithms",), "\"none\" is never accepted"))
        if any(a.startswith("HS") for a in self.algorithms) and not (
                self.hmac_secret or (self.wants_id_token and self.client_secret)):
            found.append((("hmac_secret",), "HS* algorithms need the shared secret "
                          "(hmac_secret, or the client_secret for ID tokens)"))
        found += [(("token_params", k), "is set by the gateway itself")
                  for k in sorted(self.token_params.keys() & RESERVED_PARAMS)]
        return found

    def _mode_problems(self) -> list[Problem]:
        found: list[Problem] = []
        mode, has = self.mode, self.endpoints()
        if mode in ("password", "introspection"):
            if self.client_id is None:
                found.append((("client_id",), f"is required with mode = {mode!r}"))
            elif ":" in self.client_id and self.token_auth_method == "client_secret_basic":  # noqa: S105
                found.append((("client_id",), "a ':' cannot be sent with client_secret_basic"))
            if self.token_auth_method == "none":  # noqa: S105
                if self.client_secret:
                    found.append((("client_secret",), "not sent with token_auth_method = "
                                                      "\"none\": remove it"))
                if mode == "introspection":
                    found.append((("token_auth_method",), "introspection needs the client "
                                                          "to authenticate"))
            elif not self.client_secret:
                found.append((("client_secret",), "is required (or client_secret_env / "
                                                  "client_secret_file)"))
        needed = {"password": ["token_endpoint"], "introspection": ["introspection_endpoint"],
                  "jwt": ["jwks_uri"]}[mode]
        if self.wants_id_token:
            needed.append("jwks_uri")
        if mode == "password" and self.userinfo:
            needed.append("userinfo_endpoint")
        if self.issuer is None:
            found += [((name,), "is required (or issuer, to find it by discovery)")
                      for name in needed if name not in has]
            if self.wants_id_token or mode == "jwt":
                found.append((("issuer",), "is required to check the tokens' iss"))
        if mode == "password":
            if self.id_token is False and not self.userinfo:
                found.append((("userinfo",), "with id_token = false, set userinfo = true: "
                                             "the identity comes from one of them"))
            if self.wants_id_token and "openid" not in self.scope.split():
                found.append((("scope",), "must include \"openid\" to get an ID token"))
            found += [((key,), "is only used with mode = \"introspection\" or \"jwt\"")
                      for key in ("required_scope", "allowed_clients", "match_username")
                      if key in self.model_fields_set]
        else:
            found += [((key,), "is only used with mode = \"password\"")
                      for key in ("id_token", "userinfo", "token_params", "scope")
                      if key in self.model_fields_set]
        if mode == "jwt" and not self.audience:
            found.append((("audience",), "is required with mode = \"jwt\": a token the "
                                         "issuer made for another API must not log in here"))
        return found

"""Log in where the password already lives: the provider's website or portal API.

    [auth]
    type = "website"
    url = "https://portal.example.com/api/login"
    method = "POST"                       # the default; or "GET"
    [auth.json]                           # or [auth.form] / [auth.query], or basic_auth = true
    email = "{login.username}"
    password = "{login.password}"

What the answer means (first match wins):

* 5xx, 429, a timeout, no connection: an outage -> UpstreamUnavailable /
  UpstreamTimeout, counted by this backend's circuit breaker;
* a status in `failure_status` (default [401, 403]): wrong credentials -> None.
  403 is in the default because portals do use it for a refused login; a WAF
  or proxy in front of the portal that answers 403 would then read as a wrong
  password too (take 403 out of failure_status if that can happen);
* any other 4xx (outside `success_status`): the portal refuses this login
  (a name it does not accept, an unknown user) -> None, logged at info with
  the status. Not an outage: one odd name must not open the circuit for all;
* another status outside `success_status` (default: any 2xx, e.g. a redirect
  that is not followed): an outage for this request -> UpstreamUnavailable;
* `success_field` given (dotted path or JSON Pointer): its value differing
  from `success_value` (default true; compared as text, so "true" == true,
  and XML answers work) is wrong credentials -> None; the field ABSENT (or an
  object/list), or a body that does not parse, is an outage ->
  UpstreamUnavailable: an API that changed shape must not tell every user
  "wrong password" (the gateway remembers failed passwords for a while);
* otherwise an Identity: `username_field` (else the name as typed),
  `groups_field`, and `[auth.attributes]` name = path.

Answers the portal gave (any status below 500 but 429, parsable or not) never
count toward the circuit breaker; see bridge.upstream.client. The connection
keys (timeouts, TLS, ready_path, ...) are in bridge.upstream.config.

`{login.password}` may not be in the url path, nor in [query] unless
`allow_password_in_query = true` (the portal's and every proxy's access log
would keep it): prefer [json], [form] or basic_auth.

A name that cannot be sent safely (a "." or ".." path segment, a line break
in a header, a ':' with basic_auth) is a wrong password, without asking.

A login session can be carried into the account-data call, explicitly:
`token_field = "data.token"` puts that value in `{identity.token}` and
`session_cookies = ["PHPSESSID"]` puts "PHPSESSID=..." in `{identity.cookie}`
(for a `Cookie` header of the HTTP source). Both names are reserved when
configured, both are required in a successful answer, and both are masked
in logs like the password. The shared client itself never keeps cookies.
"""

from __future__ import annotations

import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from bridge.auth import Authenticator
from bridge.config import Scalar as ConfigScalar
from bridge.errors import UpstreamUnavailable
from bridge.logs import register_secret
from bridge.mapping import text_of
from bridge.models import Credentials, Identity, Scalar
from bridge.upstream import documents
from bridge.upstream.client import Reply, UpstreamClient
from bridge.upstream.config import DocumentPath, RequestConfig, Statuses
from bridge.upstream.templates import Problem, UnsafeValue, Values

logger = logging.getLogger("bridge.auth.website")

TOKEN, COOKIE = "token", "cookie"


class WebsiteConfig(RequestConfig):
    scopes: ClassVar[tuple[str, ...]] = ("login",)

    method: Literal["GET", "POST"] = "POST"
    basic_auth: bool = False
    success_status: Statuses = Field(default_factory=lambda: list(range(200, 300)))
    failure_status: Statuses = Field(default_factory=lambda: [401, 403])
    success_field: DocumentPath | None = None
    success_value: ConfigScalar = True
    username_field: DocumentPath | None = None
    groups_field: DocumentPath | None = None
    attributes: dict[str, DocumentPath] = {}
    token_field: DocumentPath | None = None
    session_cookies: list[str] = []

    def _problems(self) -> list[Problem]:
        found = super()._problems()
        if "success_value" in self.model_fields_set and self.success_field is None:
            found.append((("success_value",), "needs success_field"))
        overlap = set(self.success_status) & set(self.failure_status)
        if overlap:
            found.append((("failure_status",), f"overlaps success_status: {sorted(overlap)}"))
        reserved = {"username": "username_field"}
        if self.token_field is not None:
            reserved[TOKEN] = "token_field"
        if self.session_cookies:
            reserved[COOKIE] = "session_cookies"
        found += [(("attributes", name), f"'{name}' is set by {reserved[name]}")
                  for name in sorted(self.attributes.keys() & reserved.keys())]
        return found


class WebsiteAuthenticator(Authenticator):
    Config = WebsiteConfig

    def __init__(self, config: WebsiteConfig) -> None:
        super().__init__(config)
        self.request = config.template()
        self.upstream = UpstreamClient(f"website login {self.request.host}",
                                       self.request.url.origin, config)
        self.basic_auth = config.basic_auth
        self.success_status = frozenset(config.success_status)
        self.failure_status = frozenset(config.failure_status)
        self.success_field = config.success_field
        self.success_value: Scalar = config.success_value
        self.username_field = config.username_field
        self.groups_field = config.groups_field
        self.attributes = dict(config.attributes)
        self.token_field = config.token_field
        self.session_cookies = tuple(config.session_cookies)
        # Older files' per-upstream breaker keys: settings for this backend's one breaker.
        self.breaker_failures: int | None = config.breaker_failures
        self.breaker_cooldown: float | None = config.breaker_cooldown

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    async def ready(self) -> None:
        await self.upstream.ready()

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        auth = None
        if self.basic_auth:
            if ":" in credentials.username:
                return None  # HTTP Basic cannot carry it: no such user can log in
            auth = httpx.BasicAuth(credentials.username, credentials.password)
        try:
            prepared = self.request.prepare(Values(credentials))
        except UnsafeValue as exc:
            # A name that cannot be sent safely cannot belong to anyone: not sent at all.
            logger.info("%s: login not sent: %s", self.upstream.name, exc)
            return None
        return await self.upstream.call(
            prepared, lambda reply: self._outcome(reply, credentials), auth)

    def _outcome(self, reply: Reply, credentials: Credentials) -> Identity | None:
        name = self.upstream.name
        if reply.status in self.failure_status:
            return None
        if reply.status not in self.success_status:
            if 400 <= reply.status < 500:  # 429 never gets here: it is an outage
                logger.info("%s: HTTP %d for a login, taken as invalid credentials",
                            name, reply.status)
                return None
            raise UpstreamUnavailable(f"{name}: unexpected HTTP {reply.status} for a login")
        wants_body = (self.success_field or self.username_field or self.groups_field
                      or self.attributes or self.token_field)
        document = reply.document() if wants_body else None
        if self.success_field is not None:
            value = documents.select(document, self.success_field)
            if value is documents.MISSING or isinstance(value, dict | list):
                raise UpstreamUnavailable(f"{name}: HTTP {reply.status} without success_field "
                                          f"{self.success_field!r} (has the API changed?)")
            found = documents.scalar(value)
            if found is None or text_of(found) != text_of(self.success_value):
                return None
        username = credentials.username
        if self.username_field is not None:
            value = documents.scalar(documents.select(document, self.username_field))
            if value is None or isinstance(value, bool) or text_of(value) == "":
                raise UpstreamUnavailable(f"{name}: successful login without "
                                          f"username_field {self.username_field!r}")
            username = text_of(value)
        attributes: dict[str, Scalar] = {}
        for attribute, path in self.attributes.items():
            value = documents.scalar(documents.select(document, path))
            if value is not None:
                attributes[attribute] = value  # absent: the mapping's default applies
        if self.token_field is not None:
            token = documents.select(document, self.token_field)
            if not isinstance(token, str) or not token:
                raise UpstreamUnavailable(f"{name}: successful login without "
                                          f"token_field {self.token_field!r}")
            register_secret(token)
            attributes[TOKEN] = token
        if self.session_cookies:
            attributes[COOKIE] = self._cookie(reply)
        return Identity(username, attributes, self._groups(document))

    def _groups(self, document: Any) -> frozenset[str]:
        if self.groups_field is None:
            return frozenset()
        value = documents.select(document, self.groups_field)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return frozenset()
        return frozenset(text_of(v) for v in value if isinstance(v, str | int))

    def _cookie(self, reply: Reply) -> str:
        jar: dict[str, str] = {}
        for header in reply.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(header)
            except CookieError:
                continue
            for morsel in parsed.values():
                if morsel.key in self.session_cookies:
                    jar[morsel.key] = morsel.coded_value
        missing = [c for c in self.session_cookies if c not in jar]
        if missing:
            raise UpstreamUnavailable(f"{self.upstream.name}: successful login without the "
                                      f"session cookie(s) {', '.join(missing)}")
        for value in jar.values():
            register_secret(value)
        return "; ".join(f"{k}={jar[k]}" for k in self.session_cookies)

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
  UpstreamTimeout, counted by the circuit breaker;
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
count toward the circuit breaker; see bridge.upstream.http.

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
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from bridge.auth import Authenticator
from bridge.config import Section, describe
from bridge.errors import UpstreamUnavailable
from bridge.logs import register_secret
from bridge.models import Credentials, Identity, Scalar
from bridge.upstream import documents
from bridge.upstream.documents import read_path, read_paths
from bridge.upstream.http import Reply, Upstream, read_statuses
from bridge.upstream.templates import RequestTemplate, UnsafeValue, Values, text_of

logger = logging.getLogger("bridge.auth.website")

TOKEN, COOKIE = "token", "cookie"


class WebsiteAuthenticator(Authenticator):
    def __init__(
        self,
        request: RequestTemplate,
        upstream: Upstream,
        *,
        basic_auth: bool = False,
        success_status: frozenset[int] = frozenset(range(200, 300)),
        failure_status: frozenset[int] = frozenset({401, 403}),
        success_field: str | None = None,
        success_value: Scalar = True,
        username_field: str | None = None,
        groups_field: str | None = None,
        attributes: Mapping[str, str] | None = None,
        token_field: str | None = None,
        session_cookies: tuple[str, ...] = (),
    ) -> None:
        self.request = request
        self.upstream = upstream
        self.basic_auth = basic_auth
        self.success_status = success_status
        self.failure_status = failure_status
        self.success_field = success_field
        self.success_value = success_value
        self.username_field = username_field
        self.groups_field = groups_field
        self.attributes = dict(attributes or {})
        self.token_field = token_field
        self.session_cookies = session_cookies

    @classmethod
    def from_config(cls, cfg: Section) -> WebsiteAuthenticator:
        request = RequestTemplate.from_config(cfg, ("login",), default_method="POST")
        upstream = Upstream.from_config(cfg, "website login", request.url)
        success_field = read_path(cfg, "success_field")
        success_value = cfg.raw("success_value", True)
        if not isinstance(success_value, str | int | bool):
            cfg.problem("success_value", f"expected text, a number or true/false, "
                                         f"received {describe(success_value)}")
        if "success_value" in cfg and success_field is None:
            cfg.problem("success_value", "needs success_field")
        success = read_statuses(cfg, "success_status", tuple(range(200, 300)))
        failure = read_statuses(cfg, "failure_status", (401, 403))
        if success & failure:
            cfg.problem("failure_status", f"overlaps success_status: {sorted(success & failure)}")
        attributes = read_paths(cfg, "attributes")
        token_field = read_path(cfg, "token_field")
        cookies = tuple(cfg.list_str("session_cookies", []))
        reserved = {"username": "username_field"}
        if token_field is not None:
            reserved[TOKEN] = "token_field"
        if cookies:
            reserved[COOKIE] = "session_cookies"
        for name in attributes.keys() & reserved.keys():
            cfg.problem(f"attributes.{name}", f"'{name}' is set by {reserved[name]}")
        return cls(
            request,
            upstream,
            basic_auth=cfg.bool("basic_auth", False),
            success_status=success,
            failure_status=failure,
            success_field=success_field,
            success_value=success_value,
            username_field=read_path(cfg, "username_field"),
            groups_field=read_path(cfg, "groups_field"),
            attributes=attributes,
            token_field=token_field,
            session_cookies=cookies,
        )

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

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

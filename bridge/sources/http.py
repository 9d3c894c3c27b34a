"""SIP accounts from the provider's HTTP API (billing system, PBX panel, CRM).

    [source]
    type = "http"
    url = "https://billing.example.com/v1/customers/{identity.customer_id}/sip-accounts"
    method = "GET"                    # or "POST" with [source.json] / [source.form]
    [source.query]                    # and [source.headers]: see bridge.upstream.templates
    login = "{identity.username}"
    accounts_path = "data.accounts"   # "" (default): the whole answer
    [source.fields]                   # optional: field = path inside each account
    sip_user = "sip.username"
    [source.auth]                     # optional: how the gateway itself logs in
    type = "bearer"                   # token / token_env / token_file

What the answer means: a status in `not_found_status` (default [404]) is "no
account"; 2xx is parsed (JSON, or XML, see bridge.upstream.documents); 5xx,
429, timeouts and connection failures are an outage (503, counted by the
circuit breaker); any other 4xx (401/403: our credentials or the user's
session were refused; 400/422: the API does not accept this request) is an
InternalError, a 500 for this user that the breaker does not count, so one
user the API refuses never shuts everyone out; another status (an unfollowed
redirect) or a body that does not parse is a 503 for this request, also not
counted. At `accounts_path` a list is one account per item, an object is one
account, and null or [] is no account; a path that is absent is a malformed answer
(an API that changed shape must not tell every user "no account"). Without
[source.fields], an account's fields are its top-level text, number and
true/false values; with it, exactly the listed ones (absent ones are left
out, so the mapping's defaults apply). A placeholder value that cannot be
placed safely (a "." or ".." path segment, a line break in a header) also
means no account: nothing is sent. One without a value (an identity
attribute the login did not return) is a configuration mismatch: 500.

Authentication towards the API ([source.auth] type = ...):
  "bearer"   token(_env/_file)                    -> Authorization: Bearer ...
  "api_key"  header = "X-API-Key", key(_env/_file)
  "basic"    username, password(_env/_file)
  "oauth2"   client credentials via authlib: token_url, client_id,
             client_secret(_env/_file), scope, token_auth_method
             ("client_secret_basic" or "client_secret_post"); the token is
             cached until 60 s before it expires, and dropped after a 401.
             Token fetches go through the API's circuit breaker: a dead or
             refusing token endpoint opens it like a dead API (503 at once),
             and requests that queued behind a failed fetch share its
             failure instead of fetching again one after the other.
Mutual TLS (client_cert/client_key) and the other connection keys are in
bridge.upstream.http; they combine with any of these.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import warnings
from collections.abc import Generator
from functools import partial
from typing import Any

import httpx

from bridge.breaker import CircuitBreaker
from bridge.config import Section
from bridge.errors import (
    BridgeError,
    InternalError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.mapping import MissingField
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.sources import AccountSource
from bridge.upstream import documents
from bridge.upstream.documents import read_path, read_paths
from bridge.upstream.http import (
    Reply,
    Upstream,
    check_scheme,
    describe_failure,
    read_statuses,
)
from bridge.upstream.templates import HEADER_NAME, RequestTemplate, UnsafeValue, Values

logger = logging.getLogger("bridge.sources.http")

AUTH_TYPES = ("bearer", "api_key", "basic", "oauth2")
OAUTH2_METHODS = ("client_secret_basic", "client_secret_post")


class HeaderAuth(httpx.Auth):
    """One fixed header on every request (bearer token, API key)."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


def _authlib() -> Any:
    """authlib's httpx integration, imported only when OAuth2 is configured.

    Recent authlib prefers the `httpx2` fork and warns when it finds plain
    httpx; we are built on httpx, so the warning is silenced here and a mismatch
    (httpx2 installed) is reported as a configuration problem instead.
    """
    with warnings.catch_warnings():
        importlib.import_module("authlib.deprecate")  # it installs an "always" filter first
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("authlib.integrations.httpx_client")


class OAuth2ClientCredentials:
    """A token from the client credentials grant, fetched through the upstream's own client."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None,
                 method: str) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.method = method
        self._lock: asyncio.Lock | None = None  # made in the running loop, on first use
        self._stale = False
        self._fetches = 0  # fetch attempts that have ended, for requests waiting on the lock
        self._failed: tuple[type[UpstreamError], str] | None = None  # the last one's failure

    def factory(self) -> Any:
        return partial(_authlib().AsyncOAuth2Client, client_id=self.client_id,
                       client_secret=self.client_secret, scope=self.scope,
                       token_endpoint=self.token_url, grant_type="client_credentials",
                       token_endpoint_auth_method=self.method)

    async def auth(self, client: Any, name: str, breaker: CircuitBreaker) -> httpx.Auth:
        """The client's token auth, after fetching a token if there is none or it expired.

        Token requests are bounded by the client's timeouts and the request's
        deadline, and go through `breaker` (the API's): without a token the
        API cannot be used, so a failing token endpoint opens it, and an open
        circuit answers at once instead of trying the endpoint again. A
        request that waited while a fetch failed gets that failure too.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited_for = self._fetches
        async with self._lock:  # one fetch when many requests find the token expired
            if self._fetches != waited_for and self._failed is not None:
                kind, detail = self._failed  # it failed while this request waited:
                raise kind(detail)           # no new fetch, the same answer
            if client.token is None or self._stale or client.token.is_expired():
                try:
                    with breaker.guard():  # CircuitOpen at once while it is open
                        await self._fetch(client, name)
                except UpstreamError as exc:
                    self._failed = (type(exc), exc.detail)
                    self._fetches += 1
                    raise
                self._failed = None
                self._fetches += 1
                self._stale = False
        return client.token_auth

    def invalidate(self) -> None:
        self._stale = True

    async def _fetch(self, client: Any, name: str) -> None:
        """Raise UpstreamError, never chained to httpx/authlib errors (their texts name URLs)."""
        where = f"{name}: token endpoint"
        failure: BridgeError | None = None
        try:
            token = await client.fetch_token(self.token_url, grant_type="client_credentials")
        except _authlib().OAuthError as exc:
            failure = UpstreamUnavailable(f"{where} refused the client: {exc.error}")
        except httpx.TimeoutException as exc:
            failure = UpstreamTimeout(f"{where}: {describe_failure(exc)}")
        except httpx.HTTPStatusError as exc:  # its str() names the URL
            failure = UpstreamUnavailable(f"{where}: HTTP {exc.response.status_code}")
        except httpx.HTTPError as exc:
            failure = UpstreamUnavailable(f"{where}: {describe_failure(exc)}")
        except ValueError:
            failure = UpstreamUnavailable(f"{where}: malformed answer")
        if failure is not None:
            raise failure  # outside the handlers: nothing is chained to it
        if not token.get("access_token"):
            raise UpstreamUnavailable(f"{where}: answer without access_token")
        logger.info("%s: fetched an OAuth2 token (expires in %ss)", name,
                    token.get("expires_in", "?"))


def read_auth(cfg: Section, allow_http: bool) -> httpx.Auth | OAuth2ClientCredentials | None:
    if "auth" not in cfg:
        cfg.mark("auth")
        return None
    table = cfg.table("auth")
    kind = table.str("type", choices=AUTH_TYPES)
    result: httpx.Auth | OAuth2ClientCredentials | None = None
    if kind == "bearer":
        result = HeaderAuth("Authorization", f"Bearer {_header_secret(table, 'token')}")
    elif kind == "api_key":
        header = table.str("header", "X-API-Key", nonempty=True)
        if not HEADER_NAME.fullmatch(header):
            table.problem("header", f"{header!r} is not a valid header name")
        result = HeaderAuth(header, _header_secret(table, "key"))
    elif kind == "basic":
        result = httpx.BasicAuth(table.str("username", nonempty=True),
                                 table.secret("password") or "")
    elif kind == "oauth2":
        token_url = table.str("token_url", nonempty=True)
        try:
            url = httpx.URL(token_url)
            if url.scheme not in ("http", "https") or not url.host:
                raise httpx.InvalidURL("scheme")
            check_scheme(table, "token_url", url, allow_http)
        except httpx.InvalidURL:
            if token_url:
                table.problem("token_url", "must be an http(s):// URL")
        if not issubclass(_authlib().AsyncOAuth2Client, httpx.AsyncClient):
            table.problem("type", "authlib is using httpx2, not httpx: OAuth2 needs them to "
                                  "match (uninstall httpx2 or pin authlib)")
        scope = table.raw("scope", None)
        if isinstance(scope, list):
            scope = " ".join(str(s) for s in scope)
        if scope is not None and not isinstance(scope, str):
            table.problem("scope", "expected text or a list of text")
            scope = None
        result = OAuth2ClientCredentials(
            token_url, table.str("client_id", nonempty=True), table.secret("client_secret") or "",
            scope, table.str("token_auth_method", "client_secret_basic", choices=OAUTH2_METHODS))
    table.done()
    return result


def _header_secret(table: Section, key: str) -> str:
    value = table.secret(key) or ""
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        table.problem(key, "the secret has spaces around it or control characters "
                           "(a stray newline in the file or variable?)")
    return value


class HTTPSource(AccountSource):
    def __init__(
        self,
        request: RequestTemplate,
        upstream: Upstream,
        *,
        accounts_path: str = "",
        fields: dict[str, str] | None = None,
        not_found_status: frozenset[int] = frozenset({404}),
        auth: httpx.Auth | OAuth2ClientCredentials | None = None,
    ) -> None:
        self.request = request
        self.upstream = upstream
        self.accounts_path = accounts_path
        self.fields = dict(fields or {})
        self.not_found_status = not_found_status
        self.auth = auth

    @classmethod
    def from_config(cls, cfg: Section) -> HTTPSource:
        request = RequestTemplate.from_config(cfg, ("identity", "login"))
        upstream = Upstream.from_config(cfg, "http source", request.url)
        not_found = read_statuses(cfg, "not_found_status", (404,))
        if any(200 <= s < 300 or s >= 500 for s in not_found):
            cfg.problem("not_found_status", "must be 3xx or 4xx codes")
        return cls(
            request,
            upstream,
            accounts_path=read_path(cfg, "accounts_path") or "",
            fields=read_paths(cfg, "fields"),
            not_found_status=not_found,
            auth=read_auth(cfg, upstream.settings.allow_http),
        )

    async def start(self) -> None:
        if isinstance(self.auth, OAuth2ClientCredentials):
            await self.upstream.start(self.auth.factory())
        else:
            await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        name = self.upstream.name
        try:
            prepared = self.request.prepare(Values(credentials, identity))
        except UnsafeValue as exc:
            logger.info("%s: request for %r not sent: %s", name, identity.username, exc)
            return []
        except MissingField as exc:
            raise InternalError(f"{name}: placeholder {exc} has no value for user "
                                f"{identity.username!r}") from None
        auth = self.auth
        if isinstance(auth, OAuth2ClientCredentials):
            auth = await auth.auth(self.upstream.client, name, self.upstream.breaker)
        return await self.upstream.call(prepared, partial(self._accounts, identity), auth)

    def _accounts(self, identity: Identity, reply: Reply) -> list[Account]:
        name = self.upstream.name
        if reply.status in self.not_found_status:
            return []
        if not 200 <= reply.status < 300:
            if reply.status == 401 and isinstance(self.auth, OAuth2ClientCredentials):
                self.auth.invalidate()
            if 400 <= reply.status < 500:  # 429 never gets here: it is an outage
                raise InternalError(f"{name}: unexpected HTTP {reply.status} for user "
                                    f"{identity.username!r}")
            raise UpstreamUnavailable(f"{name}: unexpected HTTP {reply.status}")
        document = reply.document()
        found = documents.select(document, self.accounts_path)
        if found is documents.MISSING and \
                documents.select(document, documents.parent(self.accounts_path)) == "":
            found = None  # an empty XML element: <accounts/> has no <account> children
        if found is documents.MISSING:
            raise UpstreamUnavailable(f"{name}: the answer has no accounts_path "
                                      f"{self.accounts_path!r}")
        if found is None or found == "":
            return []
        items = found if isinstance(found, list) else [found]
        if not all(isinstance(item, dict) for item in items):
            raise UpstreamUnavailable(f"{name}: accounts at {self.accounts_path!r} are not "
                                      f"objects")
        return [Account(self._fields(item)) for item in items]

    def _fields(self, item: dict[str, Any]) -> dict[str, Scalar]:
        if not self.fields:
            selected = item
        else:
            selected = {field: documents.select(item, path) for field, path in self.fields.items()}
        fields: dict[str, Scalar] = {}
        for field, value in selected.items():
            scalar = documents.scalar(value)
            if scalar is not None:
                fields[field] = scalar
        return fields

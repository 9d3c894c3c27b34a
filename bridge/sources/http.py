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
backend's circuit breaker); any other 4xx (401/403: our credentials or the user's
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
placed safely (a "." or ".." path segment, a line break in a header) is a
500 (bridge.placeholders.UnsafeValue, logged with the field's name, never
the value), never "no account": nothing is sent. One without a value (an
identity attribute the login did not return) is a configuration mismatch: 500.

Authentication towards the API ([source.auth] type = "bearer", "api_key",
"basic" or "oauth2"): see bridge.upstream.credentials. A dead or refusing
token endpoint is an outage of this source like a dead API. Mutual TLS
(client_cert/client_key) and the other connection keys are in
bridge.upstream.config; they combine with any of these.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator

from bridge.errors import InternalError, UpstreamUnavailable
from bridge.mapping import MissingField
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.sources import AccountSource
from bridge.upstream import documents
from bridge.upstream.client import Reply, UpstreamClient
from bridge.upstream.config import DocumentPath, RequestConfig, Statuses, scheme_problem
from bridge.upstream.credentials import (
    OAuth2Auth,
    OAuth2ClientCredentials,
    ServiceAuthConfig,
    parse_service_auth,
    service_auth,
)
from bridge.upstream.templates import Problem, Values

logger = logging.getLogger("bridge.sources.http")


class HTTPSourceConfig(RequestConfig):
    scopes: ClassVar[tuple[str, ...]] = ("identity", "login")

    accounts_path: DocumentPath = ""
    fields: dict[str, DocumentPath] = {}
    not_found_status: Statuses = Field(default_factory=lambda: [404])
    auth: ServiceAuthConfig | None = None

    _auth = field_validator("auth", mode="plain")(parse_service_auth)

    @field_validator("not_found_status")
    @classmethod
    def _not_found(cls, value: list[int]) -> list[int]:
        if any(200 <= s < 300 or s >= 500 for s in value):
            raise ValueError("must be 3xx or 4xx codes")
        return value

    def _problems(self) -> list[Problem]:
        found = super()._problems()
        if isinstance(self.auth, OAuth2Auth):
            why = scheme_problem(httpx.URL(self.auth.token_url), self.allow_http)
            if why is not None:
                found.append((("auth", "token_url"), why))
        return found


class HTTPSource(AccountSource):
    Config = HTTPSourceConfig

    def __init__(self, config: HTTPSourceConfig) -> None:
        super().__init__(config)
        self.request = config.template()
        self.upstream = UpstreamClient(f"http source {self.request.host}",
                                       self.request.url.origin, config)
        self.accounts_path = config.accounts_path
        self.fields = dict(config.fields)
        self.not_found_status = frozenset(config.not_found_status)
        self.auth = service_auth(config.auth)
        # Older files' per-upstream breaker keys: settings for this backend's one breaker.
        self.breaker_failures: int | None = config.breaker_failures
        self.breaker_cooldown: float | None = config.breaker_cooldown

    async def start(self) -> None:
        if isinstance(self.auth, OAuth2ClientCredentials):
            await self.upstream.start(self.auth.factory())
        else:
            await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    async def ready(self) -> None:
        await self.upstream.ready()

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        name = self.upstream.name
        try:  # an UnsafeValue (a 500) goes up as it is: the request is not sent
            prepared = self.request.prepare(Values(credentials, identity))
        except MissingField as exc:
            raise InternalError(f"{name}: placeholder {exc} has no value for user "
                                f"{identity.username!r}") from None
        auth = self.auth
        if isinstance(auth, OAuth2ClientCredentials):
            auth = await auth.auth(self.upstream.http, name)
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

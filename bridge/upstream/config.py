"""The keys every HTTP upstream's table shares, declared once.

Connection (`ConnectionConfig`, any backend that talks HTTP, an OAuth2 login too):

    connect_timeout = 3.0      # seconds to establish TCP + TLS
    read_timeout = 5.0         # seconds between bytes (also write and pool waits)
    retries = 1                # extra attempts, only when no connection could be made
    max_bytes = 1048576        # larger answers are refused, and not read past the limit
    follow_redirects = false   # true: up to 3 hops, each to the same scheme, host and port
    max_connections = 100      # connections kept open to the upstream
    ca_file = "ca.pem"         # trust this CA bundle instead of the system's trust store
    client_cert = "client.pem" # mutual TLS: certificate (chain) ...
    client_key = "client.key"  # ... and its unencrypted key
    allow_http = false         # plain http:// is only accepted to loopback unless true
    ready_path = "/health"     # readiness check: GET this path (default: connect only)

    breaker_failures = 5       # aliases, for files written when each upstream had its
    breaker_cooldown = 30.0    # own breaker: they now set this backend's one breaker
                               # (the gateway's [breaker] failures / cooldown)

The request (`RequestConfig`): url, method, [query], [headers], [json] or
[form], allow_password_in_query; see bridge.upstream.templates.

Validation reads only the files the table names (a CA bundle or client
certificate that does not load is reported here, as before); the TLS
context used for requests is built again in the backend's start().
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Self

import httpx
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from bridge.config import FilePath, Model, Scalar, problem
from bridge.net import client_tls_context, is_loopback
from bridge.upstream import documents
from bridge.upstream.templates import (
    Problem,
    RequestTemplate,
    URLTemplate,
    compile_json,
    compile_table,
    header_problems,
    is_password,
)
from bridge.upstream.transport import describe_failure

StatusCode = Annotated[int, Field(ge=100, le=599)]
Statuses = Annotated[list[StatusCode], Field(min_length=1)]
"""HTTP status codes, e.g. failure_status = [401, 403]."""


def _document_path(value: str) -> str:
    if (why := documents.check_path(value)) is not None:
        raise problem(why)
    return value


DocumentPath = Annotated[str, AfterValidator(_document_path)]
"""A dotted path ("data.user.name") or a JSON Pointer ("/data/user/name") into an answer."""


def problems(found: Sequence[Problem], title: str) -> ValidationError:
    """Several problems raised at once from one validator, each at its own key path."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=problem(message), loc=where, input=None)
        for where, message in found])


def scheme_problem(url: httpx.URL, allow_http: bool) -> str | None:
    """Passwords and tokens go over TLS, except to a service on this very machine."""
    if url.scheme == "http" and not allow_http and not is_loopback(url.host):
        return (f"plain http:// to {url.host} would send credentials unencrypted; "
                "use https://, or set allow_http = true")
    return None


class ConnectionConfig(Model):
    connect_timeout: float = Field(3.0, ge=0.01, le=60)
    read_timeout: float = Field(5.0, ge=0.01, le=300)
    retries: int = Field(1, ge=0, le=5)
    max_bytes: int = Field(1_048_576, ge=1024, le=64 * 1024 * 1024)
    follow_redirects: bool = False
    max_connections: int = Field(100, ge=1, le=10_000)
    allow_http: bool = False
    ca_file: FilePath | None = None
    client_cert: FilePath | None = None
    client_key: FilePath | None = None
    ready_path: str | None = None
    breaker_failures: int | None = Field(None, ge=0)
    breaker_cooldown: float | None = Field(None, ge=0, le=3600)

    @field_validator("ready_path")
    @classmethod
    def _ready_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(
                c in value for c in "{}#") or any(c.isspace() for c in value)):
            raise problem("must be a literal path starting with '/' (an optional ?query, "
                          "no placeholders)")
        return value

    def ssl_context(self) -> ssl.SSLContext:
        """bridge.net's policy: verification always on, the system's trust store unless
        ca_file replaces it, client_cert/client_key add mutual TLS. Reads the files."""
        return client_tls_context(
            str(self.ca_file) if self.ca_file else None, verify=True,
            client_cert=str(self.client_cert) if self.client_cert else None,
            client_key=str(self.client_key) if self.client_key else None)

    def _problems(self) -> list[Problem]:
        """Cross-key rules; subclasses add theirs, so all are reported in one go."""
        if self.client_key is not None and self.client_cert is None:
            return [(("client_key",), "needs client_cert")]
        ca_file = str(self.ca_file) if self.ca_file else None
        try:
            client_tls_context(ca_file, verify=True)
        except (OSError, ssl.SSLError) as exc:
            return [(("ca_file",), f"cannot load the CA bundle: {describe_failure(exc)}")]
        try:
            self.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            return [(("client_cert",), f"cannot load the certificate and key: "
                                       f"{describe_failure(exc)}")]
        return []

    @model_validator(mode="after")
    def _cross_key_rules(self) -> Self:
        found = self._problems()
        if found:
            raise problems(found, type(self).__name__)
        return self


class RequestConfig(ConnectionConfig):
    """An upstream called with a request template: the login of a website, an account API."""

    scopes: ClassVar[tuple[str, ...]] = ("login",)
    """The placeholders this backend can fill ({login.*}; a source also {identity.*})."""

    url: str = Field(min_length=1)
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, Scalar] = {}
    headers: dict[str, Scalar] = {}
    json_body: dict[str, Any] | None = Field(None, alias="json")
    form: dict[str, Scalar] | None = None
    allow_password_in_query: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            URLTemplate.parse(value, cls.scopes)
        except ValueError as exc:
            raise problem(str(exc)) from None
        return value

    @field_validator("query", "form")
    @classmethod
    def _texts(cls, value: dict[str, Scalar] | None) -> dict[str, Scalar] | None:
        if value is not None:
            _, found = compile_table(value, cls.scopes)
            if found:
                raise problems(found, cls.__name__)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        compiled, found = compile_table(value, cls.scopes)
        found += header_problems(compiled)
        if found:
            raise problems(found, cls.__name__)
        return value

    @field_validator("json_body")
    @classmethod
    def _json(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        found: list[Problem] = []
        compile_json(value, cls.scopes, (), found)
        if found:
            raise problems(found, cls.__name__)
        return value

    def template(self) -> RequestTemplate:
        """The compiled request (validated already: this cannot fail)."""
        query, _ = compile_table(self.query, self.scopes)
        headers, _ = compile_table(self.headers, self.scopes)
        json_body = None if self.json_body is None else compile_json(self.json_body, self.scopes)
        form = None if self.form is None else compile_table(self.form, self.scopes)[0]
        return RequestTemplate(self.method, self.origin_template(), query, headers, json_body,
                               form)

    def origin_template(self) -> URLTemplate:
        return URLTemplate.parse(self.url, self.scopes)

    def _problems(self) -> list[Problem]:
        found = super()._problems()
        if (why := scheme_problem(httpx.URL(self.origin_template().origin),
                                  self.allow_http)) is not None:
            found.append((("url",), why))
        if not self.allow_password_in_query:
            query, _ = compile_table(self.query, self.scopes)
            found += [(("query", name), "{login.password} in the query string ends up in the "
                       "access logs of the server and of every proxy on the way; send it in "
                       "the body ([json] or [form]) or with basic_auth, or set "
                       "allow_password_in_query = true if the server accepts nothing else")
                      for name, parts in query if any(is_password(p) for p in parts)]
        if self.json_body is not None and self.form is not None:
            found.append((("form",), "give either a json or a form body, not both"))
        if self.method == "GET" and (self.json_body is not None or self.form is not None):
            found.append((("method",), "a GET request has no body: use method = \"POST\", "
                                       "or the [query] table"))
        return found

"""How the gateway itself logs in to an upstream: `[source.auth] type = ...`.

    "bearer"   token(_env/_file)                    -> Authorization: Bearer ...
    "api_key"  header = "X-API-Key", key(_env/_file)
    "basic"    username, password(_env/_file)
    "oauth2"   client credentials via authlib: token_url, client_id,
               client_secret(_env/_file), scope, token_auth_method
               ("client_secret_basic" or "client_secret_post"); the token is
               cached until 60 s before it expires, and dropped after a 401.

A token endpoint that fails raises UpstreamError like the API itself would
(the backend's breaker counts it: without a token the API cannot be used),
and requests that queued behind a failed fetch share its failure instead of
fetching again one after the other. `fetch_token` maps authlib's and httpx's
errors once, for any OAuth2 client built on `UpstreamClient` (authlib's
AsyncOAuth2Client as its factory).
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import logging
import typing
import warnings
from collections.abc import Generator
from functools import partial
from typing import Annotated, Any, Literal, Self

import httpx
from pydantic import (
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from bridge.config import Model, Secret, describe, is_secret, problem
from bridge.errors import BridgeError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.upstream.templates import HEADER_NAME
from bridge.upstream.transport import describe_failure

logger = logging.getLogger("bridge.upstream")

def authlib_httpx() -> Any:
    """authlib's httpx integration, imported only when OAuth2 is configured.

    Recent authlib prefers the `httpx2` fork and warns when it finds plain
    httpx; we are built on httpx, so the warning is silenced here and a mismatch
    (httpx2 installed) is reported as a configuration problem instead.
    """
    with warnings.catch_warnings():
        importlib.import_module("authlib.deprecate")  # it installs an "always" filter first
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("authlib.integrations.httpx_client")


def _required_secret(value: str, key: str) -> str | None:
    """Why a header secret is unusable, or None."""
    if not value:
        return f"is required (or {key}_env / {key}_file)"
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return ("the secret has spaces around it or control characters "
                "(a stray newline in the file or variable?)")
    return None


class BearerAuth(Model):
    type: Literal["bearer"]
    token: Secret = ""  # required: checked below, to name KEY_env / KEY_file

    @model_validator(mode="after")
    def _token(self) -> Self:
        if (why := _required_secret(self.token, "token")) is not None:
            raise problem(why, "token")
        return self


class ApiKeyAuth(Model):
    type: Literal["api_key"]
    header: str = Field("X-API-Key", min_length=1)
    key: Secret = ""  # required: checked below, to name KEY_env / KEY_file

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not HEADER_NAME.fullmatch(value):
            raise problem(f"{value!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _key(self) -> Self:
        if (why := _required_secret(self.key, "key")) is not None:
            raise problem(why, "key")
        return self


class BasicAuth(Model):
    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: Secret = ""  # required: checked below, to name KEY_env / KEY_file

    @model_validator(mode="after")
    def _password(self) -> Self:
        if not self.password:
            raise problem("is required (or password_env / password_file)", "password")
        return self


def _scope(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return " ".join(value)
    if isinstance(value, str):
        return value
    raise PydanticCustomError("scalar", "expected text or a list of text, received {value}",
                              {"value": describe(value)})


class OAuth2Auth(Model):
    type: Literal["oauth2"]
    token_url: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: Secret = ""  # required: checked below, to name KEY_env / KEY_file
    scope: Annotated[str, PlainValidator(_scope)] | None = None
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic")  # noqa: S105 (a method name, not a password)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise problem("must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _client(self) -> Self:
        if not self.client_secret:
            raise problem("is required (or client_secret_env / client_secret_file)",
                          "client_secret")
        if not issubclass(authlib_httpx().AsyncOAuth2Client, httpx.AsyncClient):
            raise problem("authlib is using httpx2, not httpx: OAuth2 needs them to match "
                          "(uninstall httpx2 or pin authlib)", "type")
        return self


ServiceAuthConfig = BearerAuth | ApiKeyAuth | BasicAuth | OAuth2Auth
_KINDS: dict[str, type[Model]] = {"bearer": BearerAuth, "api_key": ApiKeyAuth,
                                  "basic": BasicAuth, "oauth2": OAuth2Auth}


def parse_service_auth(value: Any, info: ValidationInfo) -> ServiceAuthConfig | None:
    """The `[auth]` table by its `type`, problems located under it (for a plain validator)."""
    if value is None or isinstance(value, BearerAuth | ApiKeyAuth | BasicAuth | OAuth2Auth):
        return value
    if not isinstance(value, dict):  # not shown: it may well be the token itself
        raise problem("expected a table with a type (the value is not shown)")
    kind = value.get("type")
    if kind not in _KINDS:
        message = ("is required" if kind is None else "expected one of "
                   + ", ".join(map(repr, _KINDS)) + f", received {describe(kind)}")
        raise problem(message, "type")
    cls = _KINDS[kind]
    try:
        model = cls.model_validate(value, context=info.context)
    except ValidationError as exc:
        # The union above hides this table's keys from the did-you-mean: add it here.
        raise ValidationError.from_exception_data(exc.title, [
            _suggested(error, cls) for error in exc.errors(include_url=False)]) from None
    assert isinstance(model, BearerAuth | ApiKeyAuth | BasicAuth | OAuth2Auth)
    return model


_STANDARD = set(typing.get_args(ErrorType))


def _suggested(error: ErrorDetails, model: type[Model]) -> InitErrorDetails:
    """`error` as it was, except that an unknown key names the closest known one."""
    ctx = dict(error.get("ctx") or {})
    kind = error["type"]
    if kind == "extra_forbidden" and error["loc"]:
        keys = set(model.model_fields) - {"type"}
        keys |= {f"{k}{v}" for k, f in model.model_fields.items() if is_secret(f)
                 for v in ("_env", "_file")}
        close = difflib.get_close_matches(str(error["loc"][-1]), sorted(keys), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else " (is it misspelt?)"
        return InitErrorDetails(type=problem("unknown key" + hint), loc=error["loc"],
                                input=None)
    if kind in _STANDARD:
        return InitErrorDetails(type=kind, loc=error["loc"], input=error["input"], ctx=ctx)
    # Ours (config, secret, scalar, path): the same type and text, braces and all.
    template = "{message}" if "message" in ctx else "{_text}"
    return InitErrorDetails(type=PydanticCustomError(kind, template,
                                                     {"_text": error["msg"], **ctx}),
                            loc=error["loc"], input=None)


class HeaderAuth(httpx.Auth):
    """One fixed header on every request (bearer token, API key)."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


async def fetch_token(client: Any, token_url: str, where: str, **params: Any) -> dict[str, Any]:
    """`client.fetch_token(...)` (an authlib client); raise UpstreamError, never chained to
    httpx/authlib errors (their texts name URLs)."""
    failure: BridgeError | None = None
    try:
        token: dict[str, Any] = await client.fetch_token(token_url, **params)
    except authlib_httpx().OAuthError as exc:
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
    return token


class OAuth2ClientCredentials:
    """A token from the client credentials grant, fetched through the upstream's own client."""

    def __init__(self, config: OAuth2Auth) -> None:
        self.token_url = config.token_url
        self.client_id = config.client_id
        self.client_secret = config.client_secret
        self.scope = config.scope
        self.method = config.token_auth_method
        self._lock: asyncio.Lock | None = None  # made in the running loop, on first use
        self._stale = False
        self._fetches = 0  # fetch attempts that have ended, for requests waiting on the lock
        self._failed: tuple[type[UpstreamError], str] | None = None  # the last one's failure

    def factory(self) -> Any:
        return partial(authlib_httpx().AsyncOAuth2Client, client_id=self.client_id,
                       client_secret=self.client_secret, scope=self.scope,
                       token_endpoint=self.token_url, grant_type="client_credentials",
                       token_endpoint_auth_method=self.method)

    async def auth(self, client: Any, name: str) -> httpx.Auth:
        """The client's token auth, after fetching a token if there is none or it expired.

        Token requests are bounded by the client's timeouts and the request's
        deadline. A request that waited while a fetch failed gets that failure
        too, without a fetch of its own.
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
                    token = await fetch_token(client, self.token_url, f"{name}: token endpoint",
                                              grant_type="client_credentials")
                except UpstreamError as exc:
                    self._failed = (type(exc), exc.detail)
                    self._fetches += 1
                    raise
                logger.info("%s: fetched an OAuth2 token (expires in %ss)", name,
                            token.get("expires_in", "?"))
                self._failed = None
                self._fetches += 1
                self._stale = False
        auth: httpx.Auth = client.token_auth
        return auth

    def invalidate(self) -> None:
        self._stale = True


def service_auth(config: ServiceAuthConfig | None) -> httpx.Auth | OAuth2ClientCredentials | None:
    """What the validated `[auth]` table makes (no I/O)."""
    if isinstance(config, BearerAuth):
        return HeaderAuth("Authorization", f"Bearer {config.token}")
    if isinstance(config, ApiKeyAuth):
        return HeaderAuth(config.header, config.key)
    if isinstance(config, BasicAuth):
        return httpx.BasicAuth(config.username, config.password)
    if isinstance(config, OAuth2Auth):
        return OAuth2ClientCredentials(config)
    return None

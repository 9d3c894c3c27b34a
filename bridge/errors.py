"""The exception tree, and the one place that turns a failure into a response.

    BridgeError
    ├── BadRequest              400  the request itself is unusable (missing or odd parameters)
    ├── AuthenticationFailed    401  wrong password or unknown user: one response for both
    ├── NotPermitted            403  valid login, but policy (group, disabled account) says no
    ├── AccountNotFound         404  valid login, but no SIP account to provision
    ├── NotFound                404  no such path
    ├── MethodNotAllowed        405
    ├── RateLimited             429  + Retry-After
    ├── UpstreamError           503  + Retry-After: the phone keeps its configuration
    │   ├── UpstreamUnavailable      refused, reset, DNS, TLS, circuit open, busy
    │   └── UpstreamTimeout          connect/read timeout or request deadline
    └── InternalError           500  a bug or bad data (e.g. it would not validate)

Anything that is not a BridgeError is treated as InternalError. The `detail`
of an exception goes to the log only; the phone sees the configured message
for its class. Details must never contain a password: raise with the
user-facing facts (host, result code), not with the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response

DEFAULT_RETRY_AFTER = 30


class BridgeError(Exception):
    status: int = 500
    key: str = "internal"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class BadRequest(BridgeError):
    status, key = 400, "bad_request"


class AuthenticationFailed(BridgeError):
    status, key = 401, "authentication_failed"


class NotPermitted(BridgeError):
    status, key = 403, "not_permitted"


class AccountNotFound(BridgeError):
    status, key = 404, "account_not_found"


class NotFound(BridgeError):
    status, key = 404, "not_found"


class MethodNotAllowed(BridgeError):
    status, key = 405, "method_not_allowed"


class RateLimited(BridgeError):
    status, key = 429, "rate_limited"


class UpstreamError(BridgeError):
    status, key = 503, "upstream_unavailable"


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    key = "upstream_timeout"


class InternalError(BridgeError):
    status, key = 500, "internal"


DEFAULT_MESSAGES: dict[str, str] = {
    "bad_request": "The provisioning request is incomplete. Enter your username and password.",
    "authentication_failed": "Wrong username or password.",
    "not_permitted": "This account is not allowed to use the app. Contact your administrator.",
    "account_not_found": "No phone account is set up for this user. Contact your administrator.",
    "not_found": "This is not a provisioning address.",
    "method_not_allowed": "This address only answers GET requests.",
    "rate_limited": "Too many attempts. Please wait and try again.",
    "upstream_unavailable": "The service is temporarily unavailable. Please try again later.",
    "upstream_timeout": "The service is temporarily unavailable. Please try again later.",
    "internal": "Provisioning failed because of a server error. Please try again later.",
}


@dataclass(frozen=True)
class ErrorPolicy:
    """What the phone is told for each class, and how soon it may retry."""

    messages: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MESSAGES))
    retry_after: int = DEFAULT_RETRY_AFTER
    challenge: str | None = None  # WWW-Authenticate of a 401 where HTTP Basic is accepted

    def describe(self, exc: BaseException) -> tuple[int, str, dict[str, str]]:
        """Status, message and extra headers for any exception."""
        if not isinstance(exc, BridgeError):
            exc = InternalError()
        headers: dict[str, str] = {}
        retry_after = exc.retry_after
        if retry_after is None and isinstance(exc, UpstreamError):
            retry_after = self.retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, int(retry_after)))
        if self.challenge and isinstance(exc, AuthenticationFailed):
            headers["WWW-Authenticate"] = self.challenge
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = "GET, HEAD"
        return exc.status, self.messages[exc.key], headers

    def response(self, exc: BaseException) -> Response:
        from bridge.zoiper.document import render_error

        status, message, headers = self.describe(exc)
        return XMLResponse(render_error(message), status, headers)


class XMLResponse(Response):
    """Every answer of the gateway carries credentials or says why not: never cache it."""

    media_type = "application/xml; charset=utf-8"

    def __init__(
        self, content: bytes, status_code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        merged = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        merged.update(headers or {})
        super().__init__(content, status_code, merged)

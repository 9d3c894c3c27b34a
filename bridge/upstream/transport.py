"""An httpx transport over aiohttp's connection pool.

Why: httpcore's pool rescans every connection (with a poll() each) for every
waiting request. Measured in the benchmark's scenario (c), that cost ~2 ms of
gateway CPU per upstream call at 64 concurrent requests, eight times a whole
LDAP-only request. aiohttp's pool does the same job for a small fraction of
that. The httpx client above it stays (request building, auth flows, OAuth2
through authlib), so the backends do not change.

What this transport guarantees, deliberately:
* the URL goes out exactly as httpx encoded it (`encoded=True`: no requoting
  that could turn %3D back into '=' or otherwise reshape a path);
* no cookies are kept (the client is shared by every user's requests);
* errors are httpx's, and carry nothing from the request: aiohttp's own
  exception texts contain the full URL (query included, where a password may
  be), so they are dropped, not chained (no __cause__, no __context__). What
  is kept is the secret-free reason, in the message and in `.reason`: the
  aiohttp class plus an errno name ("ECONNREFUSED") or a TLS reason
  ("CERTIFICATE_VERIFY_FAILED") when there is one.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

_DROPPED = {b"content-length", b"transfer-encoding"}  # aiohttp frames the body itself


def failure_reason(exc: BaseException) -> str:
    """An errno name or a TLS reason from `exc` or what it wraps; "" when there is none.

    Only these symbolic names are taken, never an exception's text: texts can
    quote the URL, a header or a piece of the answer.
    """
    seen: BaseException | None = exc
    for _ in range(10):  # a chain is short; a cycle must not hang us
        if seen is None:
            break
        # aiohttp wraps the real TLS error in certificate_error
        seen = getattr(seen, "certificate_error", None) or seen
        if isinstance(seen, ssl.SSLError) and getattr(seen, "reason", None):
            return f"TLS {seen.reason}"
        if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno:
            return errno.errorcode.get(seen.errno, str(seen.errno))
        # aiohttp keeps the underlying socket/TLS error in os_error, not in the chain
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "os_error", None)
    return ""


class Failure(httpx.TransportError):
    """Mixed into every httpx error this transport raises: `reason` is safe to log."""

    reason: str = ""


class ConnectTimeout(Failure, httpx.ConnectTimeout):
    pass


class ReadTimeout(Failure, httpx.ReadTimeout):
    pass


class PoolTimeout(Failure, httpx.PoolTimeout):
    pass


class ConnectError(Failure, httpx.ConnectError):
    pass


class ReadError(Failure, httpx.ReadError):
    pass


class RemoteProtocolError(Failure, httpx.RemoteProtocolError):
    pass


def reason_of(exc: BaseException) -> str:
    """The secret-free reason of an error raised here ("" for any other exception)."""
    return exc.reason if isinstance(exc, Failure) else ""


def describe_failure(exc: BaseException) -> str:
    """The exception class, plus a secret-free reason (errno name, TLS reason) when there is one.

    Errors from the transport carry their reason (their aiohttp cause is not
    kept); for others (a CA file that does not load) it is dug out of the
    exception and what it wraps. Never the exception's text.
    """
    reason = reason_of(exc) or failure_reason(exc)
    return f"{type(exc).__name__} ({reason})" if reason else type(exc).__name__


def _mapped(exc: BaseException) -> httpx.TransportError:
    """aiohttp's error as httpx's, with the secret-free reason only (nothing chained)."""
    kind: type[Failure]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = ConnectTimeout
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        kind = ReadTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        kind = PoolTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = ConnectError
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError
                    | aiohttp.ClientOSError):
        kind = ReadError
    else:
        kind = RemoteProtocolError
    reason = failure_reason(exc)
    name = type(exc).__name__
    mapped = kind(f"{name} ({reason})" if reason else name)
    mapped.reason = reason
    return mapped


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._response.content.iter_chunked(65536)
        while True:
            failure = None
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = _mapped(exc)
            if failure is not None:
                raise failure  # outside the handler: aiohttp's error is not its __context__
            yield chunk

    async def aclose(self) -> None:
        # A fully read body gives the connection back to the pool; otherwise close it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext, max_connections: int,
                 keepalive: float = 30.0) -> None:
        self._ssl = ssl_context
        self._limit = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive,
                                         ssl=self._ssl)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     trust_env=False, auto_decompress=False,
                                     skip_auto_headers=("User-Agent", "Accept",
                                                        "Accept-Encoding"))

    def session(self) -> aiohttp.ClientSession:
        """The pool, opened on first use (inside the running loop); shared with direct calls."""
        if self._session is None:
            self._session = self._open()
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()  # inside the running loop
        timeout = request.extensions.get("timeout", {})
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in request.headers.raw if k.lower() not in _DROPPED]
        body = await request.aread()
        failure = None
        try:
            response = await self._session.request(
                request.method, URL(str(request.url), encoded=True), headers=headers,
                data=body or None, allow_redirects=False, compress=None,
                timeout=aiohttp.ClientTimeout(sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read"),
                                              connect=timeout.get("pool")),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = _mapped(exc)
        if failure is not None:
            raise failure  # outside the handler: aiohttp's error is not its __context__
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1", "replace")},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


map_failure = _mapped  # for callers that use the session directly (bridge.upstream.client)

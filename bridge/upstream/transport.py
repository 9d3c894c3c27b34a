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
* errors are httpx's, carrying the exception class, never the URL (a query
  string may hold a credential); the aiohttp error stays as `__cause__`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

_DROPPED = {b"content-length", b"transfer-encoding"}  # aiohttp frames the body itself


def _mapped(exc: Exception) -> httpx.TransportError:
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(name)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(name)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.PoolTimeout(name)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(name)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError
                  | aiohttp.ClientOSError):
        return httpx.ReadError(name)
    return httpx.RemoteProtocolError(name)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(65536):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from exc

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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()  # inside the running loop
        timeout = request.extensions.get("timeout", {})
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in request.headers.raw if k.lower() not in _DROPPED]
        body = await request.aread()
        try:
            response = await self._session.request(
                request.method, URL(str(request.url), encoded=True), headers=headers,
                data=body or None, allow_redirects=False, compress=None,
                timeout=aiohttp.ClientTimeout(sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read"),
                                              connect=timeout.get("pool")),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from exc
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

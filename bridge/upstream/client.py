"""One upstream HTTP service: a client per backend, and every way a call can fail, mapped once.

A backend makes one `UpstreamClient` from its validated table (no I/O), opens
it in start() (one connection pool per backend instance) and closes it in
close(). Any backend that speaks HTTP uses it: the website login, the HTTP
account source, an OAuth2 login (pass authlib's client class as `factory`).

Retries only follow ConnectError / ConnectTimeout: the request never left, so
even a POST is safe to resend; a read timeout, a 4xx or a 5xx is final. They
run inside the request's overall deadline (the request flow's asyncio.timeout
cancels them like anything else).

There is no breaker here: the request flow keeps one per backend. What this
client decides is what that breaker may count. Connection failures,
timeouts, a broken HTTP exchange, 5xx and 429 say the upstream is down for
everyone and are raised as they are; any other complete answer is an answer,
even when it is useless for this user (a 4xx, a body that does not parse, an
answer over max_bytes, a refused redirect): such errors are raised marked
`answered`, so one user the upstream does not like never opens the breaker.

Two ways out, one behaviour. A call with an httpx auth flow (OAuth2 client
credentials, authlib's client) goes through httpx and its aiohttp transport. A
plain call (the account API, a website login, discovery) goes straight to the
same aiohttp pool: the same headers, URL bytes, timeouts, redirect checks,
size limit and error mapping, without building an httpx request and response
around each exchange (measured: about half the client CPU per call, see
BENCHMARKS.md). A redirect to follow is handed over to the httpx path.

Failures become UpstreamTimeout / UpstreamUnavailable with the upstream's name,
the exception class and a secret-free reason (errno name, TLS reason) only:
httpx and aiohttp messages can carry the URL, whose query may hold a password,
so their text never reaches a message, and no exception leaving this package
chains them (__cause__ / __context__), so no logged traceback shows them
either. Cookies are never stored: the client is shared by all users.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import aiohttp
import httpx
from yarl import URL

from bridge.breaker import answered
from bridge.errors import (
    BridgeError,
    InternalError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.upstream import documents
from bridge.upstream.config import ConnectionConfig
from bridge.upstream.templates import Prepared
from bridge.upstream.transport import AiohttpTransport, describe_failure, map_failure

logger = logging.getLogger("bridge.upstream")

T = TypeVar("T")
USER_AGENT = "zoiper-bridge"
MAX_REDIRECTS = 3
RETRY_BACKOFF = 0.1  # seconds, times the attempt number
READY_TIMEOUT = 2.0  # seconds, at most, for a readiness check
_REDIRECTS = frozenset({301, 302, 303, 307, 308})  # httpx's is_redirect, with a Location
_CHUNK = 65536


@dataclass(frozen=True)
class Reply:
    """A complete answer (status below 500), its body read within max_bytes.

    `raw_headers`: httpx's Headers, or the (name, value) byte pairs as received
    (the direct path); `headers` makes an httpx.Headers of those only when asked
    (most replies only need their content type: ~2 % of a full request's CPU).
    """

    upstream: str
    status: int
    raw_headers: httpx.Headers | Sequence[tuple[bytes, bytes]]
    content: bytes

    @functools.cached_property
    def headers(self) -> httpx.Headers:
        raw = self.raw_headers
        return raw if isinstance(raw, httpx.Headers) else httpx.Headers(list(raw))

    @property
    def content_type(self) -> str:
        """The Content-Type value ("" without one), as httpx.Headers.get would give it."""
        raw = self.raw_headers
        if not isinstance(raw, httpx.Headers):
            found = [value for name, value in raw if name.lower() == b"content-type"]
            if not found:
                return ""
            if len(found) == 1 and found[0].isascii():  # else httpx's joining and decoding
                return found[0].decode("ascii")
        return str(self.headers.get("content-type", ""))

    def document(self) -> Any:
        """The body as JSON/XML data; a malformed body is this request's outage.

        (Marked `answered`: the upstream did answer, so no breaker counts it.)
        """
        try:
            return documents.parse(self.content, self.content_type)
        except documents.Malformed as exc:
            why = str(exc)
        raise answered(UpstreamUnavailable(f"{self.upstream}: HTTP {self.status}, {why}"))


class UpstreamClient:
    def __init__(self, name: str, origin: str, config: ConnectionConfig) -> None:
        self.name = name
        self.origin = httpx.URL(origin)
        self.config = config
        self.http: httpx.AsyncClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._transport: AiohttpTransport | None = None
        self._direct = False  # plain calls skip httpx (only with httpx's own client class)
        self._base_headers: list[tuple[str, str]] = []
        self._timeout = aiohttp.ClientTimeout(sock_connect=config.connect_timeout,
                                              sock_read=config.read_timeout,
                                              connect=config.read_timeout)

    def ssl_context(self) -> ssl.SSLContext:
        """Built once (it reads the CA bundle and any client certificate)."""
        if self._ssl is None:
            self._ssl = self.config.ssl_context()
        return self._ssl

    def client_options(self) -> dict[str, Any]:
        """What the httpx client is made with; reads the TLS files (call in start())."""
        c = self.config
        self._transport = AiohttpTransport(self.ssl_context(), c.max_connections)
        return dict(
            timeout=httpx.Timeout(c.read_timeout, connect=c.connect_timeout,
                                  pool=c.read_timeout),
            transport=self._transport,
            follow_redirects=False,  # followed by hand below, one checked hop at a time
            trust_env=False,         # no proxies or .netrc credentials from the environment
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # never keep cookies
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def start(self, factory: Callable[..., httpx.AsyncClient] = httpx.AsyncClient) -> None:
        """Open the connection pool; `factory` lets a caller supply a subclass (OAuth2)."""
        if self.http is None:
            self.http = factory(**self.client_options())
            self._direct = factory is httpx.AsyncClient and self._transport is not None
            # what httpx would send besides the request's own headers (Host: aiohttp's)
            self._base_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                  for k, v in self.http.headers.raw]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None
            self._transport = None
            self._direct = False

    async def call(self, prepared: Prepared, interpret: Callable[[Reply], T],
                   auth: httpx.Auth | None = None) -> T:
        """Send, then `interpret` the reply.

        An UpstreamError from `interpret` (a status that is wrong for this
        user, a body that does not parse) is marked `answered`: the upstream
        answered, so the backend's breaker must not count it.
        """
        reply = await self._exchange(prepared, auth)
        try:
            return interpret(reply)
        except UpstreamError as exc:
            answered(exc)
            raise

    async def ready(self) -> None:
        """Raise UpstreamError unless the upstream can be reached now; quick, never retried.

        With `ready_path`: one GET of it, which must answer below 400. Without:
        a TCP (and TLS, for https) connection to the url's host and port.
        """
        c = self.config
        if c.ready_path is None:
            await self._connect(min(c.connect_timeout, READY_TIMEOUT))
            return
        if self.http is None:
            raise InternalError(f"{self.name}: ready() before start()")
        timeout = httpx.Timeout(min(c.read_timeout, READY_TIMEOUT),
                                connect=min(c.connect_timeout, READY_TIMEOUT))
        request = self.http.build_request("GET", self.origin.join(c.ready_path),
                                          timeout=timeout)
        failure: BridgeError | None = None
        try:
            response = await self.http.send(request, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            failure = self._mapped(exc)
        if failure is not None:
            raise failure  # outside the handler: nothing of the request is chained to it
        await response.aclose()
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"{self.name}: ready_path answered HTTP "
                                      f"{response.status_code}")

    async def _connect(self, timeout: float) -> None:
        host, port = self.origin.host, self.origin.port
        tls = self.origin.scheme == "https"
        if port is None:
            port = 443 if tls else 80
        failure: BridgeError | None = None
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=self.ssl_context() if tls else None,
                    server_hostname=host if tls else None)
            writer.close()
            await writer.wait_closed()
        except TimeoutError:
            failure = UpstreamTimeout(f"{self.name}: ready check: no connection within "
                                      f"{timeout:g}s")
        except OSError as exc:  # ssl.SSLError is one
            failure = UpstreamUnavailable(f"{self.name}: ready check: {describe_failure(exc)}")
        if failure is not None:
            raise failure

    async def _exchange(self, prepared: Prepared, auth: httpx.Auth | None) -> Reply:
        """The reply; raise UpstreamError (an unusable answer is raised marked `answered`)."""
        if self.http is None:
            raise InternalError(f"{self.name}: used before start()")
        hops = MAX_REDIRECTS + 1
        if auth is None and self._direct:
            first = await self._exchange_direct(prepared)
            if isinstance(first, Reply):
                return first
            request, hops = first, MAX_REDIRECTS  # a redirect to follow: httpx from here
        else:
            headers = [(name.encode("ascii"), value) for name, value in prepared.headers]
            request = self.http.build_request(prepared.method, prepared.url, headers=headers,
                                              content=prepared.content)
        for _hop in range(hops):
            response = await self._send(request, auth)
            try:
                if response.status_code >= 500 or response.status_code == 429:
                    raise UpstreamUnavailable(f"{self.name}: HTTP {response.status_code}")
                if not (response.is_redirect and self.config.follow_redirects):
                    content = await self._read(response)
                    return Reply(self.name, response.status_code, response.headers, content)
            finally:
                await response.aclose()
            request = self._next_hop(request, response)
        raise answered(UpstreamUnavailable(f"{self.name}: more than {MAX_REDIRECTS} redirects"))

    async def _exchange_direct(self, prepared: Prepared) -> Reply | httpx.Request:
        """One exchange on the aiohttp pool: the Reply, or the redirect's next request."""
        assert self.http is not None and self._transport is not None
        session = self._transport.session()
        own = {name.lower() for name, _ in prepared.headers}
        headers = [h for h in self._base_headers if h[0].lower() not in own]
        headers += [(name, value.decode("latin-1")) for name, value in prepared.headers]
        response = await self._send_direct(session, prepared, headers)
        try:
            status = response.status
            if status >= 500 or status == 429:
                raise UpstreamUnavailable(f"{self.name}: HTTP {status}")
            if not (status in _REDIRECTS and "location" in response.headers
                    and self.config.follow_redirects):
                content = await self._read_direct(response)
                return Reply(self.name, status, response.raw_headers, content)
            request = self.http.build_request(
                prepared.method, prepared.url, content=prepared.content,
                headers=[(name.encode("ascii"), value) for name, value in prepared.headers])
            return self._next_hop(request, httpx.Response(status, headers=response.raw_headers,
                                                          request=request))
        finally:
            response.release()  # read to the end: back to the pool; else closed

    async def _send_direct(self, session: aiohttp.ClientSession, prepared: Prepared,
                           headers: list[tuple[str, str]]) -> aiohttp.ClientResponse:
        url = URL(str(prepared.url), encoded=True)  # exactly as encoded: no requoting
        attempt = 0
        while True:
            failure: BridgeError | None = None
            try:
                return await session.request(prepared.method, url, headers=headers,
                                             data=prepared.content, allow_redirects=False,
                                             compress=None, timeout=self._timeout)
            except (aiohttp.ClientError, TimeoutError) as exc:
                mapped = map_failure(exc)  # aiohttp's text (the URL) is dropped here
                if isinstance(mapped, httpx.ConnectError | httpx.ConnectTimeout) \
                        and attempt < self.config.retries:
                    attempt += 1
                    logger.warning("%s: %s, retry %d of %d", self.name,
                                   describe_failure(mapped), attempt, self.config.retries)
                else:
                    failure = self._mapped(mapped)
            if failure is not None:
                raise failure  # outside the handler: nothing of the request is chained to it
            await asyncio.sleep(RETRY_BACKOFF * attempt)

    async def _read_direct(self, response: aiohttp.ClientResponse) -> bytes:
        return await self._bounded(response.headers.get("content-length", ""),
                                   response.content.iter_chunked(_CHUNK),
                                   (aiohttp.ClientError, TimeoutError), map_failure)

    async def _bounded(self, declared: str, body: AsyncIterator[bytes],
                       errors: tuple[type[BaseException], ...],
                       mapping: Callable[[Any], Exception]) -> bytes:
        """The answer's body, at most max_bytes of it, whichever client reads it."""
        limit = self.config.max_bytes
        if declared.isdigit() and int(declared) > limit:
            raise answered(UpstreamUnavailable(f"{self.name}: answer of {declared} bytes is "
                                               f"over max_bytes = {limit}"))
        chunks: list[bytes] = []
        size = 0
        failure: BridgeError | None = None
        try:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise answered(UpstreamUnavailable(f"{self.name}: answer is over "
                                                       f"max_bytes = {limit}, stopped reading"))
                chunks.append(chunk)
        except errors as exc:
            failure = self._mapped(mapping(exc))
        if failure is not None:
            raise failure  # outside the handler: nothing of the request is chained to it
        return b"".join(chunks)

    async def _send(self, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
        assert self.http is not None
        attempt = 0
        while True:
            failure: BridgeError | None = None
            try:
                return await self.http.send(request, auth=auth, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= self.config.retries:
                    failure = self._mapped(exc)
                else:
                    attempt += 1
                    logger.warning("%s: %s, retry %d of %d", self.name, describe_failure(exc),
                                   attempt, self.config.retries)
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                failure = self._mapped(exc)
            if failure is not None:
                raise failure  # outside the handler: nothing of the request is chained to it
            await asyncio.sleep(RETRY_BACKOFF * attempt)

    async def _read(self, response: httpx.Response) -> bytes:
        return await self._bounded(response.headers.get("content-length", ""),
                                   response.aiter_bytes(), (httpx.HTTPError, httpx.StreamError),
                                   lambda exc: exc)

    def _next_hop(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        assert self.http is not None
        location = response.headers.get("location")
        url: httpx.URL | None = None
        if location is not None:
            try:
                url = request.url.join(location)
            except httpx.InvalidURL:
                url = None
        if url is None:
            raise answered(UpstreamUnavailable(f"{self.name}: HTTP {response.status_code} "
                                               "without a usable Location"))
        if (url.scheme, url.host, url.port) != (self.origin.scheme, self.origin.host,
                                                self.origin.port):
            # Only the host is named: the Location may carry anything in its query.
            raise answered(UpstreamUnavailable(f"{self.name}: redirect to another host "
                                               f"refused ({url.scheme}://{url.host})"))
        headers = httpx.Headers(request.headers)
        del headers["host"]
        method, content = request.method, request.content
        if response.status_code == 303 or (response.status_code in (301, 302)
                                           and method == "POST"):
            method, content = "GET", b""
            for name in ("content-length", "content-type", "transfer-encoding"):
                headers.pop(name, None)
        return self.http.build_request(method, url, headers=headers, content=content or None)

    def _mapped(self, exc: Exception) -> BridgeError:
        """Class and secret-free reason only: httpx texts can name the URL."""
        what = describe_failure(exc)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"{self.name}: {what}")
        if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol
                      | httpx.InvalidURL | httpx.StreamError):
            return InternalError(f"{self.name}: {what}, the request could not be sent")
        return UpstreamUnavailable(f"{self.name}: {what}")

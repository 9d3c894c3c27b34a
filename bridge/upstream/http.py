"""One upstream HTTP service: a shared client, and every way a call can fail, mapped once.

Keys read from the backend's table (next to url, method, ...):

    connect_timeout = 3.0      # seconds to establish TCP + TLS
    read_timeout = 5.0         # seconds between bytes (also write and pool waits)
    retries = 1                # extra attempts, only when no connection could be made
    max_bytes = 1048576        # larger answers are refused, and not read past the limit
    follow_redirects = false   # true: up to 3 hops, each to the same scheme, host and port
    ca_file = "ca.pem"         # trust this CA bundle instead of the system's trust store
    client_cert = "client.pem" # mutual TLS: certificate (chain) ...
    client_key = "client.key"  # ... and its unencrypted key
    allow_http = false         # plain http:// is only accepted to loopback unless true
    breaker_failures = 5       # consecutive failures that open the circuit (0 = never)
    breaker_cooldown = 30.0    # seconds before one probe may go through

Retries only follow ConnectError / ConnectTimeout: the request never left, so
even a POST is safe to resend; a read timeout, a 4xx or a 5xx is final. They
run inside the request's overall deadline (the Provisioner's asyncio.timeout
cancels them like anything else).

The circuit breaker judges whether the upstream is up, not what it says about
one user: connection failures, timeouts, a broken HTTP exchange, 5xx and 429
count as failures; any other complete answer is a success for the breaker,
even when it is useless for this user (a 4xx, a body that does not parse, an
answer over max_bytes, a refused redirect). One user the upstream does not
like must never get everyone a CircuitOpen.

Failures become UpstreamTimeout / UpstreamUnavailable with the upstream's name,
the exception class and a secret-free reason (errno name, TLS reason) only:
httpx and aiohttp messages can carry the URL, whose query may hold a password,
so their text never reaches a message, and no exception leaving this package
chains them (__cause__ / __context__), so no logged traceback shows them
either. Cookies are never stored: the client is shared by all users.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx

from bridge.breaker import CircuitBreaker, answered
from bridge.config import Section, describe
from bridge.errors import (
    BridgeError,
    InternalError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.net import client_tls_context, is_loopback
from bridge.upstream import documents
from bridge.upstream.templates import Prepared, URLTemplate
from bridge.upstream.transport import AiohttpTransport, failure_reason, reason_of

logger = logging.getLogger("bridge.upstream")

T = TypeVar("T")
USER_AGENT = "zoiper-bridge"
MAX_REDIRECTS = 3
RETRY_BACKOFF = 0.1  # seconds, times the attempt number


@dataclass(frozen=True)
class Reply:
    """A complete answer (status below 500), its body read within max_bytes."""

    upstream: str
    status: int
    headers: httpx.Headers
    content: bytes

    def document(self) -> Any:
        """The body as JSON/XML data; a malformed body is an outage, not a result.

        (Raised from the backend's interpretation, it is not counted by the
        circuit breaker: the upstream did answer.)
        """
        try:
            return documents.parse(self.content, self.headers.get("content-type", ""))
        except documents.Malformed as exc:
            why = str(exc)
        raise answered(UpstreamUnavailable(f"{self.upstream}: HTTP {self.status}, {why}"))


@dataclass(frozen=True)
class HTTPSettings:
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    retries: int = 1
    max_bytes: int = 1_048_576
    follow_redirects: bool = False
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    allow_http: bool = False
    max_connections: int = 100  # connections kept open to the upstream
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_config(cls, cfg: Section, url: URLTemplate) -> HTTPSettings:
        d = cls()
        settings = cls(
            connect_timeout=cfg.float("connect_timeout", d.connect_timeout, min=0.01, max=60),
            read_timeout=cfg.float("read_timeout", d.read_timeout, min=0.01, max=300),
            retries=cfg.int("retries", d.retries, min=0, max=5),
            max_bytes=cfg.int("max_bytes", d.max_bytes, min=1024, max=64 * 1024 * 1024),
            follow_redirects=cfg.bool("follow_redirects", d.follow_redirects),
            breaker_failures=cfg.int("breaker_failures", d.breaker_failures, min=0),
            breaker_cooldown=cfg.float("breaker_cooldown", d.breaker_cooldown, min=0, max=3600),
            allow_http=cfg.bool("allow_http", d.allow_http),
            max_connections=cfg.int("max_connections", d.max_connections, min=1, max=10_000),
            ssl_context=tls_context(cfg),
        )
        check_scheme(cfg, "url", httpx.URL(url.origin), settings.allow_http)
        return settings


def read_statuses(cfg: Section, key: str, default: tuple[int, ...]) -> frozenset[int]:
    value = cfg.raw(key, None)
    if value is None:
        return frozenset(default)
    if not (isinstance(value, list) and value
            and all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599
                    for v in value)):
        cfg.problem(key, f"expected a list of HTTP status codes, received {describe(value)}")
        return frozenset(default)
    return frozenset(value)


def tls_context(cfg: Section) -> ssl.SSLContext | None:
    """bridge.net's policy: verification always on, the system's trust store unless
    ca_file replaces it, client_cert/client_key add mutual TLS."""
    paths = {key: cfg.path_value(key, None) for key in ("ca_file", "client_cert", "client_key")}
    given = {key: path for key, path in paths.items() if key in cfg}
    if "client_key" in given and "client_cert" not in given:
        cfg.problem("client_key", "needs client_cert")
        return None
    if not all(path.is_file() for path in given.values()):
        return None  # path_value has reported it
    files = {key: str(path) for key, path in given.items()}
    ca_file = files.get("ca_file")
    try:
        context = client_tls_context(ca_file, verify=True)
    except (OSError, ssl.SSLError) as exc:
        cfg.problem("ca_file", f"cannot load the CA bundle: {describe_failure(exc)}")
        return None
    if "client_cert" in given:
        try:
            context = client_tls_context(ca_file, verify=True, client_cert=files["client_cert"],
                                         client_key=files.get("client_key"))
        except (OSError, ssl.SSLError) as exc:
            cfg.problem("client_cert", f"cannot load the certificate and key: "
                                       f"{describe_failure(exc)}")
    return context


def check_scheme(cfg: Section, key: str, url: httpx.URL, allow_http: bool) -> None:
    """Passwords and tokens go over TLS, except to a service on this very machine."""
    if url.scheme == "http" and not allow_http and not is_loopback(url.host):
        cfg.problem(key, f"plain http:// to {url.host} would send credentials unencrypted; "
                         "use https://, or set allow_http = true")


def describe_failure(exc: BaseException) -> str:
    """The exception class, plus a secret-free reason (errno name, TLS reason) when there is one.

    Errors from the transport carry their reason (their aiohttp cause is not
    kept); for others (a CA file that does not load) it is dug out of the
    exception and what it wraps. Never the exception's text.
    """
    reason = reason_of(exc) or failure_reason(exc)
    return f"{type(exc).__name__} ({reason})" if reason else type(exc).__name__


class Upstream:
    def __init__(self, name: str, origin: str, settings: HTTPSettings) -> None:
        self.name = name
        self.origin = httpx.URL(origin)
        self.settings = settings
        self.breaker = CircuitBreaker(name, settings.breaker_failures, settings.breaker_cooldown)
        self.client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, cfg: Section, label: str, url: URLTemplate) -> Upstream:
        settings = HTTPSettings.from_config(cfg, url)
        return cls(f"{label} {url.host}", url.origin, settings)

    def client_options(self) -> dict[str, Any]:
        s = self.settings
        return dict(
            timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout,
                                  pool=s.read_timeout),
            transport=AiohttpTransport(
                s.ssl_context or client_tls_context(verify=True),
                s.max_connections),
            follow_redirects=False,  # followed by hand below, one checked hop at a time
            trust_env=False,         # no proxies or .netrc credentials from the environment
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # never keep cookies
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def start(self, factory: Callable[..., httpx.AsyncClient] = httpx.AsyncClient) -> None:
        """Open the shared client; `factory` lets a caller supply a subclass (OAuth2)."""
        self.client = factory(**self.client_options())

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def call(self, prepared: Prepared, interpret: Callable[[Reply], T],
                   auth: httpx.Auth | None = None) -> T:
        """Send under the circuit breaker, then `interpret` the reply.

        The breaker counts only what says the upstream is down for everyone
        (no connection, a timeout, a broken exchange, 5xx, 429). An answer it
        gave is a success for the breaker, whatever `interpret` makes of it:
        an UpstreamError from `interpret` (a status that is wrong for this
        user, a body that does not parse) is marked `answered`, so the
        gateway's own breaker does not count it either.
        """
        with self.breaker.guard():
            reply = await self._exchange(prepared, auth)
        try:
            return interpret(reply)
        except UpstreamError as exc:
            answered(exc)
            raise

    async def _exchange(self, prepared: Prepared, auth: httpx.Auth | None) -> Reply:
        """The reply; raise UpstreamError (an unusable answer is raised marked `answered`)."""
        if self.client is None:
            raise InternalError(f"{self.name}: used before start()")
        request = self.client.build_request(prepared.method, prepared.url,
                                            headers=prepared.headers, content=prepared.content)
        for _hop in range(MAX_REDIRECTS + 1):
            response = await self._send(request, auth)
            try:
                if response.status_code >= 500 or response.status_code == 429:
                    raise UpstreamUnavailable(f"{self.name}: HTTP {response.status_code}")
                if not (response.is_redirect and self.settings.follow_redirects):
                    content = await self._read(response)
                    return Reply(self.name, response.status_code, response.headers, content)
            finally:
                await response.aclose()
            request = self._next_hop(request, response)
        raise answered(UpstreamUnavailable(f"{self.name}: more than {MAX_REDIRECTS} redirects"))

    async def _send(self, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
        assert self.client is not None
        attempt = 0
        while True:
            failure: BridgeError | None = None
            try:
                return await self.client.send(request, auth=auth, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= self.settings.retries:
                    failure = self._mapped(exc)
                else:
                    attempt += 1
                    logger.warning("%s: %s, retry %d of %d", self.name, describe_failure(exc),
                                   attempt, self.settings.retries)
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                failure = self._mapped(exc)
            if failure is not None:
                raise failure  # outside the handler: nothing of the request is chained to it
            await asyncio.sleep(RETRY_BACKOFF * attempt)

    async def _read(self, response: httpx.Response) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise answered(UpstreamUnavailable(f"{self.name}: answer of {declared} bytes is "
                                               f"over max_bytes = {limit}"))
        chunks: list[bytes] = []
        size = 0
        failure: BridgeError | None = None
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise answered(UpstreamUnavailable(f"{self.name}: answer is over "
                                                       f"max_bytes = {limit}, stopped reading"))
                chunks.append(chunk)
        except (httpx.HTTPError, httpx.StreamError) as exc:
            failure = self._mapped(exc)
        if failure is not None:
            raise failure  # outside the handler: nothing of the request is chained to it
        return b"".join(chunks)

    def _next_hop(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        assert self.client is not None
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
        return self.client.build_request(method, url, headers=headers, content=content or None)

    def _mapped(self, exc: Exception) -> BridgeError:
        """Class and secret-free reason only: httpx texts can name the URL."""
        what = describe_failure(exc)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"{self.name}: {what}")
        if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol
                      | httpx.InvalidURL | httpx.StreamError):
            return InternalError(f"{self.name}: {what}, the request could not be sent")
        return UpstreamUnavailable(f"{self.name}: {what}")

"""The HTTP listener: uvicorn's httptools protocol, bounded for the open internet.

uvicorn alone keeps a connection that trickles its headers (or sends nothing)
forever, buffers a request head of any size, answers malformed requests with
its own text/plain 400, hands upgrades to a WebSocket stack that logs the
query string, and turns its concurrency limit into a text/plain 503.
`HardenedProtocol` keeps uvicorn's fast path (httptools, the same parser
callbacks, the same response writer) and adds, per connection:

- a deadline for each request head (from the connection's start, or from the
  first byte of the next request) and uvicorn's idle timeout between requests:
  a connection is always either serving a request or counting down;
- bounds on the request target, the header count and the head's size: an
  incomplete head is measured after every read, so a flood is refused after
  one read (uvloop reads at most 256 KiB), never buffered; a complete one once,
  and only when its reads were larger than the bound (the fast path skips it);
- HTTP/1.0 and 1.1 only, no upgrade (WebSocket, h2c), no CONNECT;
- caps on connections per client address and in total, and on requests in flight.

Whatever is refused gets the gateway's XML error document with its 4xx/5xx
status and `Connection: close`, or, when no request ever completed (a
timeout), the connection is simply closed. After a refusal the gateway's side
is shut down at once, but the socket lingers, reading and dropping, until the
client closes (at most header_timeout and a request head's worth of bytes): closed
with the client's request unread, the kernel sends a reset that can destroy
the answer before the client reads it. A phone writes its request as soon as
it is connected, so a 503 at connect time always raced it (the restart storm,
bench/storm.py, saw thousands of resets and no 503). Refusals are logged at
debug level with the client address and a fixed reason, never the request target.
When the gateway serves HTTPS itself, TLS handshakes get the header timeout
too (uvloop's default is 60 s). A response's head leaves in one write with its
body (`_OneWrite`): a worker that dies mid-answer cannot leave a proxy a head alone.
"""

from __future__ import annotations

import asyncio
import functools
import http
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bridge.admission import MIN_ADMITTED, Admission
from bridge.clientaddr import Network, parse_networks
from bridge.errors import DEFAULT_MESSAGES, DEFAULT_RETRY_AFTER
from bridge.metrics import METRICS

logger = logging.getLogger("bridge.listener")

# Never capped per address: a local TLS proxy, health checks.
LOOPBACK: tuple[Network, ...] = tuple(parse_networks(["127.0.0.0/8", "::1/128"]))


@dataclass(frozen=True)
class ListenerSettings:
    """Per worker process. Phones send one short GET with a handful of headers.

    The [server] keys of the same names set these (bridge/settings.py, ServerSettings).
    """

    header_timeout: float = 10.0         # seconds for a request head (and a TLS handshake)
    idle_timeout: float = 10.0           # seconds a kept-alive connection may wait for a request
    max_target_length: int = 8192        # bytes of the request target (path + query): else 414
    max_header_size: int = 32768         # bytes of all header lines together: else 431
    max_headers: int = 100               # header lines: else 431
    max_connections: int = 1000          # open connections (also requests in flight): else 503
    max_queue_time: float = 2.0          # seconds a new request would wait behind those in
                                         # flight, at the rate they finish: else 503; 0 = off
    max_connections_per_address: int = 64   # per client address (IPv6: per /64); 0 = no cap
    connection_cap_exempt: tuple[Network, ...] = LOOPBACK   # plus the trusted proxies

    @classmethod
    def of(cls, table: Any, trusted_proxies: tuple[Network, ...] = ()) -> ListenerSettings:
        """From a validated table carrying attributes of the same names."""
        values = {f.name: getattr(table, f.name) for f in fields(cls)}
        values["connection_cap_exempt"] = (tuple(values["connection_cap_exempt"])
                                           + tuple(trusted_proxies))
        return cls(**values)


def uvicorn_options(
    settings: ListenerSettings,
    messages: Mapping[str, str] = DEFAULT_MESSAGES,
    retry_after: int = DEFAULT_RETRY_AFTER,
    tls: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config`/`uvicorn.run` (picklable: workers get them).

    uvicorn's own `limit_concurrency` stays off: its 503 is text/plain, and the
    protocol enforces the same bound with the XML document. `tls`: the gateway
    serves HTTPS itself, and its event loop bounds handshakes (only then: the
    loop subclass measured a few per cent slower on plain HTTP).
    """
    refusals = _refusals(messages, retry_after)
    options: dict[str, Any] = {
        "http": functools.partial(HardenedProtocol, limits=settings, refusals=refusals),
        "ws": "none",
        "timeout_keep_alive": settings.idle_timeout,
        "limit_concurrency": None,
    }
    if tls:
        options["loop"] = functools.partial(new_event_loop, settings.header_timeout)
    return options


MAX_LINGERING = 4096  # per worker; beyond, closed at once (a reset). Twice the listen backlog
                      # (server.py): a loop late by a second drains a full backlog of refusals
                      # before it reads one client's EOF (a storm lost 4 with 128, 126 with 1,024)
# descriptors beyond the client connections: backends, logs, the listener, lingering refusals
FILE_HEADROOM = 256 + MAX_LINGERING


def raise_file_limit(settings: ListenerSettings) -> str | None:
    """Let a worker hold `max_connections` clients: the soft limit is often 1024.

    Workers inherit the limit; a warning (for the operator) when the hard limit is lower.
    """
    import resource

    needed = settings.max_connections + FILE_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (f"WARNING: open files are limited to {soft}; max_connections = "
                f"{settings.max_connections} needs about {needed} (raise LimitNOFILE)")
    return None


# -- the refusals: our error document, rendered once ---------------------------------------

_KEYS = {400: "bad_request", 405: "method_not_allowed", 414: "bad_request", 431: "bad_request",
         501: "method_not_allowed", 503: "upstream_unavailable", 505: "bad_request"}


def _refusals(messages: Mapping[str, str], retry_after: int) -> dict[int, bytes]:
    from bridge.zoiper.document import render_error

    out: dict[int, bytes] = {}
    for status, key in _KEYS.items():
        body = render_error(messages.get(key, DEFAULT_MESSAGES[key]))
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
                 "content-type: application/xml; charset=utf-8",
                 f"content-length: {len(body)}",
                 "cache-control: no-store",
                 "x-content-type-options: nosniff",
                 "connection: close"]
        if status in (405, 501):
            lines.append("allow: GET, HEAD")
        if status == 503:
            lines.append(f"retry-after: {max(1, int(retry_after))}")
        out[status] = ("\r\n".join(lines) + "\r\n").encode("ascii") + b"\r\n" + body
    return out


class _Refused(Exception):
    def __init__(self, status: int, reason: str, limit: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.limit = limit  # bridge_limit_refusals_total{limit}, for the overload bounds


_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")


def _classify(exc: httptools.HttpParserError, data: bytes) -> _Refused:
    """A parser error as a status. The parser's messages are fixed strings, no request data."""
    if isinstance(exc, httptools.HttpParserCallbackError) and isinstance(exc.__context__,
                                                                         _Refused):
        return exc.__context__
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        # a method the parser does not know; anything else (a TLS hello, noise) is just bad
        return _Refused(501, "unknown method") if _TOKEN.match(data) else _Refused(400, "garbage")
    text = str(exc)
    if "PRI" in text:
        return _Refused(505, "HTTP/2 preface")
    if "HTTP version" in text:
        return _Refused(505, "HTTP version")
    if isinstance(exc, httptools.HttpParserInvalidURLError):
        return _Refused(400, "request target")
    return _Refused(400, "malformed request")


# -- the protocol ---------------------------------------------------------------------------

def address_key(client: tuple[str, int] | None, exempt: tuple[Network, ...]) -> str | None:
    """Whom the per-address cap counts this connection against (None: nobody)."""
    if client is None:
        return None
    try:
        ip = ipaddress.ip_address(client[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if exempt and any(ip in net for net in exempt):
        return None
    if ip.version == 6:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _per_address(server_state: ServerState) -> Counter[str]:
    counts: Counter[str] | None = getattr(server_state, "bridge_per_address", None)
    if counts is None:
        counts = Counter()
        server_state.bridge_per_address = counts  # type: ignore[attr-defined]
    return counts


def _lingering(server_state: ServerState) -> list[int]:
    """The worker's count of refused connections still being read (a one-item list)."""
    count: list[int] | None = getattr(server_state, "bridge_lingering", None)
    if count is None:
        count = [0]
        server_state.bridge_lingering = count  # type: ignore[attr-defined]
    return count


def _admission(server_state: ServerState) -> Admission:
    """The worker's one `Admission`, kept on uvicorn's per-worker ServerState."""
    admission: Admission | None = getattr(server_state, "bridge_admission", None)
    if admission is None:
        admission = Admission()
        server_state.bridge_admission = admission  # type: ignore[attr-defined]
    return admission


class _OneWrite(asyncio.Transport):
    """A request's transport that sends the response head with the body written after it.

    uvicorn writes the head and the body in two writes. A worker killed between them
    (SIGKILL, the OOM killer, a crash; under load the process can be descheduled there)
    left a reverse proxy holding a 200 head it had already passed on: the phone got a
    truncated answer instead of the proxy trying another instance (tests/ops/test_pair.py
    saw it). Written with the body, a document of a few KB reaches the proxy whole or
    not at all, and then the proxy can ask the next instance. The head waits for one
    event-loop turn at most: a HEAD answer or a stream has no body in the same turn.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.transport = transport
        self.loop = loop
        self.head_due = True
        self.held = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.held:
            data, self.held = self.held + data, b""
        elif self.head_due and bytes(data[:10]) != b"HTTP/1.1 1":  # a 100 Continue goes now
            self.head_due = False
            self.held = bytes(data)
            self.loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self.held:
            data, self.held = self.held, b""
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


class HardenedProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ListenerSettings,
        refusals: Mapping[int, bytes],
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.refusals = refusals
        self.limit_concurrency = None  # ours below, with our 503
        self.access_log = False        # uvicorn's access line carries the query string
        self.per_address = _per_address(server_state)
        self.admission = _admission(server_state)
        self.address_key: str | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.in_head = True            # between a request's target and its complete head
        self.head_bytes = 0            # bytes received while in_head (a coarse bound)
        self.read_size = 0             # of the latest read: with head_bytes, bounds a head
        self.line = bytearray()        # a request line still without version, on the slow path
        self.url = b""
        self.linger_timer: asyncio.TimerHandle | None = None  # refused: read until closed

    # connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        key = address_key(self.client, self.limits.connection_cap_exempt)
        cap = self.limits.max_connections_per_address
        if len(self.connections) > self.limits.max_connections:
            self._refuse(_Refused(503, "too many connections", "connections"))
            return
        if key is not None and cap and self.per_address[key] >= cap:
            self._refuse(_Refused(503, "too many connections from this address",
                                  "address_connections"))
            return
        if key is not None:
            self.address_key = key
            self.per_address[key] += 1
        self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address_key is not None:
            self.per_address[self.address_key] -= 1
            if self.per_address[self.address_key] <= 0:
                del self.per_address[self.address_key]
            self.address_key = None
        self._cancel_head_timer()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
            _lingering(self.server_state)[0] -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.linger_timer is not None:  # refused: what the client still sends is dropped,
            self.head_bytes += len(data)   # up to a request head's worth (a flood is cut off)
            if self.head_bytes > self.limits.max_target_length + self.limits.max_header_size:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.read_size = len(data)
        if self.in_head:
            self.head_bytes += self.read_size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # refused in on_headers_complete; never reached
            self._refuse(_Refused(400, "upgrade"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(_classify(exc, data))
            return
        if self.in_head:
            self._partial_head(data)
        elif self.cycle is None or self.cycle.response_complete:
            # bytes that start no request (blank lines, a body nobody reads) do not
            # keep a connection open: the next head is due within the header timeout
            self._arm_head_timer()

    def _partial_head(self, data: bytes) -> None:
        """The slow path: a head still incomplete after a read."""
        limits = self.limits
        if self.head_bytes > limits.max_target_length + limits.max_header_size + 1024:
            self._refuse(_Refused(431, "request head too large"))
            return
        self._arm_head_timer()
        if self.url and self.parser.get_http_version() == "0.0":
            # The request line may have ended without a version (HTTP/0.9 style): the
            # parser would wait for a blank line; we answer at once.
            self.line += data
            del self.line[:-(limits.max_target_length + 64)]
            end = self.line.rfind(self.url) + len(self.url)
            if len(self.url) <= end < len(self.line) and self.line[end] in b"\r\n":
                self._refuse(_Refused(400, "no HTTP version"))
        elif self.line:
            self.line.clear()

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout,
                                                   self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timeout(self) -> None:
        self.head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # finish the answer in flight, then close
            return
        if not self.transport.is_closing():
            logger.debug("%s: closed, no request head within %.1f s",
                         self._peer(), self.limits.header_timeout)
            self.transport.close()

    def _refuse(self, refusal: _Refused) -> None:
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        logger.debug("%s: refused with %d (%s)", self._peer(), refusal.status, refusal.reason)
        if refusal.limit is not None:
            METRICS.limit_refusals[refusal.limit].inc()
        head, _, rest = self.refusals[refusal.status].partition(b"\r\n")
        extra = b"".join(name + b": " + value + b"\r\n"
                         for name, value in self.server_state.default_headers)
        self.transport.write(head + b"\r\n" + extra + rest)
        lingering = _lingering(self.server_state)
        if self.transport.can_write_eof() and lingering[0] < MAX_LINGERING:
            self.transport.write_eof()  # the answer, then our FIN; the client's EOF closes it
            # as long as any client has to send its request: a phone slower than 1 s to
            # write it after connecting (a loaded load generator) got a reset with 1 s
            self.linger_timer = self.loop.call_later(self.limits.header_timeout,
                                                     self.transport.close)
            self.head_bytes = 0
            lingering[0] += 1
            self.connections.discard(self)  # counted in MAX_LINGERING, not max_connections
        else:  # TLS cannot half-close
            self.transport.close()

    def _peer(self) -> str:
        return self.client[0] if self.client else "-"

    # parser callbacks -----------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.in_head = True  # here rather than in on_message_begin: one call fewer
        self.url += url
        if len(self.url) > self.limits.max_target_length:
            raise _Refused(414, "request target too long")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            # "0.9": a request line without a version, and a blank line
            raise _Refused(400, "no HTTP version") if version == "0.9" else _Refused(
                505, "HTTP version")
        if self.parser.should_upgrade():
            if self.parser.get_method() == b"CONNECT":
                raise _Refused(405, "CONNECT")
            raise _Refused(400, "upgrade")
        # Headers are measured here, not one by one: a head that arrived in reads
        # smaller than the bound needs no counting (the fast path), and a larger one
        # was bounded while it arrived (head_bytes) and by one read (256 KiB).
        limits = self.limits
        if len(self.headers) > limits.max_headers or (
                self.head_bytes + self.read_size > limits.max_header_size
                and sum(len(n) + len(v) + 4 for n, v in self.headers) > limits.max_header_size):
            raise _Refused(431, "request headers too large")
        in_flight = len(self.tasks)
        if in_flight >= limits.max_connections:
            raise _Refused(503, "too many requests in flight", "in_flight")
        if in_flight >= MIN_ADMITTED and limits.max_queue_time and not self.admission.admits(
                in_flight, self.server_state.total_requests, self.loop.time(),
                limits.max_queue_time):
            raise _Refused(503, "requests in flight would take too long", "queue_time")
        super().on_headers_complete()
        self.cycle.transport = _OneWrite(self.transport, self.loop)


# -- the event loop: a TLS handshake is bounded like a request head --------------------------

def _loop_class() -> type[asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        return asyncio.SelectorEventLoop
    return uvloop.Loop


class _BoundedHandshakes:
    handshake_timeout = 60.0

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
        return await super().create_server(*args, **kwargs)  # type: ignore[misc]


_LOOP: type[asyncio.AbstractEventLoop] = type(
    "BridgeLoop", (_BoundedHandshakes, _loop_class()), {})


def new_event_loop(handshake_timeout: float) -> asyncio.AbstractEventLoop:
    """uvloop (when installed) whose TLS servers drop a handshake after `handshake_timeout`."""
    loop = _LOOP()
    loop.handshake_timeout = handshake_timeout  # type: ignore[attr-defined]
    return loop

"""LDAP on the event loop: pooled persistent connections, no threads.

Why: a bind through a thread pool costs ~640 µs of CPU (ldap3) and the pool
size caps concurrency; here a bind is one BER message on a connection that
stays open (~20 µs), so a slow directory costs waiting, not threads.

Model (see `AsyncLdapClient`):

- Two pools per client, `settings.pool_size` connections each, opened lazily:
  one for user binds, one for searches bound once as the service account.
  Exactly one operation is in flight per connection (binds must not be
  pipelined, RFC 4511 4.2.1), so throughput against a directory `L` seconds
  away is at most pool_size / L per pool; raise pool_size for slow directories.
  Requests beyond that wait in FIFO order, for at most `settings.timeout`.
- A connection whose operation timed out, was cancelled or saw anything
  unexpected is closed, never reused: its late answer must not become the
  answer to the next request.
- Retry policy: one retry, on a freshly opened connection, only when a pooled
  (previously used) connection turned out dead before any answer to this
  request arrived (EOF/reset/notice of disconnection: the server restarted or
  an idle timeout closed it). Binds are retried too: an unanswered bind left no
  state worth keeping, and the old connection is gone. A dead connection
  noticed while idle is simply replaced. A timeout on a pooled connection is
  never retried; on a new connection that has had no answer yet it is a setup
  failure (below).
- reset_after_bind: a connection a user bound successfully is only ever used
  again for another user bind (the bind pool does nothing else, and a bind
  replaces the identity at once: a failed one leaves it anonymous, RFC 4511
  4.2.1), so it is not reset on release. It goes straight to the next waiting
  bind, or idle; one that stays idle RESET_DELAY seconds is rebound
  anonymously in the background. Nothing but a bind runs under a previous
  user's identity, and an idle connection's rebind is sent RESET_DELAY after
  its last operation (as soon as the loop runs its timers); back-to-back
  logins save the rebind.
- Failover and the service-account hold-back are `failover.Failover` (shared
  with the ldap3 client; the rules are in its docstring). Here: a new
  connection is one `Walk`; setup is TCP, TLS or StartTLS, and the service bind
  on the search pool; a connection is proven (`_Connection.proven`) by its
  first answer, and on an unproven one `_request` turns a timeout or a dropped
  connection into a setup failure and sends the request again on the next
  server of the same walk. User binds (their own pool) are not affected by a
  refused service account.
- TLS: ldaps:// (or TlsMode.LDAPS) from the first byte; StartTLS upgrades the
  same connection with loop.start_tls; a connection is only used once TLS is
  up, so nothing is ever sent in clear text when TLS was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.ldap import protocol as proto
from bridge.ldap.client import (
    SIZE_LIMIT_EXCEEDED,
    UNAVAILABLE_CODES,
    Entry,
    LdapClient,
    LdapError,
    LdapOperationError,
    LdapResult,
    LdapTimeout,
    LdapUnavailable,
    Scope,
    SearchRequest,
    ServerSettings,
    TlsMode,
)
from bridge.ldap.failover import Failover, ServiceTurn, SetupFailed, Skipped, Walk
from bridge.net import client_tls_context

logger = logging.getLogger("bridge.ldap")

__all__ = ["AsyncLdapClient"]

_Encoder = Callable[[int], bytes]  # message id -> one encoded request

RESET_DELAY = 0.005
"""Seconds a connection bound as a user may stay idle before its anonymous rebind
(reset_after_bind): long enough for back-to-back logins to reuse it bound, short
enough that no idle connection keeps a user's identity for longer than a few ms."""


@dataclass(frozen=True, slots=True)
class _Server:
    uri: str  # for messages: scheme://host:port, never user info
    host: str
    port: int
    ldaps: bool


def _parse_uri(uri: str, tls: TlsMode) -> _Server:
    """ldaps:// always means TLS from the first byte; so does TlsMode.LDAPS for ldap:// URIs
    (never clear text when the operator asked for LDAPS)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise ValueError(f"not an ldap:// or ldaps:// URI: {uri!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"LDAP URI without a host: {uri!r}")
    ldaps = scheme == "ldaps" or tls is TlsMode.LDAPS
    port = parts.port or (636 if ldaps else 389)
    shown = f"[{host}]" if ":" in host else host
    return _Server(f"{scheme}://{shown}:{port}", host, port, ldaps)


class _Dropped(LdapUnavailable):
    """The connection died under an operation; `answered`: part of the answer had arrived."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One LDAP connection: a decoder and at most one outstanding request."""

    def __init__(self, server: _Server, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.server = server
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.decoder = proto.Decoder()
        self.closed = False
        self.bound_as_user = False  # needs an anonymous rebind if it stays idle (RESET_DELAY)
        self.idle = False  # in its pool's idle list
        self.reset_at = 0.0  # loop time of the anonymous rebind, if still idle and bound
        self.reset_timer: asyncio.TimerHandle | None = None
        self.proven = False  # the server has answered on it (see failover.py)
        self.entries: list[proto.LdapMessage] = []
        self._next_id = 1
        self._waiter: asyncio.Future[proto.LdapMessage] | None = None
        self._op_id = 0
        self._expect = 0
        self._opname = ""
        self._op_timeout = timeout
        self._deadline = 0.0
        self._answered = False
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except proto.ProtocolError as exc:
            self._drop(LdapUnavailable(f"{self.server.uri}: malformed response ({exc})"))
            return
        for message in messages:
            if self.closed:
                return
            self._dispatch(message)

    def eof_received(self) -> bool:
        self._drop(_Dropped(f"{self.server.uri}: connection closed by the server",
                            self._answered))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        why = f"connection lost ({exc})" if exc else "connection closed"
        self._fail(_Dropped(f"{self.server.uri}: {why}", self._answered))
        self._stop_timer()

    # ---- requests ---------------------------------------------------------------------------
    def take_id(self) -> int:
        mid = self._next_id
        self._next_id = 1 if mid >= proto.MAX_MESSAGE_ID else mid + 1
        return mid

    def send(self, message_id: int, data: bytes, expect: int, opname: str,
             timeout: float | None = None) -> asyncio.Future[proto.LdapMessage]:
        """Write one request; the future gets the final response (entries collect in .entries)."""
        if self.closed or self.transport is None:
            raise _Dropped(f"{self.server.uri}: connection closed")
        loop = self.loop
        waiter = loop.create_future()
        self._waiter = waiter
        self._op_id = message_id
        self._expect = expect
        self._opname = opname
        self._answered = False
        if expect == proto.SEARCH_RESULT_DONE:
            self.entries = []
        # One lazy timer per connection instead of one per request: it is not cancelled
        # when an answer arrives; when it fires it re-arms for the current deadline, if any.
        self._op_timeout = timeout = timeout or self.timeout
        self._deadline = deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._check_deadline)
        self.transport.write(data)
        return waiter

    def abort(self) -> None:
        """Close at once, e.g. after a cancelled request whose answer may still come."""
        self._drop(_Dropped(f"{self.server.uri}: connection discarded"))

    def close(self) -> None:
        """Unbind (when idle) and close gracefully."""
        if self.closed or self.transport is None:
            self.abort()
            return
        if self._waiter is None:
            with contextlib.suppress(Exception):
                self.transport.write(proto.encode_unbind_request(self.take_id()))
        self.closed = True
        self._fail(_Dropped(f"{self.server.uri}: client closed"))
        self._stop_timer()
        self.transport.close()

    # ---- internals --------------------------------------------------------------------------
    def _dispatch(self, m: proto.LdapMessage) -> None:
        if m.message_id != self._op_id or self._waiter is None:
            if m.is_notice_of_disconnection:
                r = m.result or LdapResult(0)
                self._drop(_Dropped(f"{self.server.uri}: notice of disconnection "
                                    f"(result {r.code}: {r.message})", self._answered))
            else:
                self._drop(LdapUnavailable(
                    f"{self.server.uri}: unexpected message id {m.message_id}"))
            return
        self._answered = self.proven = True
        op = m.op
        if op != self._expect:
            if op == proto.SEARCH_RESULT_ENTRY and self._expect == proto.SEARCH_RESULT_DONE:
                self.entries.append(m)
            elif op not in (proto.SEARCH_RESULT_REFERENCE, proto.INTERMEDIATE_RESPONSE):
                self._drop(LdapUnavailable(
                    f"{self.server.uri}: unexpected response 0x{op:02x} to {self._opname}"))
            return
        waiter = self._waiter
        self._waiter = None
        if not waiter.done():
            waiter.set_result(m)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._waiter is None or self.closed:
            return
        if self.loop.time() >= self._deadline:
            self._drop(LdapTimeout(
                f"{self.server.uri}: no answer to {self._opname} within {self._op_timeout:g}s"))
        else:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.reset_timer is not None:
            self.reset_timer.cancel()
            self.reset_timer = None

    def _fail(self, exc: LdapError) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(exc)

    def _drop(self, exc: LdapError) -> None:
        self.closed = True
        self._fail(exc)
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()


class _Pool:
    """At most `size` connections in use; waiters are served first come, first served.

    A released connection is handed straight to the oldest waiter (no wake-up
    race, no re-check); `used` counts slots, including ones whose connection is
    still being opened.
    """

    __slots__ = ("idle", "name", "size", "used", "waiters")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.used = 0
        self.idle: deque[_Connection] = deque()
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()


def _expire_waiter(fut: asyncio.Future[_Connection | None], pool: _Pool, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(LdapTimeout(
            f"no free LDAP {pool.name} connection within {timeout:g}s (all {pool.size} busy: "
            f"throughput is at most pool_size / directory latency; raise pool_size)"))


class AsyncLdapClient(LdapClient):
    """The default `LdapClient`: pure asyncio, pooled persistent connections.

    Errors follow the contract: a bind answered with any code other than
    UNAVAILABLE_CODES is an `LdapResult`; connection trouble, TLS failures and
    an unusable service account are `LdapUnavailable`; no answer in time is
    `LdapTimeout`. Messages name the server URI and result code, never a
    password or request.
    """

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        if not settings.uris:
            raise ValueError("no LDAP server URIs configured")
        if settings.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.failover = Failover([_parse_uri(u, settings.tls) for u in settings.uris],
                                 down_for=settings.down_for, service_dn=settings.service_dn)
        self._budget = settings.connect_timeout + settings.timeout  # per walk, see failover.py
        self._bind_pool = _Pool("bind", settings.pool_size)
        self._search_pool = _Pool("search", settings.pool_size)
        self._conns: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._time_limit = max(1, math.ceil(settings.timeout))

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """No network I/O: connections open on first use, so a down directory cannot stop us."""
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for pool in (self._bind_pool, self._search_pool):
            for conn in pool.idle:
                conn.idle = False
            pool.idle.clear()
            while pool.waiters:
                fut = pool.waiters.popleft()
                if not fut.done():
                    fut.set_exception(LdapUnavailable("LDAP client is closed"))
        conns = list(self._conns)
        self._conns.clear()
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.sleep(0)  # let the transports flush the unbinds

    # ---- operations -------------------------------------------------------------------------
    async def bind(self, dn: str, password: str) -> LdapResult:
        result, _ = await self._bind(dn, password, None)
        return result

    async def bind_and_search(self, dn: str, password: str,
                              request: SearchRequest) -> tuple[LdapResult, list[Entry]]:
        return await self._bind(dn, password, request)

    async def _bind(self, dn: str, password: str,
                    then: SearchRequest | None) -> tuple[LdapResult, list[Entry]]:
        if not password:
            raise ValueError("empty password refused: it would be an unauthenticated bind")
        try:
            name_b, password_b = dn.encode(), password.encode()
        except UnicodeEncodeError:
            raise ValueError("bind DN or password is not valid Unicode") from None
        encode_search = self._search_encoder(then) if then is not None else None
        pool = self._bind_pool
        conn = await self._acquire(pool)
        try:
            message, conn = await self._request(
                pool, conn, lambda mid: proto.encode_bind_request(mid, name_b, password_b),
                proto.BIND_RESPONSE, "bind")
            result = message.result
            assert result is not None
            if result.code in UNAVAILABLE_CODES:
                conn.abort()
                raise LdapUnavailable(f"{conn.server.uri}: bind answered with result "
                                      f"{result.code} ({result.message})")
            # a failed bind leaves the connection anonymous already (RFC 4511 4.2.1)
            conn.bound_as_user = result.code == 0 and self.settings.reset_after_bind
            if result.code != 0 or encode_search is None:
                return result, []
            # as the user, on this connection: no retry (a new one would not be bound)
            try:
                reply = await self._call(conn, encode_search, proto.SEARCH_RESULT_DONE,
                                         "search as the user")
            except BaseException:
                conn.abort()
                raise
            return result, self._search_result(conn, reply)
        finally:
            if conn is not None:
                conn.entries = []
            self._release(pool, conn)

    async def search(
        self,
        base: str,
        scope: Scope,
        filter: str,
        attributes: Sequence[str],
        *,
        size_limit: int = 0,
    ) -> list[Entry]:
        encode = self._search_encoder(SearchRequest(base, scope, filter, attributes, size_limit))
        pool = self._search_pool
        conn = await self._acquire(pool)
        try:
            message, conn = await self._request(pool, conn, encode, proto.SEARCH_RESULT_DONE,
                                                "search")
            return self._search_result(conn, message)
        finally:
            if conn is not None:
                conn.entries = []
            self._release(pool, conn)

    def _search_encoder(self, request: SearchRequest) -> _Encoder:
        """The request, checked and compiled: ValueErrors before any I/O."""
        compiled = proto.compile_filter_cached(request.filter)
        attrs = list(request.attributes)
        scope_value = int(Scope(request.scope))
        size_limit = request.size_limit
        if not 0 <= size_limit <= proto.MAX_MESSAGE_ID:
            raise ValueError(f"size_limit out of range: {size_limit}")
        base, time_limit = request.base, self._time_limit
        return lambda mid: proto.encode_search_request(
            mid, base, scope_value, compiled, attrs, size_limit=size_limit,
            time_limit=time_limit)

    @staticmethod
    def _search_result(conn: _Connection, message: proto.LdapMessage) -> list[Entry]:
        result = message.result
        assert result is not None
        if result.code in UNAVAILABLE_CODES:
            conn.abort()
            raise LdapUnavailable(f"{conn.server.uri}: search answered with result "
                                  f"{result.code} ({result.message})")
        if result.code not in (0, SIZE_LIMIT_EXCEEDED):
            raise LdapOperationError(result, f"search on {conn.server.uri}")
        return [_entry(m) for m in conn.entries]

    # ---- pool -------------------------------------------------------------------------------
    async def _acquire(self, pool: _Pool) -> _Connection | None:
        """A pool slot and, when one is idle and alive, its connection (None: open one)."""
        if self._closed:
            raise LdapUnavailable("LDAP client is closed")
        waiters = pool.waiters
        while waiters and waiters[0].done():  # expired or cancelled waiters
            waiters.popleft()
        if pool.used < pool.size and not waiters:
            pool.used += 1
            return self._idle(pool)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Connection | None] = loop.create_future()
        waiters.append(fut)
        timeout = self.settings.timeout
        timer = loop.call_later(timeout, _expire_waiter, fut, pool, timeout)
        try:
            conn = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(pool, fut.result())  # handed a slot as we were cancelled
            raise
        finally:
            timer.cancel()
        if conn is not None and conn.closed:
            self._conns.discard(conn)
            conn = self._idle(pool)
        return conn

    def _idle(self, pool: _Pool) -> _Connection | None:
        """The most recently released live connection (a bound one saves its rebind)."""
        idle = pool.idle
        while idle:
            conn = idle.pop()
            conn.idle = False  # its pending reset, if any, does nothing now
            if not conn.closed:
                return conn
            self._conns.discard(conn)
        return None

    def _release(self, pool: _Pool, conn: _Connection | None) -> None:
        """Give the slot (and `conn` when it is healthy) to the oldest waiter, or back.

        A connection still bound as a user may go straight to a waiting bind,
        or idle for at most RESET_DELAY (`_defer_reset`): only binds take
        connections from the bind pool, and a bind replaces that identity at
        once. Under load the reset round trip is thus mostly saved.
        """
        if conn is not None and (conn.closed or self._closed):
            self._conns.discard(conn)
            if not conn.closed:
                conn.close()
            conn = None
        waiters = pool.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn if conn is not None else self._idle(pool))
                return
        pool.used -= 1
        if conn is not None:
            conn.idle = True
            pool.idle.append(conn)
            if conn.bound_as_user:
                self._defer_reset(pool, conn)

    def _defer_reset(self, pool: _Pool, conn: _Connection) -> None:
        """Rebind `conn` anonymously if it is still idle RESET_DELAY from now.

        One lazy timer per connection, as for operation deadlines: a timer
        still pending from an earlier release is kept, and re-armed when it
        fires early; no timer is created or cancelled per login under load.
        """
        loop = conn.loop
        conn.reset_at = at = loop.time() + RESET_DELAY
        if conn.reset_timer is None:
            conn.reset_timer = loop.call_at(at, self._reset_if_idle, pool, conn)

    def _reset_if_idle(self, pool: _Pool, conn: _Connection) -> None:
        conn.reset_timer = None
        if not conn.idle or not conn.bound_as_user:
            return  # taken by a bind since (re-armed when released), or reset already
        if conn.closed or self._closed:
            conn.idle = False
            with contextlib.suppress(ValueError):
                pool.idle.remove(conn)
            self._conns.discard(conn)
            return
        if conn.loop.time() < conn.reset_at:  # released again since this timer was set
            conn.reset_timer = conn.loop.call_at(conn.reset_at, self._reset_if_idle, pool, conn)
            return
        # take it out of the idle list into a slot of its own (idle ones never exceed the
        # free slots), so that no bind can get it while the rebind is in flight
        conn.idle = False
        pool.idle.remove(conn)
        pool.used += 1
        self._reset_then_release(pool, conn)

    def _reset_then_release(self, pool: _Pool, conn: _Connection) -> None:
        """Anonymous rebind in the background; the slot comes back when it is answered.

        Nobody waits for it: the reset costs the pool one round trip of
        occupancy, not a user any latency.
        """
        conn.bound_as_user = False
        mid = conn.take_id()
        try:
            waiter = conn.send(mid, proto.encode_bind_request(mid, "", b""), proto.BIND_RESPONSE,
                               "anonymous rebind")
        except LdapError:
            self._release(pool, conn)  # closed: discarded
            return

        def done(fut: asyncio.Future[proto.LdapMessage]) -> None:
            ok = False
            if not fut.cancelled() and fut.exception() is None:
                result = fut.result().result
                ok = result is not None and result.code == 0
            if not ok and not conn.closed:
                logger.warning("LDAP %s: anonymous rebind failed; connection discarded",
                               conn.server.uri)
                conn.abort()
            self._release(pool, conn)

        waiter.add_done_callback(done)

    async def _request(self, pool: _Pool, conn: _Connection | None, encode: _Encoder,
                       expect: int, opname: str) -> tuple[proto.LdapMessage, _Connection]:
        """Send on `conn` (or a new connection) and wait.

        Retried: once on a new connection when the pooled `conn` turns out dead
        before any answer; and on the next server of the walk when a new
        connection fails its first operation before the server ever answered on
        it (a setup failure, see failover.py). Nothing else.
        """
        walk: Walk[_Server] | None = None  # None: `conn` came from the pool
        while True:
            if conn is None:
                if walk is None:
                    walk = self.failover.walk(self._budget)
                conn = await self._open(pool, walk)
            first = walk is not None and not conn.proven
            try:
                mid = conn.take_id()
                timeout = walk.bound(self.settings.timeout) if first and walk is not None else None
                message = await conn.send(mid, encode(mid), expect, opname, timeout)
            except LdapError as exc:
                self._conns.discard(conn)  # closed already: _drop or send refused it
                dead, conn = conn, None
                if first and walk is not None:
                    walk.failed(dead.server, _first_failure(dead, exc))
                    continue
                if walk is None and isinstance(exc, _Dropped) and not exc.answered:
                    logger.debug("LDAP %s: pooled connection was dead (%s); retrying once",
                                 pool.name, exc)
                    walk = self.failover.walk(self._budget)
                    continue
                raise
            except BaseException:
                if not conn.closed:
                    # cancelled (or failed to encode) with the request possibly sent: its
                    # answer could still come and must not meet the next request
                    conn.abort()
                self._conns.discard(conn)
                raise
            if first and walk is not None:
                walk.connected(conn.server)
            return message, conn

    async def _call(self, conn: _Connection, encode: _Encoder, expect: int, opname: str,
                    timeout: float | None = None) -> proto.LdapMessage:
        """One request on a connection being set up (no pool, no retry)."""
        mid = conn.take_id()
        return await conn.send(mid, encode(mid), expect, opname, timeout)

    # ---- connecting -------------------------------------------------------------------------
    async def _open(self, pool: _Pool, walk: Walk[_Server]) -> _Connection:
        """A new connection (service-bound for the search pool) to the walk's next server."""
        if self._closed:
            raise LdapUnavailable("LDAP client is closed")
        loop = asyncio.get_running_loop()
        service = pool is self._search_pool and bool(self.settings.service_dn)
        while (server := walk.next()) is not None:
            try:
                if service:
                    conn = await self._open_service(loop, server, walk)
                else:
                    conn = await self._connect(loop, server, walk)
            except SetupFailed as exc:
                walk.failed(server, exc)
                continue
            if self._closed:
                conn.abort()
                raise LdapUnavailable("LDAP client is closed")
            if conn.proven:  # else when its first operation is answered (_request)
                walk.connected(server)
            self._conns.add(conn)
            return conn
        raise walk.error()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = client_tls_context(self.settings.ca_file, verify=self.settings.verify)
        return self._ssl

    async def _connect(self, loop: asyncio.AbstractEventLoop, server: _Server,
                       walk: Walk[_Server]) -> _Connection:
        """TCP, then TLS (LDAPS) or StartTLS as configured; bounded by connect_timeout."""
        settings = self.settings
        limit = walk.bound(settings.connect_timeout)
        conn = _Connection(server, loop, settings.timeout)
        starttls = not server.ldaps and settings.tls is TlsMode.STARTTLS
        tls_name = settings.tls_name or server.host
        try:
            ctx = self._ssl_context() if (server.ldaps or starttls) else None
            async with asyncio.timeout(limit):
                if server.ldaps:
                    await loop.create_connection(lambda: conn, server.host, server.port, ssl=ctx,
                                                 server_hostname=tls_name,
                                                 ssl_handshake_timeout=limit)
                else:
                    await loop.create_connection(lambda: conn, server.host, server.port)
                if starttls:
                    assert ctx is not None
                    await self._starttls(loop, conn, ctx, tls_name, limit)
        except TimeoutError:
            conn.abort()
            raise SetupFailed(f"no connection within {limit:g}s", timeout=True) from None
        except ssl.SSLCertVerificationError as exc:
            conn.abort()
            raise SetupFailed(f"TLS: certificate verify failed: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            conn.abort()
            raise SetupFailed(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            conn.abort()
            why = exc.strerror or str(exc) or type(exc).__name__
            in_tls = (server.ldaps or starttls) and isinstance(
                exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))
            raise SetupFailed(f"{'TLS handshake' if in_tls else 'connect'} failed: {why}") \
                from None
        except LdapTimeout as exc:
            conn.abort()
            raise SetupFailed(_why(conn, exc), timeout=True) from None
        except LdapError as exc:
            conn.abort()
            raise SetupFailed(_why(conn, exc)) from None
        except BaseException:
            conn.abort()
            raise
        return conn

    @staticmethod
    async def _starttls(loop: asyncio.AbstractEventLoop, conn: _Connection,
                        ctx: ssl.SSLContext, tls_name: str, limit: float) -> None:
        mid = conn.take_id()
        reply = await conn.send(mid, proto.encode_starttls_request(mid), proto.EXTENDED_RESPONSE,
                                "StartTLS", timeout=limit)
        result = reply.result
        assert result is not None
        if result.code != 0:
            raise SetupFailed(f"StartTLS refused (result {result.code}: {result.message})")
        if conn.decoder.buffered or conn.transport is None:
            raise SetupFailed("unexpected data after the StartTLS response")
        transport = await loop.start_tls(conn.transport, conn, ctx, server_hostname=tls_name,
                                         ssl_handshake_timeout=limit)
        if transport is None:
            raise SetupFailed("TLS could not be started")
        conn.transport = transport

    # ---- the service account ------------------------------------------------------------------
    async def _open_service(self, loop: asyncio.AbstractEventLoop, server: _Server,
                            walk: Walk[_Server]) -> _Connection:
        """A connection bound as the service account, when `server` lets us try (failover.py)."""
        if not self.settings.service_password:
            raise LdapUnavailable(f"service account for {server.uri} has no password configured")
        turn = self.failover.service_turn(server)
        while turn.wait is not None:  # another connection is trying the account: its answer
            done, _ = await asyncio.wait((asyncio.wrap_future(turn.wait),),
                                         timeout=walk.bound(self._budget))
            if not done:
                raise Skipped("no answer to another connection's service bind in time",
                              timeout=True)
            turn = self.failover.service_turn(server)
        with turn:
            conn = await self._connect(loop, server, walk)
            try:
                await self._service_bind(conn, turn, walk)
            except BaseException:
                conn.abort()
                raise
            return conn

    async def _service_bind(self, conn: _Connection, turn: ServiceTurn[_Server],
                            walk: Walk[_Server]) -> None:
        """Bind a new search connection as the service account (again after every reconnect)."""
        settings = self.settings
        try:
            reply = await self._call(
                conn, lambda mid: proto.encode_bind_request(
                    mid, settings.service_dn or "", settings.service_password or ""),
                proto.BIND_RESPONSE, "service bind", walk.bound(settings.timeout))
        except LdapTimeout as exc:
            raise SetupFailed(_why(conn, exc), timeout=True) from None
        except LdapUnavailable as exc:
            raise SetupFailed(_why(conn, exc)) from None
        result = reply.result
        assert result is not None
        if result.code == 0:
            turn.accepted()
            return
        if result.code in UNAVAILABLE_CODES:
            raise SetupFailed(f"service bind answered with result {result.code} "
                              f"({result.message})")
        raise turn.refused(result)


def _why(conn: _Connection, exc: LdapError) -> str:
    """The error without its server, for a SetupFailed (the walk names the server)."""
    return str(exc).removeprefix(f"{conn.server.uri}: ")


def _first_failure(conn: _Connection, exc: LdapError) -> SetupFailed:
    """The first operation on a new connection failed before any answer: a setup failure."""
    return SetupFailed(f"{_why(conn, exc)}, the first operation on a new connection",
                       timeout=isinstance(exc, LdapTimeout))


def _entry(m: proto.LdapMessage) -> Entry:
    attrs: dict[str, list[bytes]] = {}
    for name, values in m.attributes or ():
        key = name.lower()
        if key in attrs:
            attrs[key].extend(values)
        else:
            attrs[key] = values
    return Entry(m.dn, attrs)


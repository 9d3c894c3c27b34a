"""The LDAP client contract on top of ldap3, which is synchronous: it runs in its own threads.

Every worker thread of a dedicated pool keeps two persistent connections
(threading.local): one bound as the service account for searches, one for
user binds, rebound anonymously after each successful bind so nothing stays
bound as a user. A connection that fails is closed and reopened; a reused one
that turns out to be dead (server restart, idle timeout) is retried once on a
fresh connection, so a directory restart costs no request an error.

Failover and the hold-back of a refused service account are
`failover.Failover`, shared with the asyncio client (the rules are in its
docstring). Here setup is `Connection.open` (TCP, and TLS for LDAPS), StartTLS,
and on a search connection the service (or anonymous) bind; a user-bind
connection without StartTLS is proven by its first bind, and a connection
failure or timeout of that bind is a setup failure: the bind goes to the next
server of the same walk.

Not ldap3's ServerPool: when every server is down it sleeps
POOLING_LOOP_TIMEOUT (10 s, process-wide) before giving up, and it connects
twice (an availability probe, then the real socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ldap3 import (
    ANONYMOUS,
    BASE,
    LEVEL,
    NO_ATTRIBUTES,
    SIMPLE,
    SUBTREE,
    SYNC,
    Connection,
    Server,
)
from ldap3 import NONE as NO_INFO
from ldap3 import Tls as Ldap3Tls
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPInvalidFilterError,
    LDAPResponseTimeoutError,
)

from bridge.ldap.client import (
    SIZE_LIMIT_EXCEEDED,
    UNAVAILABLE_CODES,
    Entry,
    LdapClient,
    LdapOperationError,
    LdapResult,
    LdapTimeout,
    LdapUnavailable,
    Scope,
    SearchRequest,
    ServerSettings,
    TlsMode,
)
from bridge.ldap.failover import MIN_WAIT, Failover, ServiceTurn, SetupFailed, Skipped, Walk
from bridge.net import client_tls_context

logger = logging.getLogger("bridge.ldap")

T = TypeVar("T")
DEFAULT_THREADS = 64
_SCOPES = {Scope.BASE: BASE, Scope.ONELEVEL: LEVEL, Scope.SUBTREE: SUBTREE}


def _is_timeout(exc: BaseException) -> bool:
    # ldap3 merges the socket error into its own class: socket.timeout survives as a base
    return isinstance(exc, TimeoutError | LDAPResponseTimeoutError)


def _is_connection_failure(exc: BaseException) -> bool:
    """The connection failed (closed, reset, no answer), not a request ldap3 refused to send."""
    return isinstance(exc, LDAPCommunicationError) or _is_timeout(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _mapped(exc: BaseException, where: str) -> Exception:
    if _is_timeout(exc):
        return LdapTimeout(f"{where}: timed out ({_describe(exc)})")
    return LdapUnavailable(f"{where}: {_describe(exc)}")


def _left(deadline: float) -> float:
    return max(MIN_WAIT, deadline - time.monotonic())


def _result(conn: Connection) -> LdapResult:
    r = conn.result or {}
    return LdapResult(int(r.get("result", 80)), str(r.get("message") or r.get("description", "")),
                      str(r.get("dn") or ""))


class _Tls(Ldap3Tls):  # type: ignore[misc]  # ldap3 ships no types
    """TLS with Python's own certificate and host name check, like the asyncio client.

    ldap3's check is a backport that cannot match IP SANs on Python >= 3.12 and
    takes valid_names as *extra* names; here the name checked is exactly
    `tls_name` (default: the URI's host), and IP addresses work everywhere.
    The handshake is setup: it gets what is left of connect_timeout (ldap3
    would give it the receive timeout, in whole seconds).
    """

    def __init__(self, context: ssl.SSLContext, server_hostname: str, deadline: float) -> None:
        super().__init__(validate=context.verify_mode)
        self.context = context
        self.server_hostname = server_hostname
        self.deadline = deadline

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        connection.socket.settimeout(_left(self.deadline))
        connection.socket = self.context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=self.server_hostname)


class _Target:
    """One URI, and how to secure it.

    Each connection gets its own ldap3 Server: a Server keeps mutable state
    (the current address, message ids, an availability cache that skips an
    address for 5 s after one failure), which threads must not share.
    """

    def __init__(self, uri: str, settings: ServerSettings, context: ssl.SSLContext) -> None:
        parts = urlsplit(uri)
        self.uri = uri
        self.host = parts.hostname or ""
        # like the asyncio client: TlsMode.LDAPS never means clear text, whatever the scheme
        self.ldaps = parts.scheme.lower() == "ldaps" or settings.tls is TlsMode.LDAPS
        self.port = parts.port or (636 if self.ldaps else 389)
        self.starttls = not self.ldaps and settings.tls is TlsMode.STARTTLS
        self.secure = self.ldaps or self.starttls
        self.context = context
        self.tls_name = settings.tls_name or self.host

    def server(self, deadline: float) -> Server:
        tls = _Tls(self.context, self.tls_name, deadline) if self.secure else None
        return Server(self.host, port=self.port, use_ssl=self.ldaps, tls=tls,
                      get_info=NO_INFO, connect_timeout=_left(deadline))


@dataclass(eq=False, slots=True)
class _Live:
    """A thread's connection, its server, and whether the server has answered on it."""

    conn: Connection
    target: _Target
    proven: bool


class Ldap3Client(LdapClient):
    def __init__(self, settings: ServerSettings, *, threads: int = DEFAULT_THREADS) -> None:
        super().__init__(settings)
        self.threads = threads
        context = client_tls_context(settings.ca_file, verify=settings.verify)
        self.failover = Failover([_Target(uri, settings, context) for uri in settings.uris],
                                 down_for=settings.down_for, service_dn=settings.service_dn)
        self._budget = settings.connect_timeout + settings.timeout  # per walk, see failover.py
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[Connection] = set()  # every live connection, for close()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="ldap3")

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            conns, self._open = list(self._open), set()
        if conns:
            await asyncio.to_thread(self._close_all, conns)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            await self.start()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the contract -----------------------------------------------------------

    async def bind(self, dn: str, password: str) -> LdapResult:
        if not password:
            raise ValueError("refusing a bind with an empty password (it would be anonymous)")
        result, _ = await self._run(self._bind, dn, password, None)
        return result

    async def bind_and_search(self, dn: str, password: str,
                              request: SearchRequest) -> tuple[LdapResult, list[Entry]]:
        if not password:
            raise ValueError("refusing a bind with an empty password (it would be anonymous)")
        return await self._run(self._bind, dn, password, request)

    async def search(self, base: str, scope: Scope, filter: str, attributes: Sequence[str], *,
                     size_limit: int = 0) -> list[Entry]:
        return await self._run(self._search, base, scope, filter, list(attributes), size_limit)

    # -- in the worker threads: connecting ----------------------------------------------

    def _connect(self, service: bool, walk: Walk[_Target]) -> _Live:
        """A new connection to the walk's next server that sets up, TLS started.

        `service`: bound as the service account (anonymously without one);
        else not bound at all. A server that refuses the service account ends
        the walk: the next one would refuse it too.
        """
        s = self.settings
        as_service = service and bool(s.service_dn)
        if as_service and not s.service_password:
            raise LdapUnavailable("the service account has no password configured")
        while (target := walk.next()) is not None:
            try:
                if as_service:
                    live = self._open_service(target, walk)
                else:
                    live = self._open_to(target, walk)
                    if service:
                        self._setup_bind(live, walk, None)
            except SetupFailed as exc:
                walk.failed(target, exc)
                continue
            if live.proven:  # else when its first operation is answered (_retrying)
                walk.connected(target)
            return live
        raise walk.error()

    def _open_to(self, target: _Target, walk: Walk[_Target], user: str | None = None,
                 password: str | None = None) -> _Live:
        """TCP, then TLS or StartTLS, within connect_timeout; SetupFailed else."""
        s = self.settings
        deadline = time.monotonic() + walk.bound(s.connect_timeout)
        conn = Connection(target.server(deadline), user=user, password=password,
                          authentication=SIMPLE if user else ANONYMOUS, client_strategy=SYNC,
                          raise_exceptions=False, receive_timeout=max(1, math.ceil(s.timeout)),
                          auto_escape=False, read_only=True, check_names=False)
        try:
            conn.open(read_server_info=False)
            if target.starttls:
                conn.socket.settimeout(_left(deadline))
                conn.start_tls(read_server_info=False)
            # ldap3 wants whole seconds; we do not. A first operation gets no more than is
            # left of the walk's budget (failover.py); _proven() sets the full timeout.
            conn.socket.settimeout(walk.bound(s.timeout))
        except LDAPException as exc:
            self._close_quietly(conn)
            raise SetupFailed(_describe(exc), timeout=_is_timeout(exc)) from None
        with self._lock:
            self._open.add(conn)
        return _Live(conn, target, proven=target.starttls)

    def _proven(self, live: _Live) -> None:
        live.proven = True
        with contextlib.suppress(AttributeError, OSError):  # closed meanwhile: no socket
            live.conn.socket.settimeout(self.settings.timeout)

    def _open_service(self, target: _Target, walk: Walk[_Target]) -> _Live:
        """A connection bound as the service account, when `target` lets us try (failover.py)."""
        s = self.settings
        turn = self.failover.service_turn(target)
        while turn.wait is not None:  # another thread is trying the account: its answer
            try:
                turn.wait.result(timeout=walk.bound(self._budget))
            except TimeoutError:
                raise Skipped("no answer to another connection's service bind in time",
                              timeout=True) from None
            turn = self.failover.service_turn(target)
        with turn:
            live = self._open_to(target, walk, s.service_dn, s.service_password)
            self._setup_bind(live, walk, turn)
            return live

    def _setup_bind(self, live: _Live, walk: Walk[_Target],
                    turn: ServiceTurn[_Target] | None) -> None:
        """The service bind (`turn`), or an anonymous one: part of a search connection's setup.

        On failure `live` is closed and SetupFailed (mark the server down),
        LdapUnavailable (the account is refused: held back) is raised.
        """
        conn, target = live.conn, live.target
        what = "service bind" if turn is not None else "anonymous bind"
        try:
            conn.bind(read_server_info=False)
        except LDAPException as exc:
            self._close_quietly(conn)
            if not _is_connection_failure(exc):
                raise _mapped(exc, f"{what} to {target.uri}") from exc
            raise SetupFailed(f"{what}: {_describe(exc)}", timeout=_is_timeout(exc)) from None
        if conn.bound:
            self._proven(live)
            if turn is not None:
                turn.accepted()
            return
        result = _result(conn)
        self._close_quietly(conn)
        if result.code in UNAVAILABLE_CODES:
            raise SetupFailed(f"{what} answered with result {result.code} ({result.message})")
        if turn is None:
            raise LdapUnavailable(f"{what} to {target.uri}: result {result.code} "
                                  f"{result.message}")
        # an unusable service account is an outage, whatever the code, and it is not tried
        # again on every request (lockout policies)
        raise turn.refused(result)

    def _close_all(self, conns: list[Connection]) -> None:
        for conn in conns:
            self._close_quietly(conn)

    def _close_quietly(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(Exception):
            conn.unbind()

    def _drop(self, slot: str) -> None:
        live: _Live | None = getattr(self._local, slot, None)
        setattr(self._local, slot, None)
        if live is not None:
            self._close_quietly(live.conn)

    def _current(self, slot: str) -> Connection | None:
        live: _Live | None = getattr(self._local, slot, None)
        return live.conn if live is not None else None

    # -- operations, with one retry for a pooled connection found dead ------------------

    def _pooled(self, slot: str) -> _Live | None:
        """This thread's `slot` connection when it is still usable (the service one bound)."""
        live: _Live | None = getattr(self._local, slot, None)
        if live is not None and not live.conn.closed and (slot != "service" or live.conn.bound):
            return live
        self._drop(slot)
        return None

    def _retrying(self, slot: str, operation: Callable[[Connection], T], what: str) -> T:
        """`operation` on this thread's `slot` connection ("service" or "binder").

        A reused connection that turns out dead (ldap3 raises: server restart,
        idle timeout) is replaced once. A new connection whose first operation
        fails before the server ever answered on it is a setup failure, and the
        operation goes to the walk's next server (failover.py). A timeout on a
        reused connection and any failure on a proven new one are raised.
        """
        live = self._pooled(slot)
        walk: Walk[_Target] | None = None  # None: `live` is a reused connection
        while True:
            if live is None:
                if walk is None:
                    walk = self.failover.walk(self._budget)
                live = self._connect(slot == "service", walk)
                setattr(self._local, slot, live)
            try:
                out = operation(live.conn)
            except LDAPException as exc:
                self._drop(slot)
                dead, live = live, None
                if walk is not None and not dead.proven and _is_connection_failure(exc):
                    walk.failed(dead.target, SetupFailed(
                        f"{what}: {_describe(exc)}, the first operation on a new connection",
                        timeout=_is_timeout(exc)))
                    continue
                if walk is None and not _is_timeout(exc):
                    logger.debug("LDAP %s: pooled connection was dead (%s); retrying once",
                                 slot, _describe(exc))
                    walk = self.failover.walk(self._budget)
                    continue
                raise _mapped(exc, what) from exc
            if not live.proven:
                self._proven(live)
                if walk is not None:
                    walk.connected(live.target)
            return out

    def _search(self, base: str, scope: Scope, filter: str, attributes: list[str],
                size_limit: int) -> list[Entry]:
        request = SearchRequest(base, scope, filter, attributes, size_limit)
        return self._retrying("service",
                              lambda conn: self._search_on(conn, request, "service"), "search")

    def _search_on(self, conn: Connection, request: SearchRequest, slot: str) -> list[Entry]:
        try:
            conn.search(request.base, request.filter, search_scope=_SCOPES[Scope(request.scope)],
                        attributes=list(request.attributes) or NO_ATTRIBUTES,
                        size_limit=request.size_limit,
                        time_limit=max(1, math.ceil(self.settings.timeout)))
        except LDAPInvalidFilterError as exc:
            raise LdapOperationError(LdapResult(87, str(exc)), "search") from exc
        result = _result(conn)
        if result.code not in (0, SIZE_LIMIT_EXCEEDED):
            if result.code in UNAVAILABLE_CODES:
                self._drop(slot)
                raise LdapUnavailable(f"search: result {result.code} {result.message}")
            raise LdapOperationError(result, "search")
        return [_entry(item) for item in conn.response or ()
                if item.get("type") == "searchResEntry"]  # searchResRef: skipped

    def _bind(self, dn: str, password: str,
              then: SearchRequest | None) -> tuple[LdapResult, list[Entry]]:
        def bind(conn: Connection) -> tuple[LdapResult, list[Entry]]:
            conn.user, conn.password, conn.authentication = dn, password, SIMPLE
            try:
                conn.bind(read_server_info=False)
            finally:
                conn.user, conn.password, conn.authentication = None, None, ANONYMOUS
            result = _result(conn)
            if result.code in UNAVAILABLE_CODES:
                self._drop("binder")
                raise LdapUnavailable(f"bind: result {result.code} {result.message}")
            if not result.ok:
                return result, []
            try:
                if then is None:
                    return result, []
                try:  # as the user, on this connection: not retried once the bind was answered
                    return result, self._search_on(conn, then, "binder")
                except LDAPException as exc:
                    self._drop("binder")
                    raise _mapped(exc, "search as the user") from exc
            finally:
                if self.settings.reset_after_bind and self._current("binder") is conn:
                    self._reset(conn)

        return self._retrying("binder", bind, "bind")

    def _reset(self, conn: Connection) -> None:
        """Bind anonymously so the connection does not stay bound as the user; else close it."""
        try:
            conn.bind(read_server_info=False)
        except LDAPException:
            self._drop("binder")
            return
        if (conn.result or {}).get("result") != 0:
            self._drop("binder")


def _entry(item: dict[str, Any]) -> Entry:
    attributes: dict[str, list[bytes]] = {}
    for name, values in (item.get("raw_attributes") or {}).items():
        if values:
            attributes.setdefault(name.lower(), []).extend(bytes(v) for v in values)
    return Entry(str(item.get("dn", "")), attributes)

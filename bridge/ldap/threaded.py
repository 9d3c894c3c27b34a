"""The LDAP client contract on top of ldap3, which is synchronous: it runs in its own threads.

Every worker thread of a dedicated pool keeps two persistent connections
(threading.local): one bound as the service account for searches, one for
user binds, rebound anonymously after each successful bind so nothing stays
bound as a user. A connection that fails is closed and reopened; a reused one
that turns out to be dead (server restart, idle timeout) is retried once on a
fresh connection, so a directory restart costs no request an error.

Failover walks the URIs in order. Not ldap3's ServerPool: when every server
is down it sleeps POOLING_LOOP_TIMEOUT (10 s, process-wide) before giving up,
and it connects twice (an availability probe, then the real socket).

A service account a server refuses is held back like in the asyncio client:
searches on that server fail at once for `down_for` seconds, and until the
server has accepted the account one thread at a time tries it, so a wrong
password costs one failed bind per `down_for`, not one per request or thread.
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
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError, LDAPResponseTimeoutError

from bridge.ldap.client import (
    DOWN_FOR,
    INVALID_CREDENTIALS,
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
from bridge.net import client_tls_context

logger = logging.getLogger("bridge.ldap")

T = TypeVar("T")
DEFAULT_THREADS = 64
_SCOPES = {Scope.BASE: BASE, Scope.ONELEVEL: LEVEL, Scope.SUBTREE: SUBTREE}


def _is_timeout(exc: BaseException) -> bool:
    # ldap3 merges the socket error into its own class: socket.timeout survives as a base
    return isinstance(exc, TimeoutError | LDAPResponseTimeoutError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _mapped(exc: BaseException, where: str) -> Exception:
    if _is_timeout(exc):
        return LdapTimeout(f"{where}: timed out ({_describe(exc)})")
    return LdapUnavailable(f"{where}: {_describe(exc)}")


def _result(conn: Connection) -> LdapResult:
    r = conn.result or {}
    return LdapResult(int(r.get("result", 80)), str(r.get("message") or r.get("description", "")),
                      str(r.get("dn") or ""))


class _Tls(Ldap3Tls):
    """TLS with Python's own certificate and host name check, like the asyncio client.

    ldap3's check is a backport that cannot match IP SANs on Python >= 3.12 and
    takes valid_names as *extra* names; here the name checked is exactly
    `tls_name` (default: the URI's host), and IP addresses work everywhere.
    """

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(validate=context.verify_mode)
        self.context = context
        self.server_hostname = server_hostname

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
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
        self.ldaps = parts.scheme.lower() == "ldaps"
        self.port = parts.port or (636 if self.ldaps else 389)
        self.starttls = not self.ldaps and settings.tls is TlsMode.STARTTLS
        secure = self.ldaps or self.starttls
        self.tls = _Tls(context, settings.tls_name or self.host) if secure else None
        self.connect_timeout = settings.connect_timeout
        # the service account on this server: held back until (monotonic, reason) after a
        # refusal; accepted since; one thread at a time tries it until it is accepted
        self.refused: tuple[float, str] | None = None
        self.service_ok = False
        self.gate = threading.Lock()

    def server(self) -> Server:
        return Server(self.host, port=self.port, use_ssl=self.ldaps, tls=self.tls,
                      get_info=NO_INFO, connect_timeout=self.connect_timeout)


class Ldap3Client(LdapClient):
    def __init__(self, settings: ServerSettings, *, threads: int = DEFAULT_THREADS,
                 down_for: float = DOWN_FOR) -> None:
        super().__init__(settings)
        self.threads = threads
        self.down_for = down_for
        context = client_tls_context(settings.ca_file, verify=settings.verify)
        self._targets = [_Target(uri, settings, context) for uri in settings.uris]
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
            await asyncio.to_thread(lambda: [self._close_quietly(c) for c in conns])

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

    # -- in the worker threads ----------------------------------------------------

    def _connect(self, service: bool) -> Connection:
        """A new connection to the first server that answers, TLS started.

        `service`: bound as the service account (anonymously without one);
        else not bound at all. A server that refuses the service account ends
        the walk, like in the asyncio client: the next one would refuse it too.
        """
        s = self.settings
        as_service = service and bool(s.service_dn)
        user, password = (s.service_dn, s.service_password) if as_service else (None, None)
        if as_service and not password:
            raise LdapUnavailable("the service account has no password configured")
        failures: list[BaseException] = []
        for target in self._targets:
            if as_service:
                self._check_refused(target)
            conn = Connection(target.server(), user=user, password=password,
                              authentication=SIMPLE if user else ANONYMOUS, client_strategy=SYNC,
                              raise_exceptions=False, receive_timeout=max(1, math.ceil(s.timeout)),
                              auto_escape=False, read_only=True, check_names=False)
            try:
                conn.open(read_server_info=False)
                conn.socket.settimeout(s.timeout)  # ldap3 wants whole seconds; we do not
                if target.starttls:
                    conn.start_tls(read_server_info=False)
                    conn.socket.settimeout(s.timeout)
            except LDAPException as exc:
                self._close_quietly(conn)
                failures.append(exc)
                continue
            with self._lock:
                self._open.add(conn)
            if service:
                self._service_bind(target, conn, as_service)
            return conn
        detail = "; ".join(f"{t.uri}: {_describe(e)}" for t, e in zip(self._targets, failures,
                                                                     strict=True))
        if failures and all(_is_timeout(e) for e in failures):
            raise LdapTimeout(f"no LDAP server answered in time ({detail})")
        raise LdapUnavailable(f"no LDAP server reachable ({detail})")

    def _close_quietly(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(Exception):
            conn.unbind()

    def _drop(self, slot: str) -> None:
        conn = getattr(self._local, slot, None)
        setattr(self._local, slot, None)
        if conn is not None:
            self._close_quietly(conn)

    # -- the service account ---------------------------------------------------------

    def _check_refused(self, target: _Target) -> None:
        """LdapUnavailable at once while `target` is held back after refusing the account."""
        refused = target.refused
        if refused is not None and (left := refused[0] - time.monotonic()) > 0:
            raise LdapUnavailable(f"{refused[1]}; no service bind to {target.uri} for another "
                                  f"{left:.1f}s")

    def _service_bind(self, target: _Target, conn: Connection, as_service: bool) -> None:
        """Bind `conn` as the service account; until `target` has accepted it, one thread at
        a time (the others wait for its answer); on failure close `conn` and raise."""
        if not as_service or target.service_ok:
            self._service_bind_now(target, conn, as_service)
            return
        with target.gate:
            if not target.service_ok:
                try:
                    self._check_refused(target)
                except LdapUnavailable:
                    self._close_quietly(conn)
                    raise
                self._service_bind_now(target, conn, as_service)
                return
        self._service_bind_now(target, conn, as_service)

    def _service_bind_now(self, target: _Target, conn: Connection, as_service: bool) -> None:
        try:
            conn.bind(read_server_info=False)
        except LDAPException as exc:
            self._close_quietly(conn)
            raise _mapped(exc, "service bind") from exc
        if conn.bound:
            if as_service and not target.service_ok:
                target.service_ok = True
                if target.refused is not None:
                    target.refused = None
                    logger.info("LDAP %s accepts the service account %r again", target.uri,
                                self.settings.service_dn)
            return
        result = _result(conn)
        self._close_quietly(conn)
        if result.code in UNAVAILABLE_CODES or not as_service:
            raise LdapUnavailable(f"service bind to {target.uri}: result {result.code} "
                                  f"{result.message}")
        # like the asyncio client: an unusable service account is an outage, whatever the
        # code, and it is not tried again on every request (lockout policies)
        dn = self.settings.service_dn
        what = "invalid credentials" if result.code == INVALID_CREDENTIALS else "refused"
        detail = f": {result.message}" if result.message else ""
        reason = (f"service account {dn!r} rejected by {target.uri} ({what}, result "
                  f"{result.code}{detail})")
        with self._lock:
            first = target.refused is None
            target.service_ok = False
            target.refused = (time.monotonic() + self.down_for, reason)
        if first:
            logger.error("LDAP %s rejected the service account %r (%s, result %d%s): searches "
                         "on it fail at once, and the account is tried again every %gs at most "
                         "(check bind_dn and bind_password)", target.uri, dn, what,
                         result.code, detail, self.down_for)
        raise LdapUnavailable(reason)

    # -- operations, with one retry for a pooled connection found dead ------------------

    def _service(self) -> tuple[Connection, bool]:
        """This thread's service connection (bound), and whether it was just opened."""
        conn: Connection | None = getattr(self._local, "service", None)
        if conn is not None and not conn.closed and conn.bound:
            return conn, False
        self._drop("service")
        conn = self._local.service = self._connect(service=True)
        return conn, True

    def _binder(self) -> tuple[Connection, bool]:
        """This thread's connection for user binds, and whether it was just opened."""
        conn: Connection | None = getattr(self._local, "binder", None)
        if conn is not None and not conn.closed:
            return conn, False
        self._drop("binder")
        conn = self._local.binder = self._connect(service=False)
        return conn, True

    def _retrying(self, slot: str, connection: Callable[[], tuple[Connection, bool]],
                  operation: Callable[[Connection], T], what: str) -> T:
        """`operation` on this thread's `slot` connection; when a reused connection turns
        out dead (ldap3 raises: server restart, idle timeout), once more on a fresh one.
        A fresh connection's failure and timeouts are not retried."""
        for attempt in (0, 1):
            conn, fresh = connection()
            try:
                return operation(conn)
            except LDAPException as exc:
                self._drop(slot)
                if fresh or attempt or _is_timeout(exc):
                    raise _mapped(exc, what) from exc
        raise AssertionError("unreachable")

    def _search(self, base: str, scope: Scope, filter: str, attributes: list[str],
                size_limit: int) -> list[Entry]:
        request = SearchRequest(base, scope, filter, attributes, size_limit)
        return self._retrying("service", self._service,
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
                if self.settings.reset_after_bind and getattr(self._local, "binder", None) is conn:
                    self._reset(conn)

        return self._retrying("binder", self._binder, bind, "bind")

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

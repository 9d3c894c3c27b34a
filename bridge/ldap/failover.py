"""Which LDAP server to try next, and when to leave one alone: the policy both clients share.

`aio.AsyncLdapClient` and `threaded.Ldap3Client` differ in how they do I/O, not
in what they conclude from it. Each new connection is one `Walk` over
`ServerSettings.uris` in order; the client reports what happened (`failed`,
`connected`) and the `Failover` remembers it for every later walk.

What counts as a failure, and what it costs:

- *Setup* is everything before a connection can carry a request: TCP, TLS
  (LDAPS) or StartTLS, and on a search connection the service bind (or the
  anonymous bind without a service account). Refused, reset, a TLS failure, no
  answer in time or a busy/unavailable result marks the server down for
  `down_for` seconds, with the reason; the walk goes on with the next URI.
- A connection is *proven* once the server has answered an LDAP message on it
  (StartTLS, a bind, anything). On an unproven connection, i.e. with
  `tls = "none"` or behind a TLS-terminating load balancer, user-bind
  connections and anonymous search connections, the first operation is part
  of setup: no answer within `timeout`, or the connection closed before one,
  marks the server down and the same request is sent again on the next server
  of the same walk. That is what finds a hung slapd or a load balancer that
  accepts TCP and black-holes the rest. A user bind can thus reach two servers;
  the first one never answered, so at worst a password is checked twice (the
  stale-connection retry in both clients makes the same trade).
- On a proven connection a timeout is that request's `LdapTimeout`, and the
  server is *not* marked down: it has shown that it answers, a slow operation
  (an expensive search, a server-side time limit) is a property of the request,
  and with one URI a mark would turn one slow search into `down_for` seconds of
  503 for everybody. The connection is discarded all the same, so if the server
  really hung, the next new connection to it is unproven and its first
  operation marks it down: a server that hangs later costs at most one timeout
  per pooled connection.
- Budget: a walk, and the request it serves, waits at most
  `connect_timeout + timeout` for a connection and its first answer. Connecting
  is bounded by `bound(connect_timeout)`, a first operation by `bound(timeout)`;
  with a hanging first server and a healthy second one the request that met
  the hang is still answered (it costs `timeout`, or `connect_timeout` when TLS
  or StartTLS is what hangs), and when no time is left the walk ends with
  `LdapTimeout`.
- With every server down, a walk ends at once with `LdapUnavailable` listing
  each reason; `LdapTimeout` when every server it tried timed out. Marks only
  expire: there is no fail-back and no background probing; the next new
  connection after `down_for` tries the server again.

A service account that a server refuses (49 wrong password or locked, 53
disabled, ...) is an operator's outage, not a server's: the server is not
marked down (user binds go on), but service binds to it are held back for
`down_for` seconds (`LdapUnavailable` at once), and until it has accepted the
account, at start and again after a refusal, one connection at a time tries
it while the others wait for its answer (`ServiceTurn`). A wrong password
thus costs one failed bind per `down_for`, not one per request, and cannot
lock the account under an AD lockout policy. Logged once, at error level.

The policy is plain data behind a `threading.Lock` (threads share it in the
ldap3 client), it is consulted only when a connection is opened, never on a
pooled connection's request, and waiting for another connection's probe is a
`concurrent.futures.Future`, which a thread can block on and a task can await.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from bridge.ldap.client import (
    DOWN_FOR,
    INVALID_CREDENTIALS,
    LdapError,
    LdapResult,
    LdapTimeout,
    LdapUnavailable,
)

logger = logging.getLogger("bridge.ldap")

MIN_WAIT = 0.001  # a bound is never 0: 0 means "no timeout" to sockets and to aio.send


class Named(Protocol):
    @property
    def uri(self) -> str: ...


S = TypeVar("S", bound=Named)


class SetupFailed(Exception):
    """Setting up a connection to one server failed: mark it down and try the next."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout


class Skipped(SetupFailed):
    """The server was found down (or busy probing) on the way: try the next, mark nothing."""


@dataclass(frozen=True, slots=True)
class _Mark:
    until: float
    reason: str
    timeout: bool = False


class Failover(Generic[S]):
    """Down marks and service-account hold-backs for one client's servers."""

    def __init__(self, servers: Sequence[S], *, down_for: float = DOWN_FOR,
                 service_dn: str | None = None) -> None:
        if not servers:
            raise ValueError("no LDAP server URIs configured")
        self.servers = tuple(servers)
        self.down_for = down_for
        self.service_dn = service_dn
        self._lock = threading.Lock()
        self._down: dict[str, _Mark] = {}  # kept after expiry until the server is back
        self._refused: dict[str, _Mark] = {}  # the same for the service account
        self._accepted: set[str] = set()  # accepted the service account since its last refusal
        self._probes: dict[str, Future[None]] = {}  # one service bind under way per server

    def walk(self, budget: float) -> Walk[S]:
        """A walk for one new connection, allowed `budget` seconds in all."""
        return Walk(self, budget)

    def down(self) -> dict[str, str]:
        """The servers skipped now, with the reason (for logs, health checks and tests)."""
        now = time.monotonic()
        with self._lock:
            return {uri: m.reason for uri, m in self._down.items() if m.until > now}

    def _skip(self, uri: str) -> _Mark | None:
        mark = self._down.get(uri)
        return mark if mark is not None and mark.until > time.monotonic() else None

    def mark_down(self, server: S, reason: str, *, timeout: bool = False) -> None:
        with self._lock:
            first = server.uri not in self._down
            self._down[server.uri] = _Mark(time.monotonic() + self.down_for, reason, timeout)
        if first:
            logger.warning("LDAP server %s failed (%s); skipping it for %gs", server.uri, reason,
                           self.down_for)

    def mark_up(self, server: S) -> None:
        """`server` answered on a new connection."""
        if server.uri not in self._down:  # the usual case, without the lock
            return
        with self._lock:
            was = self._down.pop(server.uri, None)
        if was is not None:
            logger.info("LDAP server %s is reachable again", server.uri)

    # ---- the service account ----------------------------------------------------------------
    def service_turn(self, server: S) -> ServiceTurn[S]:
        """What a new connection to `server` may do about the service bind now.

        Raises LdapUnavailable while the account is held back on `server`, and
        Skipped when `server` is down (marked while this caller waited). Else
        the turn says: bind (`probe` False: the account is known good), bind
        for everybody (`probe` True: report with accepted/refused/release), or
        `wait` for another connection's bind, then ask again.
        """
        uri = server.uri
        with self._lock:
            now = time.monotonic()
            refused = self._refused.get(uri)
            if refused is not None and refused.until > now:
                raise LdapUnavailable(f"{refused.reason}; no service bind to {uri} for another "
                                      f"{refused.until - now:.1f}s")
            down = self._skip(uri)
            if down is not None:
                raise Skipped(f"{down.reason}; skipped for {down.until - now:.1f}s",
                              timeout=down.timeout)
            if uri in self._accepted:
                return ServiceTurn(self, server, None, None)
            pending = self._probes.get(uri)
            if pending is not None:
                return ServiceTurn(self, server, None, pending)
            probe: Future[None] = Future()
            self._probes[uri] = probe
            return ServiceTurn(self, server, probe, None)

    def _accepted_by(self, server: S) -> None:
        with self._lock:
            self._accepted.add(server.uri)
            was = self._refused.pop(server.uri, None)
        if was is not None:
            logger.info("LDAP %s accepts the service account %r again", server.uri,
                        self.service_dn)

    def _refused_by(self, server: S, result: LdapResult) -> LdapUnavailable:
        dn = self.service_dn
        what = "invalid credentials" if result.code == INVALID_CREDENTIALS else "refused"
        detail = f": {result.message}" if result.message else ""
        reason = (f"service account {dn!r} rejected by {server.uri} ({what}, result "
                  f"{result.code}{detail})")
        with self._lock:
            first = server.uri not in self._refused
            self._accepted.discard(server.uri)
            self._refused[server.uri] = _Mark(time.monotonic() + self.down_for, reason)
        if first:
            logger.error("LDAP %s rejected the service account %r (%s, result %d%s): searches "
                         "on it fail at once, and the account is tried again every %gs at most "
                         "(check bind_dn and bind_password)", server.uri, dn, what,
                         result.code, detail, self.down_for)
        return LdapUnavailable(reason)

    def _settle(self, server: S, probe: Future[None]) -> None:
        with self._lock:
            if self._probes.get(server.uri) is probe:
                del self._probes[server.uri]
        if not probe.done():
            probe.set_result(None)


class ServiceTurn(Generic[S]):
    """One connection's turn at the service bind; a context manager that always settles it.

    Whoever holds a probe must end it: `accepted()`, `refused(result)`, or
    `release()` when the bind could not be tried (setup failed, cancelled), so
    that the next waiter tries it instead.
    """

    __slots__ = ("_failover", "_probe", "server", "wait")

    def __init__(self, failover: Failover[S], server: S, probe: Future[None] | None,
                 wait: Future[None] | None) -> None:
        self._failover = failover
        self.server = server
        self._probe = probe
        self.wait = wait  # not None: another connection is binding; wait, then ask again

    @property
    def probe(self) -> bool:
        return self._probe is not None

    def accepted(self) -> None:
        self._failover._accepted_by(self.server)
        self.release()

    def refused(self, result: LdapResult) -> LdapUnavailable:
        """Hold the account back on this server; the error to raise (logged once)."""
        error = self._failover._refused_by(self.server, result)
        self.release()
        return error

    def release(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            self._failover._settle(self.server, probe)

    def __enter__(self) -> ServiceTurn[S]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class Walk(Generic[S]):
    """One search for a server to open a connection to: the URIs in order, each at most once."""

    def __init__(self, failover: Failover[S], budget: float) -> None:
        self._failover = failover
        self._budget = budget
        self._deadline = time.monotonic() + budget
        self._index = 0
        self._tried = 0
        self._all_timeouts = True
        self._failures: list[str] = []

    def bound(self, seconds: float) -> float:
        """`seconds`, or what is left of the budget when that is less."""
        return max(MIN_WAIT, min(seconds, self._deadline - time.monotonic()))

    def next(self) -> S | None:
        """The next server to try (down ones are skipped); None when none is left."""
        servers = self._failover.servers
        while self._index < len(servers):
            server = servers[self._index]
            self._index += 1
            mark = self._failover._skip(server.uri)
            if mark is not None:
                left = mark.until - time.monotonic()
                self._failures.append(f"{server.uri} ({mark.reason}; skipped for {left:.1f}s)")
                self._all_timeouts = self._all_timeouts and mark.timeout
                continue
            if self._deadline <= time.monotonic():
                self._failures.append(f"{server.uri} (not tried: the {self._budget:g}s "
                                      f"budget is spent)")
                continue
            self._tried += 1
            return server
        return None

    def failed(self, server: S, exc: SetupFailed) -> None:
        """`server` failed its setup (marked down) or was skipped on the way (not marked)."""
        if not isinstance(exc, Skipped):
            self._failover.mark_down(server, exc.reason, timeout=exc.timeout)
        self._failures.append(f"{server.uri} ({exc.reason})")
        self._all_timeouts = self._all_timeouts and exc.timeout

    def connected(self, server: S) -> None:
        """`server` answered on the new connection: clear its mark."""
        self._failover.mark_up(server)

    def error(self) -> LdapError:
        """What to raise when `next()` found nothing."""
        error = LdapTimeout if (self._tried and self._all_timeouts) else LdapUnavailable
        return error("no LDAP server available: " + "; ".join(self._failures))

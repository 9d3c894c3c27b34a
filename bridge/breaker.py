"""A circuit breaker: stop calling an upstream that keeps failing, let one probe test it.

    closed --N consecutive failures--> open --cool-down--> half-open
    half-open: one probe goes through --success--> closed
                                      --failure--> open (a new cool-down)

While open, `check()` raises `CircuitOpen` at once: the phone gets its 503 in
microseconds instead of after a timeout, and a struggling upstream gets a
rest. It knows nothing about HTTP, so an LDAP or SQL backend can use it the
same way. asyncio only: state changes happen between awaits, no locks.

What counts: an UpstreamError is a failure, unless the backend marked it
`answered(...)`: the upstream did answer, but the answer is no use for this
one request (a status that is wrong for this user, a body that does not
parse). That is this user's 503, and a success for the breaker, so that one
user the upstream does not like can never get everyone a CircuitOpen. The
mark travels on the exception itself; there is one breaker per backend, kept
by the request flow, and backends have none of their own.

Being the one object per backend that every call passes through, the breaker
also keeps the backend's metrics (bridge/metrics.py `BackendMetrics`): the
duration of each call, failures by kind, refusals, and its own state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from bridge.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.metrics import BackendMetrics

logger = logging.getLogger("bridge.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

E = TypeVar("E", bound=BaseException)
_MARK = "_bridge_answered"


def answered(exc: E) -> E:
    """Mark `exc`: the upstream answered, the answer is only unusable for this request.

    Breakers record a success for it, not a failure. Returns `exc`, so
    `raise answered(UpstreamUnavailable(...))` reads as one statement.
    """
    setattr(exc, _MARK, True)
    return exc


def is_answered(exc: BaseException) -> bool:
    return getattr(exc, _MARK, False) is True


class CircuitOpen(UpstreamUnavailable):
    """Refused without a network call."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        metrics: BackendMetrics | None = None,
    ) -> None:
        """`failure_threshold` <= 0 disables the breaker (every call goes through).

        `metrics`: the backend's series; without them nothing is measured (tests,
        flows built by hand)."""
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.metrics = metrics
        if metrics is not None:
            metrics.breaker = self  # the gauge is this one's now (see BackendMetrics)
            metrics.state(CLOSED)

    def report(self) -> None:
        """Write the state to the backend's gauge (only a change costs a write)."""
        if self.metrics is not None and self.metrics.breaker is self:
            self.metrics.state(self.state)

    def count(self, kind: str) -> None:
        """One failed call of `kind` (bridge.metrics.ERROR_KINDS) for the backend's counter."""
        if self.metrics is not None:
            self.metrics.errors[kind].inc()

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self.clock() - self._opened_at < self.cooldown:
            return OPEN
        return HALF_OPEN

    @property
    def refusing(self) -> bool:
        """Would check() refuse now? (Without claiming the half-open probe.)"""
        state = self.state
        return state == OPEN or (state == HALF_OPEN and self._probing)

    def check(self) -> None:
        """Raise CircuitOpen unless a call may go out now (in half-open: the one probe)."""
        state = self.state
        if state == CLOSED:
            return
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            logger.info("circuit %s: half-open, sending one probe", self.name)
            self.report()
            return
        self.count("circuit_open")
        raise CircuitOpen(f"{self.name}: circuit open after {self.failures} consecutive "
                          f"failures, not calling it")

    def success(self) -> None:
        was_open = self._opened_at is not None
        if was_open:
            logger.warning("circuit %s: closed again, the probe succeeded", self.name)
        self.failures = 0
        self._opened_at = None
        self._probing = False
        if was_open:
            self.report()

    def failure(self) -> None:
        self.failures += 1
        if self.failure_threshold <= 0:
            return
        # In half-open, any failure (the probe's, or one that ended without a verdict
        # first, like a request deadline) opens the circuit for a new cool-down.
        if self._probing or self.state == HALF_OPEN or (
                self._opened_at is None and self.failures >= self.failure_threshold):
            logger.warning("circuit %s: open for %.1fs after %d consecutive failure(s)",
                           self.name, self.cooldown, self.failures)
            self._opened_at = self.clock()
            self.report()
        self._probing = False

    def abandon(self) -> None:
        """The call ended without a verdict (cancelled by the deadline, our own bug).

        The failure count stays as it is; a half-open probe slot is freed so
        the next call can probe instead of waiting for another cool-down.
        """
        self._probing = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """check(), then record the outcome: an UpstreamError is a failure (unless it is
        marked `answered`), a result a success, anything else no verdict. With metrics:
        the call's duration, and its failure by kind."""
        self.check()
        metrics = self.metrics
        started = time.perf_counter() if metrics is not None else 0.0
        try:
            yield
        except UpstreamError as exc:
            if is_answered(exc):
                self.count("answered")
                self.success()
            else:
                self.count("timeout" if isinstance(exc, UpstreamTimeout) else "unavailable")
                self.failure()
            raise
        except BaseException:
            self.abandon()
            raise
        finally:
            if metrics is not None:
                metrics.duration.observe(time.perf_counter() - started)
        self.success()

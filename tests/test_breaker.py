"""The circuit breaker alone, on a fake clock (around real backends: tests/sources/test_http.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen, answered
from bridge.errors import UpstreamTimeout, UpstreamUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker("test upstream", failure_threshold=3, cooldown=10.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(UpstreamUnavailable), breaker.guard():
            raise UpstreamUnavailable("down")


def test_opens_after_n_consecutive_failures(breaker):
    fail(breaker, 2)
    assert breaker.state == CLOSED
    breaker.check()  # still lets calls through
    fail(breaker)
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.check()
    assert isinstance(info.value, UpstreamUnavailable)  # -> 503 with Retry-After
    assert "test upstream" in str(info.value)


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    with breaker.guard():
        pass
    fail(breaker, 2)
    assert breaker.state == CLOSED
    assert breaker.failures == 2


def test_timeouts_count_as_failures(breaker):
    for _ in range(3):
        with pytest.raises(UpstreamTimeout), breaker.guard():
            raise UpstreamTimeout("slow")
    assert breaker.state == OPEN


def test_other_exceptions_are_no_verdict(breaker):
    fail(breaker, 2)
    with pytest.raises(KeyError), breaker.guard():
        raise KeyError("our own bug")
    assert breaker.failures == 2
    assert breaker.state == CLOSED


def test_half_open_after_cooldown_lets_one_probe_through(breaker, clock):
    fail(breaker, 3)
    clock.now += 9.9
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 0.1
    assert breaker.state == HALF_OPEN
    breaker.check()                   # the probe
    with pytest.raises(CircuitOpen):  # everyone else waits for its verdict
        breaker.check()
    breaker.success()
    assert breaker.state == CLOSED
    breaker.check()
    breaker.check()


def test_a_failed_probe_opens_again_for_a_full_cooldown(breaker, clock):
    fail(breaker, 3)
    clock.now += 10
    fail(breaker)  # the probe fails
    assert breaker.state == OPEN
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 0.1
    breaker.check()
    breaker.success()
    assert breaker.state == CLOSED


def test_an_abandoned_probe_frees_the_slot(breaker, clock):
    fail(breaker, 3)
    clock.now += 10

    async def probe_cancelled_by_the_deadline() -> None:
        async with asyncio.timeout(0.01):
            with breaker.guard():
                await asyncio.sleep(1)

    with pytest.raises(TimeoutError):
        asyncio.run(probe_cancelled_by_the_deadline())
    assert breaker.state == HALF_OPEN
    breaker.check()  # the next call may probe at once


def test_threshold_zero_disables_it(clock):
    breaker = CircuitBreaker("x", failure_threshold=0, cooldown=10, clock=clock)
    fail(breaker, 50)
    assert breaker.state == CLOSED
    breaker.check()


def test_an_open_circuit_answers_in_microseconds(breaker):
    fail(breaker, 3)
    start = time.perf_counter()
    for _ in range(1000):
        with pytest.raises(CircuitOpen):
            breaker.check()
    per_call = (time.perf_counter() - start) / 1000
    assert per_call < 0.001


def test_an_answered_error_is_a_success_not_a_failure(breaker):
    """The upstream answered, just not usefully for this user: never everyone's CircuitOpen."""
    for _ in range(10):
        with pytest.raises(UpstreamUnavailable), breaker.guard():
            raise answered(UpstreamUnavailable("HTTP 200, not valid JSON"))
    assert breaker.state == CLOSED and breaker.failures == 0
    fail(breaker, 2)
    with pytest.raises(UpstreamUnavailable), breaker.guard():
        raise answered(UpstreamUnavailable("HTTP 400"))
    assert breaker.failures == 0  # it answered: the run of failures is over


def test_an_answered_probe_closes_the_circuit(breaker, clock):
    fail(breaker, 3)
    clock.now += 10
    with pytest.raises(UpstreamUnavailable), breaker.guard():
        raise answered(UpstreamUnavailable("odd answer for this one user"))
    assert breaker.state == CLOSED


def test_answered_marks_that_one_exception_only(breaker):
    marked = UpstreamUnavailable("x")
    assert answered(marked) is marked  # for `raise answered(...)`
    fail(breaker, 3)  # fresh, unmarked errors of the same class still count
    assert breaker.state == OPEN


def test_refusing_peeks_without_claiming_the_probe():
    now = [0.0]
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown=10, clock=lambda: now[0])
    assert not breaker.refusing
    breaker.failure()
    assert breaker.refusing                 # open
    now[0] = 11
    assert not breaker.refusing             # half-open, probe not taken yet
    assert not breaker.refusing             # peeking twice does not take it
    breaker.check()                         # the probe goes out
    assert breaker.refusing                 # everyone else waits for its verdict
    breaker.success()
    assert not breaker.refusing


async def test_a_backend_that_hangs_past_the_deadline_opens_its_breaker():
    """The deadline is shorter than the backend's own timeout: without counting the deadline
    as the backend's failure, every request would wait the full deadline forever."""
    from bridge.cache import CacheSettings, ResponseCache
    from bridge.errors import UpstreamError
    from bridge.guard import Guard, LimitSettings
    from bridge.mapping import ConfigMapping
    from bridge.models import Credentials, Identity
    from bridge.provision import Provisioner
    from bridge.settings import BreakerSettings
    from bridge.state import MemoryStore
    from tests.upstreams import section

    class Hanging:
        calls = 0

        async def authenticate(self, credentials: Credentials) -> Identity | None:
            Hanging.calls += 1
            await asyncio.sleep(3600)
            return None

    mapping = ConfigMapping.from_config(section(
        '[account]\nusername = "u"\npassword = "p"\nSIP_domain = "d"\n', "mapping"))
    store = MemoryStore()
    p = Provisioner(Hanging(), object(), mapping, 0.1,  # type: ignore[arg-type]
                    Guard(store, LimitSettings(username_failures=0, address_failures=0,
                                               lockout_window=0), b"k" * 32),
                    ResponseCache(store, CacheSettings()),
                    BreakerSettings(failures=3, cooldown=30))
    timings = []
    for i in range(5):
        start = time.perf_counter()
        with pytest.raises(UpstreamError):
            await p.provision(Credentials(f"user{i}", "pw"))
        timings.append(time.perf_counter() - start)
    assert Hanging.calls == 3                       # the breaker opened after three deadlines
    assert p.pipeline is not None and p.pipeline.auth_breaker.state == OPEN
    assert min(timings[:3]) >= 0.09 and max(timings[3:]) < 0.05

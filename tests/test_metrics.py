"""bridge.metrics in one process: the breaker's gauge follows its state (also by the clock),
the names kept from before are exact sums of the labelled series, bounded label values."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bridge.breaker import CircuitBreaker, CircuitOpen, answered
from bridge.errors import UpstreamTimeout, UpstreamUnavailable
from bridge.metrics import METRICS, UNKNOWN, listen_address


def samples() -> list[Sample]:
    text = METRICS.render().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(name: str, **labels: str) -> float:
    return sum(s.value for s in samples()
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_gauge_follows_the_state_also_by_the_clock() -> None:
    clock = Clock()
    backend = "tests.metrics.breaker"
    breaker = CircuitBreaker("t", failure_threshold=2, cooldown=10, clock=clock,
                             metrics=METRICS.backend(backend, "source", "http"))
    state = lambda: value("bridge_breaker_state", backend=backend)  # noqa: E731
    errors = lambda kind: value("bridge_backend_errors_total", backend=backend,  # noqa: E731
                                kind=kind)
    assert state() == 0
    for exc in (UpstreamUnavailable("down"), UpstreamTimeout("slow")):
        with pytest.raises(type(exc)), breaker.guard():
            raise exc
    assert state() == 2
    assert (errors("unavailable"), errors("timeout")) == (1, 1)
    with pytest.raises(CircuitOpen):
        breaker.check()
    assert errors("circuit_open") == 1
    clock.now += 11  # nobody called: the scrape itself reports half-open
    assert state() == 1
    with pytest.raises(UpstreamUnavailable), breaker.guard():  # the probe: answered, a success
        raise answered(UpstreamUnavailable("not for this user"))
    assert (state(), errors("answered")) == (0, 1)
    assert value("bridge_backend_duration_seconds_count", backend=backend) == 3


def test_the_kept_names_are_sums_of_the_labelled_series() -> None:
    before = {s.name + repr(sorted(s.labels.items())): s.value for s in samples()}
    for profile, tenant, status, seconds in (("p1", "p1", 200, 0.0007), ("p1", "p1/t", 401, 0.3),
                                             ("p2", "p2", 503, 12.0), (UNKNOWN, UNKNOWN, 404,
                                                                       0.004)):
        METRICS.profile(profile).request(tenant, status, seconds)
    METRICS.profile("p1").token_request(200)
    after = samples()

    def grew(name: str, **labels: str) -> float:
        key = name + repr(sorted(labels.items()))
        now = sum(s.value for s in after if s.name + repr(sorted(s.labels.items())) == key)
        return now - before.get(key, 0.0)

    assert grew("bridge_requests_total") == 4
    assert grew("bridge_token_requests_total") == 1
    assert (grew("bridge_responses_200_total"), grew("bridge_responses_401_total"),
            grew("bridge_responses_503_total"), grew("bridge_responses_404_total")) == (1, 1, 1, 1)
    assert grew("bridge_token_responses_200_total") == 1
    assert grew("bridge_request_duration_seconds_count") == 4
    assert grew("bridge_request_duration_seconds_bucket", le="0.005") == 2
    assert grew("bridge_request_duration_seconds_bucket", le="10.0") == 3
    assert grew("bridge_request_duration_seconds_bucket", le="+Inf") == 4
    assert grew("bridge_request_duration_seconds_sum") == pytest.approx(12.3047)
    assert grew("bridge_provision_requests_total", profile="p1", tenant="p1/t",
                outcome="auth_failed", status="401") == 1
    assert grew("bridge_provision_requests_total", profile="p1", tenant="token",
                outcome="ok", status="200") == 1


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:9105", ("127.0.0.1", 9105)), ("[::1]:9105", ("::1", 9105)),
    ("metrics.internal:80", ("metrics.internal", 80))])
def test_listen_addresses(listen: str, expected: tuple[str, int]) -> None:
    assert listen_address(listen) == expected


@pytest.mark.parametrize("listen", ["9105", ":9105", "127.0.0.1:", "127.0.0.1:0",
                                    "127.0.0.1:65536", "host:http"])
def test_what_is_not_a_listen_address(listen: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        listen_address(listen)


def test_after_a_reload_the_new_breaker_owns_the_gauge() -> None:
    backend = "tests.metrics.reloaded"
    old = CircuitBreaker("old", failure_threshold=1, cooldown=60,
                         metrics=METRICS.backend(backend, "auth", "ldap"))
    old.failure()
    assert value("bridge_breaker_state", backend=backend) == 2
    new = CircuitBreaker("new", failure_threshold=1, cooldown=60,
                         metrics=METRICS.backend(backend, "auth", "ldap"))
    assert value("bridge_breaker_state", backend=backend) == 0  # the scrape asked both
    old.report()  # the previous configuration (still open) no longer writes the gauge
    assert value("bridge_breaker_state", backend=backend) == 0
    new.failure()
    assert value("bridge_breaker_state", backend=backend) == 2


def test_outcomes_are_the_audit_lines() -> None:
    """The metrics label with the audit line's own rule (bridge.logs.outcome)."""
    from bridge.logs import outcome
    from bridge.metrics import OUTCOMES

    statuses = (200, 400, 401, 403, 404, 405, 429, 500, 503)
    assert [outcome(s) for s in statuses] == [
        "ok", "rejected", "auth_failed", "auth_failed", "rejected", "rejected", "rate_limited",
        "error", "error"]
    assert {outcome(s) for s in statuses} == set(OUTCOMES)

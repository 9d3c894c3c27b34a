"""Counters and gauges in Prometheus' text format, correct across worker processes.

With `serve --workers N` each worker counts its own requests; a scrape reaches
one of them, so plain in-process counters read 6, then 7, then 6. The
supervisor (bridge/server.py) therefore gives the workers a private folder in
PROMETHEUS_MULTIPROC_DIR, prometheus-client keeps every value in a memory-mapped
file per process there, and /metrics sums them: any worker answers with the
totals. A single process keeps its values in memory.

Labels come from the configuration or from fixed sets only: profile and tenant
names, a backend's configuration table (`auth`, `profiles.desktop.source`), HTTP
statuses, stage and outcome names. Nothing a phone sends (usernames, addresses,
let alone passwords) can become a label value or a metric name: a request that
matches no profile or tenant is counted under "-".

Cost: a request must not format label values or look a labelled child up in
prometheus-client (a lock and a tuple of strings per call). Each profile's and
each backend's series are resolved once into `ProfileMetrics`/`BackendMetrics`
(kept here by name), so a request pays dict lookups and the increments. Measured
with callgrind on a cached request through the app (2026-11-30): 362,390 -> 362,964
instructions in one process, 372,734 -> 377,622 in multiprocess mode (+0.2%, +1.3%).

The unlabelled request names from before (`bridge_requests_total`,
`bridge_responses_<status>_total`, `bridge_request_duration_seconds` and the
`bridge_token_` ones) are kept for existing dashboards, but a request no longer
pays for them: the scrape sums them from the labelled series (`_legacy`), exactly,
since the stage buckets include every bucket of the old histogram. The other
unlabelled names (`bridge_rate_limited_*`, ...) are declared at start (`COUNTERS`,
`GAUGES`) and written by name with `inc`/`set`/`observe`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from bridge.logs import outcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# stages and backends: a cached answer or a local file backend takes well under 5 ms
FINE_BUCKETS = (0.0005, 0.001, 0.0025, *BUCKETS)
ENDPOINT_TENANT = "token"  # the tenant of the token endpoint's requests, as in the audit line

UNKNOWN = "-"  # a request that matched no profile or tenant: one series, not one per guess
STAGES = ("authenticate", "accounts", "render", "total")
# the audit line's outcomes (bridge/logs.py), by status
OUTCOMES = ("ok", "auth_failed", "rate_limited", "rejected", "error")
# bridge_backend_errors_total{kind}: what went wrong with a backend call
ERROR_KINDS = ("unavailable", "timeout", "answered", "circuit_open")
# bridge_breaker_state: 0 closed, 1 half-open (the next call probes), 2 open
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
LIMITS = ("address", "username", "backoff", "token_address",
          # the listener's overload bounds (bridge/listener.py), answered 503 + Retry-After
          "connections", "address_connections", "in_flight", "queue_time")
CACHES = ("document", "negative", "coalesced")
# unlabelled names that code makes with inc()/set(): declared at start, so that they read
# 0 (and rate() works) before their first event
COUNTERS = (*(f"bridge_rate_limited_{limit}_total" for limit in LIMITS[:4]),
            "bridge_limit_bypass_trusted_total", "bridge_limit_bypass_new_address_total",
            "bridge_breaker_refusals_total", "bridge_state_store_failures_total",
            "bridge_tokens_issued_total", "bridge_tokens_redeemed_total",
            "bridge_tokens_refused_total")
GAUGES = ("bridge_state_store_degraded", "bridge_event_loop_lag_max_seconds")


class _Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Observe(Protocol):
    def observe(self, amount: float) -> None: ...


class _Set(Protocol):
    def set(self, value: float) -> None: ...


class ProfileMetrics:
    """One profile's series, resolved once (see the module's docstring for why)."""

    __slots__ = (
        "_family",
        "_profile",
        "_requests",
        "_tokens",
        "accounts",
        "authenticate",
        "render",
        "total",
    )

    def __init__(self, metrics: Metrics, profile: str) -> None:
        stage = metrics.stage_seconds
        self.authenticate: _Observe = stage.labels(profile, "authenticate")
        self.accounts: _Observe = stage.labels(profile, "accounts")
        self.render: _Observe = stage.labels(profile, "render")
        self.total: _Observe = stage.labels(profile, "total")
        self._family = metrics.requests
        self._profile = profile
        # (tenant, status) -> its counter; tenants are configured names, statuses the
        # handful the error policy maps to: bounded
        self._requests: dict[tuple[str, int], _Inc] = {}
        self._tokens: dict[int, _Inc] = {}

    def request(self, tenant: str, status: int, seconds: float) -> None:
        """Count one answered request (and its duration) by tenant, outcome and status."""
        counter = self._requests.get((tenant, status))
        if counter is None:
            counter = self._requests[(tenant, status)] = self._resolve(tenant, status)
        counter.inc()
        self.total.observe(seconds)

    def token_request(self, status: int) -> None:
        """One answer of the token endpoint (tenant "token"; not in the stage histograms)."""
        counter = self._tokens.get(status)
        if counter is None:
            counter = self._tokens[status] = self._resolve(ENDPOINT_TENANT, status)
        counter.inc()

    def _resolve(self, tenant: str, status: int) -> _Inc:
        return self._family.labels(self._profile, tenant, outcome(status), str(status))


class BackendMetrics:
    """One backend's series (named by its configuration table), resolved once."""

    __slots__ = ("_reported", "_state", "breaker", "duration", "errors")

    def __init__(self, metrics: Metrics, backend: str, role: str, kind: str) -> None:
        self.duration: _Observe = metrics.backend_seconds.labels(backend, role, kind)
        self.errors: dict[str, _Inc] = {k: metrics.backend_errors.labels(backend, k)
                                        for k in ERROR_KINDS}
        self._state: _Set = metrics.breaker_state.labels(backend)
        self._reported = -1
        # the breaker whose state the gauge shows: the latest built for this table (after
        # a reload, the previous configuration's no longer writes it)
        self.breaker: _Breaker | None = None
        self.state("closed")

    def state(self, state: str) -> None:
        """The breaker's state, written only when it changed (a write is a lock and mmap)."""
        value = BREAKER_STATES[state]
        if value != self._reported:
            self._reported = value
            self._state.set(value)


class _Breaker(Protocol):
    def report(self) -> None: ...


class Metrics:
    """`inc`/`set` by name; `values` is this process's own view (tests read it)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}
        r = self.registry
        self.requests = Counter(
            "bridge_provision_requests", "provisioning requests answered, by profile, tenant, "
            "outcome and status", ("profile", "tenant", "outcome", "status"), registry=r)
        self.stage_seconds = Histogram(
            "bridge_stage_duration_seconds", "time per stage of a provisioning request",
            ("profile", "stage"), registry=r, buckets=FINE_BUCKETS)
        self.backend_seconds = Histogram(
            "bridge_backend_duration_seconds", "time of each call to a backend",
            ("backend", "role", "type"), registry=r, buckets=FINE_BUCKETS)
        self.backend_errors = Counter(
            "bridge_backend_errors", "failed backend calls, by kind",
            ("backend", "kind"), registry=r)
        # across workers: the worst live worker's state (any worker refusing shows)
        self.breaker_state = Gauge(
            "bridge_breaker_state", "circuit breaker: 0 closed, 1 half-open, 2 open",
            ("backend",), registry=r, multiprocess_mode="livemax")
        hits = Counter("bridge_cache_hits", "answers from a cache", ("cache",), registry=r)
        misses = Counter("bridge_cache_misses", "lookups the response cache could not "
                         "answer", ("cache",), registry=r)
        self.cache_hits: dict[str, _Inc] = {c: hits.labels(c) for c in CACHES}
        # only the response cache counts misses: the other two are asked by every request
        # (bridge_provision_requests_total is their denominator), a write saved per request
        self.document_misses: _Inc = misses.labels("document")
        refusals = Counter("bridge_limit_refusals", "requests refused by a rate limit",
                           ("limit",), registry=r)
        self.limit_refusals: dict[str, _Inc] = {x: refusals.labels(x) for x in LIMITS}
        self._profiles: dict[str, ProfileMetrics] = {}
        self._backends: dict[tuple[str, str, str], BackendMetrics] = {}
        for name in COUNTERS:
            self.counter(name)
        for name in GAUGES:
            self.gauge(name)

    def profile(self, name: str) -> ProfileMetrics:
        """The series of the configured profile `name` (or UNKNOWN), made once."""
        metrics = self._profiles.get(name)
        if metrics is None:
            metrics = self._profiles[name] = ProfileMetrics(self, name)
        return metrics

    def backend(self, backend: str, role: str, kind: str) -> BackendMetrics:
        """The series of the backend built from configuration table `backend`."""
        key = (backend, role, kind)
        metrics = self._backends.get(key)
        if metrics is None:
            metrics = self._backends[key] = BackendMetrics(self, backend, role, kind)
        return metrics

    def report_breakers(self) -> None:
        """Each backend's breaker writes its state: open turns half-open by the clock."""
        for backend in list(self._backends.values()):
            if backend.breaker is not None:
                backend.breaker.report()

    def counter(self, name: str) -> Counter:
        """The unlabelled counter `name` ("..._total"), made once; for callers that keep it."""
        counter = self._counters.get(name)
        if counter is None:
            # prometheus-client appends "_total" to a counter's name itself
            counter = Counter(name.removesuffix("_total"), _help(name), registry=self.registry)
            self._counters[name] = counter
        return counter

    def histogram(self, name: str) -> Histogram:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = Histogram(name, _help(name), registry=self.registry, buckets=BUCKETS)
            self._histograms[name] = histogram
        return histogram


    def inc(self, name: str, amount: float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount
        self.counter(name).inc(amount)

    def set(self, name: str, value: float) -> None:
        self.values[name] = value
        self.gauge(name).set(value)

    def gauge(self, name: str) -> Gauge:
        gauge = self._gauges.get(name)
        if gauge is None:
            # across workers: the worst live worker's value (a degraded store, the loop lag)
            gauge = Gauge(name, _help(name), registry=self.registry,
                          multiprocess_mode="livemax")
            self._gauges[name] = gauge
        return gauge

    def observe(self, name: str, seconds: float) -> None:
        """A duration into the histogram `name` (buckets from 5 ms to the longest deadline)."""
        self.histogram(name).observe(seconds)

    def render(self) -> bytes:
        self.report_breakers()
        return generate_latest(_Scrape(self))

    def families(self) -> list[Metric]:
        """This process's families, or all workers' in multiprocess mode; with the kept names."""
        folder = os.environ.get(MULTIPROC_ENV)
        families: list[Metric] = list(
            MultiProcessCollector(None, path=folder).collect()  # type: ignore[no-untyped-call]
            if folder else self.registry.collect())
        return [*families, *_legacy(families)]


class _Scrape:
    """A collector for generate_latest: what `Metrics.families` finds at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.families()


def listen_address(listen: str) -> tuple[str, int]:
    """("HOST", PORT) of "HOST:PORT" or "[V6]:PORT"; ValueError if it is neither."""
    host, colon, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, received {listen!r}")
    return host, int(port)


def serve_on(listen: str) -> None:
    """Serve the metrics at "HOST:PORT" too, from a thread of this process.

    With workers that is the supervisor: it reads the workers' files like any of them
    would. Each scrape is answered in that thread (prometheus-client's own server)."""
    host, port = listen_address(listen)
    start_http_server(port, host, registry=_Scrape(METRICS))


def _legacy(families: Iterable[Metric]) -> Iterator[Metric]:
    """The unlabelled request series of before, summed from the labelled ones."""
    requests = {"": 0.0, ENDPOINT_TENANT: 0.0}
    responses: dict[tuple[str, str], float] = {}
    buckets = dict.fromkeys((*BUCKETS, float("inf")), 0.0)
    total = 0.0
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "bridge_provision_requests_total":
                which = ENDPOINT_TENANT if labels["tenant"] == ENDPOINT_TENANT else ""
                requests[which] += sample.value
                key = (which, labels["status"])
                responses[key] = responses.get(key, 0.0) + sample.value
            elif (sample.name.startswith("bridge_stage_duration_seconds_")
                  and labels.get("stage") == "total"):
                if sample.name.endswith("_bucket"):
                    le = float(labels["le"])
                    if le in buckets:
                        buckets[le] += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
    yield CounterMetricFamily("bridge_requests", "provisioning requests", requests[""])
    yield CounterMetricFamily("bridge_token_requests", "token requests", requests[ENDPOINT_TENANT])
    for (which, status), value in sorted(responses.items()):
        prefix = "bridge_token_responses_" if which else "bridge_responses_"
        yield CounterMetricFamily(prefix + status, f"responses {status}", value)
    # the stage histogram's buckets are cumulative and include every old one: exact
    yield HistogramMetricFamily(
        "bridge_request_duration_seconds", "request duration seconds",
        buckets=[(_le(le), value) for le, value in buckets.items()], sum_value=total)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _help(name: str) -> str:
    return name.removeprefix("bridge_").replace("_", " ")


def worker_exited(pid: int) -> None:
    """Drop a dead worker's gauges (its counters stay: they are part of the totals)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


METRICS = Metrics()


async def watch_event_loop(interval: float = 0.05) -> None:
    """Record how late the event loop wakes up: blocking code on the loop shows up here.

    A sleep of `interval` that returns `lag` seconds late means something held
    the loop for about that long; the worst value since start is kept.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    turns = 0
    while True:
        turns += 1
        if turns % 20 == 0:  # about every second: an idle worker's breakers still report
            METRICS.report_breakers()
        start = loop.time()
        await asyncio.sleep(interval)
        lag = loop.time() - start - interval
        if lag > METRICS.values.get("bridge_event_loop_lag_max_seconds", 0.0):
            METRICS.set("bridge_event_loop_lag_max_seconds", lag)

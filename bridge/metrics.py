"""Counters and gauges in Prometheus' text format, correct across worker processes.

With `serve --workers N` each worker counts its own requests; a scrape reaches
one of them, so plain in-process counters read 6, then 7, then 6. The
supervisor (bridge/server.py) therefore gives the workers a private folder in
PROMETHEUS_MULTIPROC_DIR, prometheus-client keeps every value in a memory-mapped
file per process there, and /metrics sums them: any worker answers with the
totals. A single process keeps its values in memory.

Labels are deliberately absent: nothing user-supplied (usernames, addresses,
let alone passwords) can end up in a metric. Names are created on first use
(`bridge_responses_503_total`); statuses and configured names only.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """`inc`/`set` by name; `values` is this process's own view (tests read it)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}

    def inc(self, name: str, amount: float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount
        counter = self._counters.get(name)
        if counter is None:
            # prometheus-client appends "_total" to a counter's name itself
            counter = Counter(name.removesuffix("_total"), _help(name), registry=self.registry)
            self._counters[name] = counter
        counter.inc(amount)

    def set(self, name: str, value: float) -> None:
        self.values[name] = value
        gauge = self._gauges.get(name)
        if gauge is None:
            # across workers: the worst live worker's value (a degraded store, the loop lag)
            gauge = Gauge(name, _help(name), registry=self.registry,
                          multiprocess_mode="livemax")
            self._gauges[name] = gauge
        gauge.set(value)

    def observe(self, name: str, seconds: float) -> None:
        """A duration into the histogram `name` (buckets from 5 ms to the longest deadline)."""
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = Histogram(name, _help(name), registry=self.registry, buckets=BUCKETS)
            self._histograms[name] = histogram
        histogram.observe(seconds)

    def render(self) -> bytes:
        folder = os.environ.get(MULTIPROC_ENV)
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


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
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        lag = loop.time() - start - interval
        if lag > METRICS.values.get("bridge_event_loop_lag_max_seconds", 0.0):
            METRICS.set("bridge_event_loop_lag_max_seconds", lag)

"""A few process-local counters and gauges, served in Prometheus' text format.

Labels are deliberately absent: nothing user-supplied (usernames, addresses,
let alone passwords) can end up in a metric.
"""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def inc(self, name: str, amount: float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount

    def set(self, name: str, value: float) -> None:
        self.values[name] = value

    def render(self) -> str:
        lines = []
        for name in sorted(self.values):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines.append(f"# TYPE {name} {kind}\n{name} {self.values[name]:g}")
        return "\n".join(lines) + "\n"


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

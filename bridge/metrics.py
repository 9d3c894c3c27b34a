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

"""deploy/grafana: every series the dashboard queries is in the /metrics of a real gateway
(2 workers) that served requests of every outcome, with the labels and values it asks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.samples import Sample

from tests.ops.test_metrics import served  # noqa: F401  (the gateway and its scrapes)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "zoiper-bridge.json"
SELECTOR = re.compile(r"\b(bridge_[a-z0-9_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def problems(expr: str, samples: list[Sample]) -> list[str]:
    """What `expr` asks for that the scrape does not have (names, labels, label values)."""
    found: list[str] = []
    selected: list[Sample] = []
    for name, matchers in SELECTOR.findall(expr):
        series = [s for s in samples if s.name == name]
        if not series:
            found.append(f"no series {name}")
            continue
        for label, op, wanted in MATCHER.findall(matchers):
            if not any(label in s.labels for s in series):
                found.append(f"{name} has no label {label}")
            elif op == "=" and not any(s.labels[label] == wanted for s in series
                                       if label in s.labels):
                found.append(f"{name} has no {label}={wanted!r}")
        selected += series
    for group in GROUPING.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if not any(label in s.labels for s in selected):
                found.append(f"grouping by {label}, which none of its series has")
    return found


def test_every_queried_series_exists_in_a_real_scrape(served) -> None:  # noqa: F811
    _, scrapes = served
    exprs = expressions()
    queried = {m for e in exprs for m, _ in SELECTOR.findall(e)}
    assert len(queried) >= 20
    for _, samples in scrapes:
        assert [(e, p) for e in exprs for p in problems(e, samples)] == []


def test_the_check_finds_what_is_missing(served) -> None:  # noqa: F811
    _, scrapes = served
    samples = scrapes[0][1]
    assert problems('sum(rate(bridge_no_such_total[5m]))', samples) == [
        "no series bridge_no_such_total"]
    assert problems('rate(bridge_stage_duration_seconds_count{stage="totl"}[5m])', samples) == [
        "bridge_stage_duration_seconds_count has no stage='totl'"]
    assert problems('sum by (user) (rate(bridge_provision_requests_total[5m]))', samples) == [
        "grouping by user, which none of its series has"]


def test_panels_do_not_overlap() -> None:
    seen: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & seen, panel["title"]
        seen |= cells

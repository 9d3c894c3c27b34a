"""deploy/grafana: every metric the dashboard queries is one the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "zoiper-bridge.json"
# METRICS.inc("name") / set / observe, and f-strings whose {…} is a status or a limit's name
CALL = re.compile(r'METRICS\.(?:inc|set|observe)\(f?"(bridge_[^"]+)"')
# what each f-string's placeholder can be (bridge/guard.py's _refuse, HTTP statuses)
PLACEHOLDERS = {"{which}": "(?:address|username|backoff)", "{response.status_code}": "[0-9]+"}


def exported() -> list[re.Pattern[str]]:
    patterns = []
    for path in (ROOT / "bridge").rglob("*.py"):
        for name in CALL.findall(path.read_text()):
            regex = re.escape(name)
            for placeholder, values in PLACEHOLDERS.items():
                regex = regex.replace(re.escape(placeholder), values)
            assert "{" not in regex, f"unknown placeholder in {name} ({path})"
            patterns.append(re.compile(regex))
    return patterns


def test_every_queried_metric_is_exported():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {re.sub(r"_(bucket|sum|count)$", "", m)
               for e in expressions for m in re.findall(r"\bbridge_[a-z0-9_]+", e)}
    assert len(queried) >= 15
    patterns = exported()
    missing = sorted(q for q in queried if not any(p.fullmatch(q) for p in patterns))
    assert missing == []


def test_panels_do_not_overlap():
    seen: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & seen, panel["title"]
        seen |= cells

"""The benchmark suite must keep working: one short round of every scenario (no speed checks),
and a restart storm of 500 phones in which every phone gets a 200 or a 503 with Retry-After
and none times out (bench/storm.py; its latency bound is checked in the full run only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import SCENARIOS, STORM

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_every_scenario_runs(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--seconds", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [report] = tmp_path.glob("*-smoke.md")
    table = report.read_text()
    for key in SCENARIOS:
        assert f"| {key}: " in table, f"scenario {key} missing:\n{table}"
    # the storm: its table, one storm of 500 phones, and the criteria met
    assert f"\n{STORM}: restart storm" in table, table
    assert "\n| 1 | 500 / 1 | " in table, table
    assert "\nPASS: every phone a 200 or a 503 + Retry-After" in table, table
    # every scenario got the answers it expects (the harness reports mismatches on stderr)
    assert "! scenario" not in result.stderr, result.stderr[-3000:]

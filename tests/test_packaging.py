"""The installed package, not just this checkout, must carry the demo and serve it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.zoiper.document import parse_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "bridge" / "demo"


def test_demo_database_matches_its_sql():
    built = sqlite3.connect(":memory:")
    built.executescript((DEMO / "accounts.sql").read_text())
    shipped = sqlite3.connect(f"{(DEMO / 'accounts.sqlite').as_uri()}?mode=ro", uri=True)
    assert list(shipped.iterdump()) == list(built.iterdump())


@pytest.mark.slow
def test_wheel_carries_the_demo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    [wheel] = (tmp_path / "dist").glob("zoiper_bridge-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300, capture_output=True)
    # Run from an empty folder with only the installed copy on the path.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bridge, bridge.cli; "
            "assert bridge.__file__.startswith(sys.argv[1]), bridge.__file__; "
            "sys.argv = ['zoiper-bridge', 'render', '--username', 'alice']; "
            "sys.exit(bridge.cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, str(target)], input="wonderland\n",
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert parse_config(result.stdout.encode())["accounts"][0]["username"] == "1001"

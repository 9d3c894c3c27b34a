"""`zoiper-bridge --version`, and a usage example in every command's --help."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from bridge.cli import parser

COMMANDS = ["serve", "check-config", "render", "hash-password"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"zoiper-bridge {version('zoiper-bridge')}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_an_example(command: str | None, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([command, "--help"] if command else ["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    example = text.split("example:\n", 1)[1]
    assert example.startswith("  ") and "zoiper-bridge " in example.splitlines()[0]
    if command:
        assert f"zoiper-bridge {command}" in example

"""Fixtures for the operations tests: a copy of the demo configuration one can edit."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import httpx
import pytest

DEMO_USER = {"user": "alice", "password": "wonderland"}


def demo_copy(folder: Path, server: str = "") -> Path:
    """The built-in demo's files in `folder`; `server`: lines for its [server] table."""
    demo = resources.files("bridge") / "demo"
    with resources.as_file(demo) as source:
        for name in ("config.toml", "users.toml", "accounts.sqlite"):
            shutil.copy(Path(source) / name, folder / name)
    config = folder / "config.toml"
    if server:
        config.write_text(f"[server]\n{server}\n" + config.read_text())
    return config


def provision(base_url: str, **params: str) -> httpx.Response:
    """One provisioning request on a new connection (so that every worker gets some)."""
    with httpx.Client(timeout=15) as client:
        return client.get(base_url + "/provision", params=params or DEMO_USER)


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    return demo_copy(tmp_path)

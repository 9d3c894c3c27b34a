"""The token store in /readyz and `check-config --connect`: a phone's QR code is useless while
the store cannot be reached, so an instance without it is not ready."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.settings import load
from tests.conftest import unavailable
from tests.ldap.slapd import free_port
from tests.tokens.conftest import token_config

ROOT = Path(__file__).resolve().parents[2]


def redis_on(port: int) -> subprocess.Popen[bytes]:
    """A private redis-server (the machine's is shared by other tests: it must stay up)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.RedisError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("the private redis-server did not answer")


def test_readyz_fails_while_the_token_store_is_unreachable(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture):
    port = free_port()
    server = redis_on(port)
    try:
        config = token_config(tmp_path, f'backend = "redis"\nurl = "redis://127.0.0.1:{port}/0"')
        with TestClient(create_app(load(config))) as client, \
                caplog.at_level(logging.INFO, logger="bridge"):
            assert client.get("/readyz").status_code == 200
            server.kill()
            server.wait(10)
            assert client.get("/readyz").status_code == 503
    finally:
        server.kill()
    logged = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert logged and all(m.startswith("not ready: [tokens] token store (Redis)")
                          for m in logged), logged


def test_check_config_connect_reports_the_token_store(tmp_path: Path):
    def check(config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", "--connect",
                               str(config)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)

    ready = check(token_config(tmp_path / "sqlite"))
    assert ready.returncode == 0, ready.stderr
    assert "[tokens] ready" in ready.stdout
    dead = check(token_config(tmp_path / "dead", 'backend = "redis"\n'
                              f'url = "redis://127.0.0.1:{free_port()}/0"'))
    assert dead.returncode == 1
    assert "[tokens] NOT READY: token store (Redis): ConnectionError" in dead.stderr

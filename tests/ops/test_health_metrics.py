"""/healthz, /readyz, and /metrics totals across worker processes."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import ConfigError
from bridge.settings import load
from tests.gateway import Gateway
from tests.ops.conftest import demo_copy, provision
from tests.ops.test_reload import wait_for


def samples(text: str) -> dict[str, float]:
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


def test_metrics_are_totals_over_all_workers(tmp_path: Path):
    config = demo_copy(tmp_path)
    with Gateway(config, tmp_path, extra_args=("--workers", "2")) as gw:
        wait_for(lambda: _serving(gw.base_url))  # one request counted (a 200)
        statuses = [provision(gw.base_url).status_code for _ in range(9)]
        statuses += [provision(gw.base_url, user="alice", password="not-it!").status_code
                     for _ in range(3)]
        assert statuses == [200] * 9 + [401] * 3
        scrapes = []
        for _ in range(12):  # new connections: both workers answer some
            with httpx.Client() as client:
                scrapes.append(samples(client.get(gw.base_url + "/metrics").text))
        pids = {line for line in gw.output().splitlines() if "Started server process" in line}
    assert len(pids) == 2
    for seen in scrapes:
        assert seen["bridge_requests_total"] == 13
        assert seen["bridge_responses_200_total"] == 10
        assert seen["bridge_responses_401_total"] == 3
        assert seen["bridge_request_duration_seconds_count"] == 13
        assert 0 < seen["bridge_request_duration_seconds_sum"] < 13 * 10


def _serving(base_url: str) -> bool:
    try:
        return provision(base_url).status_code == 200
    except httpx.TransportError:
        return False


def test_health_and_readiness(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    config = demo_copy(tmp_path)
    app = create_app(load(config))
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="bridge"):
        assert client.get("/healthz").text == "ok\n"
        ready = client.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ready\n")
        # the account source's query can no longer run: not ready, and the log says why
        with sqlite3.connect(tmp_path / "accounts.sqlite") as db:
            db.execute("DROP TABLE accounts")
        ready = client.get("/readyz")
        assert (ready.status_code, ready.text) == (503, "not ready\n")
        assert client.get("/healthz").status_code == 200  # alive all the same
        # health checks are neither limited nor audited
        for _ in range(30):
            assert client.get("/healthz").status_code == 200
    logged = [r.getMessage() for r in caplog.records]
    assert any("not ready: [source] sqlite" in m and "no such table" in m for m in logged), logged
    assert not [r for r in caplog.records if r.name in ("bridge.audit", "bridge.access")]


def test_health_paths_are_configurable_or_off(tmp_path: Path):
    config = demo_copy(tmp_path, 'healthz_path = "/live"\nreadyz_path = ""')
    with TestClient(create_app(load(config))) as client:
        assert client.get("/live").status_code == 200
        assert client.get("/healthz").status_code == 404
        assert client.get("/readyz").status_code == 404


def test_a_health_path_cannot_shadow_another(tmp_path: Path):
    config = demo_copy(tmp_path, 'readyz_path = "/metrics"')
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert "server.readyz_path" in str(caught.value.problems)


def _with_redis(config: Path, port: int, on_failure: str) -> Path:
    config.write_text(config.read_text() + f"""
[state]
backend = "redis"
redis_url = "redis://127.0.0.1:{port}/0"
redis_prefix = "zb-ready-test:"
secret = "a-shared-secret-for-the-test"
on_failure = "{on_failure}"
""")
    return config


@pytest.mark.parametrize(("on_failure", "down_status"), [("closed", 503), ("local", 200)])
def test_readiness_follows_redis_when_requests_need_it(tmp_path: Path, on_failure: str,
                                                       down_status: int,
                                                       caplog: pytest.LogCaptureFixture):
    """With on_failure = "closed" every request fails while Redis is unreachable, so the
    instance is not ready (a load balancer sends phones elsewhere); with "local" it serves
    on its own limits, degraded but ready. Redis on 6379 is the machine's (tests/run.sh)."""
    from tests.ldap.slapd import free_port

    up = create_app(load(_with_redis(demo_copy(tmp_path), 6379, on_failure)))
    with TestClient(up) as client:
        assert client.get("/readyz").status_code == 200
    down = tmp_path / "down"
    down.mkdir()
    app = create_app(load(_with_redis(demo_copy(down), free_port(), on_failure)))
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="bridge"):
        assert client.get("/readyz").status_code == down_status
    logged = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert bool(logged) == (down_status == 503)
    assert all(m.startswith("not ready: [state]") for m in logged), logged

"""Labelled metrics from a real `serve --workers 2`: totals per profile, tenant, outcome and
status equal what the phones got, stage and backend histograms count what was asked, a
backend on a closed port opens its breaker, and nothing a phone sent shows up."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.gateway import Gateway, free_port
from tests.ops.conftest import demo_copy, provision
from tests.ops.test_reload import wait_for

# a tenant whose account source is an HTTP server that is not there (a closed port)
DOWN_TENANT = """
[limits]
username_failures = 1
bypass_failures = 0
backoff_base = 0

[tenants.down]
domains = ["down.example"]

[tenants.down.auth]
type = "file"
path = "users.toml"

[tenants.down.source]
type = "http"
url = "http://127.0.0.1:{port}/lines/{{identity.username}}"
allow_http = true
accounts_path = "lines"

[tenants.down.breaker]
failures = 2
cooldown = 600
"""
SECRETS = ("alice", "wonderland", "bob", "guess-", "127.0.0.1", "down.example")


def metrics_config(folder: Path) -> Path:
    """The demo, a limit that refuses quickly, and tenant "down" (see DOWN_TENANT)."""
    config = demo_copy(folder)
    config.write_text(config.read_text() + DOWN_TENANT.format(port=free_port()))
    return config


def serve_mix(base_url: str) -> Counter[tuple[str, str, int]]:
    """Requests of every outcome; what the phones got, by (profile, tenant, status)."""
    got: Counter[tuple[str, str, int]] = Counter()
    for _ in range(6):
        got["default", "default", provision(base_url).status_code] += 1
    for i in range(6):  # wrong passwords: 401, then (per worker's memory) 429
        got["default", "default",
            provision(base_url, user="bob", password=f"guess-{i}").status_code] += 1
    for _ in range(8):  # the source is down: 503, then the breaker answers (503)
        got["default", "default/down",
            provision(base_url, user="alice@down.example", password="wonderland"
                      ).status_code] += 1
    return got


def scrape(base_url: str) -> tuple[str, list[Sample]]:
    with httpx.Client() as client:  # a new connection: either worker may answer
        text = client.get(base_url + "/metrics").text
    return text, [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Counter[tuple[str, str, int]],
                                                              list[tuple[str, list[Sample]]]]:
    folder = tmp_path_factory.mktemp("metrics")
    with Gateway(metrics_config(folder), folder, extra_args=("--workers", "2")) as gw:
        wait_for(lambda: _up(gw.base_url))
        got = serve_mix(gw.base_url)
        scrapes = [scrape(gw.base_url) for _ in range(8)]
        pids = {line for line in gw.output().splitlines() if "Started server process" in line}
    assert len(pids) == 2
    return got, scrapes


def _up(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_labelled_totals_equal_the_answers_across_workers(served) -> None:
    got, scrapes = served
    statuses = Counter(status for (_, _, status) in got.elements())
    assert statuses[200] == 6 and statuses[401] >= 1 and statuses[429] >= 1, statuses
    assert statuses[503] == 8
    outcome = {200: "ok", 401: "auth_failed", 429: "rate_limited", 503: "error"}
    for _, samples in scrapes:  # whichever worker answered: the same totals
        seen = {(s.labels["profile"], s.labels["tenant"], int(s.labels["status"])): s.value
                for s in samples if s.name == "bridge_provision_requests_total"}
        assert seen == {key: float(n) for key, n in got.items()}
        for s in samples:
            if s.name == "bridge_provision_requests_total":
                assert s.labels["outcome"] == outcome[int(s.labels["status"])]
        # the names from before stay, summed from the labelled ones
        assert value(samples, "bridge_requests_total") == 20
        for status, n in statuses.items():
            assert value(samples, f"bridge_responses_{status}_total") == n
        assert value(samples, "bridge_request_duration_seconds_count") == 20


def test_stages_and_backends_count_what_was_asked(served) -> None:
    got, scrapes = served
    ok = got["default", "default", 200]
    wrong = got["default", "default", 401]  # each a new password: the file was asked
    for _, samples in scrapes:
        count = "bridge_stage_duration_seconds_count"
        assert value(samples, count, profile="default", stage="total") == 20
        # the down tenant's file is asked 8 times: the breaker peeks at both backends
        # first, and refuses once open, before anyone authenticates
        down_auth = value(samples, "bridge_backend_duration_seconds_count",
                          backend="tenants.down.auth")
        assert 2 <= down_auth <= 4  # 2 failures per worker open it (a worker may get < 2)
        assert value(samples, count, profile="default", stage="authenticate") == (
            ok + wrong + down_auth)
        assert value(samples, count, profile="default", stage="accounts") == ok
        assert value(samples, count, profile="default", stage="render") == ok
        assert value(samples, "bridge_backend_duration_seconds_count", backend="auth",
                     role="auth", type="file") == ok + wrong
        assert value(samples, "bridge_backend_duration_seconds_count", backend="source",
                     role="source", type="sqlite") == ok
        assert value(samples, "bridge_limit_refusals_total", limit="username") == (
            got["default", "default", 429])


def test_a_backend_down_opens_its_breaker_and_counts_errors(served) -> None:
    _, scrapes = served
    for _, samples in scrapes:
        errors = "bridge_backend_errors_total"
        unavailable = value(samples, errors, backend="tenants.down.source", kind="unavailable")
        refused = value(samples, errors, backend="tenants.down.source", kind="circuit_open")
        assert 2 <= unavailable <= 4 and unavailable + refused == 8
        # 8 requests over 2 workers: one worker got at least 4, and its breaker is open
        assert value(samples, "bridge_breaker_state", backend="tenants.down.source") == 2
        assert value(samples, "bridge_breaker_state", backend="source") == 0
        assert value(samples, errors, backend="source") == 0


def test_nothing_a_phone_sent_is_in_the_metrics(served) -> None:
    _, scrapes = served
    for text, _ in scrapes:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_on_their_own_address(tmp_path: Path, workers: str) -> None:
    port = free_port()
    config = demo_copy(tmp_path, f'metrics_listen = "127.0.0.1:{port}"\nmetrics_path = ""')
    with Gateway(config, tmp_path, extra_args=("--workers", workers)) as gw:
        wait_for(lambda: _up(gw.base_url))
        assert [provision(gw.base_url).status_code for _ in range(3)] == [200] * 3
        assert httpx.get(gw.base_url + "/metrics").status_code == 404  # not on the phones' port
        for _ in range(4):
            _, samples = scrape(f"http://127.0.0.1:{port}")
            assert value(samples, "bridge_provision_requests_total", profile="default",
                         outcome="ok") == 3
            assert value(samples, "bridge_requests_total") == 3


def test_a_metrics_address_that_is_not_one_is_refused(tmp_path: Path) -> None:
    from bridge.config import ConfigError
    from bridge.settings import load

    with pytest.raises(ConfigError) as caught:
        load(demo_copy(tmp_path, 'metrics_listen = "9105"'))
    assert caught.value.problems == [
        "Config value 'server.metrics_listen': expected HOST:PORT, received '9105'"]


def test_the_listeners_overload_refusals_are_counted(tmp_path: Path) -> None:
    import asyncio

    config = demo_copy(tmp_path, "max_connections = 2")

    async def burst(base_url: str) -> list[int]:
        async def one(i: int) -> int:
            async with httpx.AsyncClient(timeout=30) as client:  # a connection each
                params = {"user": "alice", "password": f"slow-scrypt-{i}"}
                return (await client.get(base_url + "/provision", params=params)).status_code
        return list(await asyncio.gather(*(one(i) for i in range(8))))

    with Gateway(config, tmp_path) as gw:
        wait_for(lambda: _up(gw.base_url))
        statuses = asyncio.run(burst(gw.base_url))
        refused = statuses.count(503)
        assert refused >= 1, statuses
        _, samples = scrape(gw.base_url)
    assert value(samples, "bridge_limit_refusals_total", limit="connections") == refused
    # refused before the application: not provisioning requests
    assert value(samples, "bridge_provision_requests_total") == len(statuses) - refused

"""Corporate logins end to end: `zoiper-bridge serve` (a subprocess) in front of a real slapd.

Run with -s to see the concurrency figures (wall time, requests/s, latency
percentiles, and the latency of a cheap endpoint probed during the burst,
which is how long the event loop kept other work waiting).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.ldap.config import DEFAULT_CLIENT
from bridge.zoiper.document import parse_config, parse_error
from tests.auth.test_ldap import CLIENTS
from tests.conftest import unavailable
from tests.gateway import Gateway
from tests.ldap import slapd as slapd_mod
from tests.ldap.slapd import (
    GROUPS_DN,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    Slapd,
    bind_count,
)

pytestmark = pytest.mark.slow

PASSWORD_ENV = "ZB_E2E_LDAP_BIND_PASSWORD"
ALICE = USERS["alice"]
CONCURRENT = 200


def write_config(folder: Path, server: Slapd, client: str, extra: str = "") -> Path:
    config = folder / f"ldap-{client}.toml"
    config.write_text(f"""
[server]
log_level = "info"

[auth]
type = "ldap"
client = "{client}"
uri = "{server.ldaps_uri}"
ca_file = "{server.ca_file}"
tls_name = "{server.tls_name}"
bind_dn = "{SERVICE_DN}"
bind_password_env = "{PASSWORD_ENV}"
timeout = 2
connect_timeout = 1
username_attribute = "uid"

[auth.user_search]
base = "{PEOPLE_DN}"
filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"

[auth.attributes]
displayName = "displayName"
extension = "telephoneNumber"
mail = "mail"

[auth.groups]
base = "{GROUPS_DN}"
required = ["voip"]

[source]
type = "ldap"
require = ["extension"]

[mapping.account]
name = "{{identity.displayName}} ({{account.extension}})"
username = "{{account.extension}}"
password = "{{login.password}}"
SIP_domain = "pbx.example.org"
SIP_callerId = "{{account.displayName}}"
{extra}
""")
    return config


def gateway(folder: Path, server: Slapd, client: str, extra: str = "") -> Gateway:
    return Gateway(write_config(folder, server, client, extra), folder,
                   env={PASSWORD_ENV: SERVICE_PASSWORD})


def get(gw: Gateway, user: str, password: str) -> httpx.Response:
    return httpx.get(gw.base_url + "/provision", params={"user": user, "password": password},
                     timeout=10)


@pytest.fixture(scope="module", params=CLIENTS)
def site(request: pytest.FixtureRequest, slapd: Slapd,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway(tmp_path_factory.mktemp("e2e-ldap"), slapd, request.param) as gw:
        yield gw


def test_directory_user_gets_a_configuration_from_directory_data(site: Gateway) -> None:
    response = get(site, "alice", ALICE.password)
    assert response.status_code == 200, response.text
    [account] = parse_config(response.content)["accounts"]
    assert account["username"] == "101"                        # telephoneNumber
    assert account["name"] == "Alice Liddell (101)"            # displayName
    assert account["SIP_callerId"] == "Alice Liddell"
    assert account["password"] == ALICE.password
    assert account["SIP_domain"] == "pbx.example.org"
    carol = get(site, "carol", USERS["carol"].password)        # voip through staff
    assert parse_config(carol.content)["accounts"][0]["username"] == "103"


def test_wrong_password_and_unknown_user_are_the_same_401(site: Gateway) -> None:
    wrong = get(site, "dave", "not-daves-password")
    unknown = get(site, "nobody", "not-daves-password")
    hostile = get(site, "*", "not-daves-password")
    assert wrong.status_code == unknown.status_code == hostile.status_code == 401
    assert wrong.content == unknown.content == hostile.content
    assert parse_error(wrong.content) == "Wrong username or password."


def test_not_in_the_group_is_403(site: Gateway) -> None:
    response = get(site, "bob", USERS["bob"].password)
    assert response.status_code == 403
    assert "not allowed" in parse_error(response.content)


@pytest.mark.parametrize("client", CLIENTS)
def test_outage_is_503_and_the_same_gateway_recovers(private_slapd: Slapd, tmp_path: Path,
                                                     client: str) -> None:
    with gateway(tmp_path, private_slapd, client) as gw:
        assert get(gw, "alice", ALICE.password).status_code == 200
        private_slapd.stop()
        for user, password in (("alice", ALICE.password), ("dave", "wrong-password")):
            down = get(gw, user, password)
            assert down.status_code == 503, down.text
            assert int(down.headers["retry-after"]) > 0
            assert parse_error(down.content) == "The service is temporarily unavailable. " \
                                                "Please try again later."
        private_slapd.start()
        deadline = time.monotonic() + 10
        while (status := get(gw, "alice", ALICE.password).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline
            time.sleep(0.2)
        # the outage did not count as a wrong password for dave
        assert get(gw, "dave", USERS["dave"].password).status_code == 200


@pytest.fixture(scope="module")
def bulk_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if reason := slapd_mod.missing():
        unavailable(f"OpenLDAP fixture unavailable: {reason}")
    server = Slapd(tmp_path_factory.mktemp("bulk"), bulk_users=CONCURRENT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_concurrent_provisioning(bulk_slapd: Slapd, tmp_path: Path, client: str) -> None:
    # All 200 come from 127.0.0.1: lift the per-address limit, which counts attempts in flight.
    extra = "[limits]\naddress_failures = 1000\n"
    with gateway(tmp_path, bulk_slapd, client, extra) as gw:
        assert get(gw, "alice", ALICE.password).status_code == 200  # warm: imports, TLS
        assert gw.process is not None
        cpu = cpu_seconds(gw.process.pid)
        statuses, latencies, probes, wall = asyncio.run(burst(gw))
        cpu = cpu_seconds(gw.process.pid) - cpu
    assert statuses == [200] * CONCURRENT
    q = statistics.quantiles(latencies, n=100)
    pq = statistics.quantiles(probes, n=100) if len(probes) > 1 else probes * 99
    print(f"\n[{client}] {CONCURRENT} concurrent provisioning requests: {wall:.2f} s wall, "
          f"{CONCURRENT / wall:.0f} req/s; latency p50 {q[49] * 1000:.0f} ms, "
          f"p95 {q[94] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
          f"/metrics from another process during the burst ({len(probes)}x): "
          f"p50 {pq[49] * 1000:.1f} ms, "
          f"max {max(probes) * 1000:.1f} ms; gateway CPU {cpu / CONCURRENT * 1000:.1f} ms "
          f"per request")
    assert wall < 20


PROBE = """
import http.client, json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
conn, seen = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30), []
print("ready", flush=True)
try:
    while True:
        started = time.perf_counter()
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        seen.append(time.perf_counter() - started)
        time.sleep(0.005)
finally:
    print(json.dumps(seen), flush=True)
"""


async def burst(gw: Gateway) -> tuple[list[int], list[float], list[float], float]:
    """200 different users at once, while another process keeps asking a cheap endpoint.

    The probe runs in its own process so that its latency is the gateway's (its event
    loop answering /metrics between provisioning work), not this client's own loop.
    """
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(gw.port)],
                             stdout=subprocess.PIPE, text=True)
    assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
    limits = httpx.Limits(max_connections=CONCURRENT + 10,
                          max_keepalive_connections=CONCURRENT + 10)
    async with httpx.AsyncClient(base_url=gw.base_url, limits=limits, timeout=30) as http:
        async def one(i: int) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await http.get("/provision",
                                      params={"user": f"user{i}", "password": f"pass{i}"})
            return response, time.perf_counter() - started

        await asyncio.sleep(0.05)
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(1, CONCURRENT + 1)))
        wall = time.perf_counter() - started
    probe.terminate()
    probes = json.loads(probe.communicate(timeout=10)[0])
    for i, (response, _) in enumerate(results, 1):  # checked after the clock stopped
        if response.status_code == 200:
            [account] = parse_config(response.content)["accounts"]
            assert account["username"] == str(1000 + i)
    return [r.status_code for r, _ in results], [t for _, t in results], probes, wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to tell the gateway's cost from the rest."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_stale_password_restarts_cost_one_bind(monitored_slapd: Slapd,
                                               tmp_path: Path) -> None:
    """A phone with an old password restarting 50 times: the directory sees one bind.

    The core's lockout memory answers the repeats; which LDAP client runs does not matter,
    so this runs with the default one.
    """
    monitor = monitored_slapd.monitor()
    with gateway(tmp_path, monitored_slapd, DEFAULT_CLIENT) as gw:
        assert get(gw, "alice", ALICE.password).status_code == 200  # pools are open now
        time.sleep(0.2)
        before = bind_count(monitor)
        with httpx.Client(base_url=gw.base_url, timeout=10) as http:
            statuses = {http.get("/provision", params={"user": "dave", "password": "old-pw"})
                        .status_code for _ in range(50)}
        time.sleep(0.2)
        binds = bind_count(monitor) - before
    monitor.unbind()
    assert statuses == {401}
    assert binds == 1, f"{binds} binds for 50 requests"


def test_wrong_service_password_is_503_and_one_service_bind(monitored_slapd: Slapd,
                                                             tmp_path: Path) -> None:
    """A wrong bind_password: every request a 503, and the directory sees one failed bind for
    all of them (it used to see one per request, which locks the account under AD lockout)."""
    wrong = "not-the-gateway-secret"
    monitor = monitored_slapd.monitor()
    gw = Gateway(write_config(tmp_path, monitored_slapd, DEFAULT_CLIENT), tmp_path,
                 env={PASSWORD_ENV: wrong})
    with gw:
        before = bind_count(monitor)
        with httpx.Client(base_url=gw.base_url, timeout=10) as http:
            statuses = [http.get("/provision", params={"user": user, "password": password})
                        .status_code for _ in range(10)
                        for user, password in (("alice", ALICE.password), ("dave", "x"))]
        binds = bind_count(monitor) - before
        log = gw.output()
    monitor.unbind()
    assert statuses == [503] * 20
    assert 1 <= binds <= 2, f"{binds} service binds for 20 requests"
    assert log.count("rejected the service account") == 1, log
    assert SERVICE_DN in log and wrong not in log


def test_examples_pass_check_config() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "LDAP_BIND_PASSWORD": "example-secret"}
    for name in ("openldap.toml", "active-directory.toml"):
        path = root / "deploy" / "examples" / name
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", str(path)],
                                capture_output=True, text=True, env=env, cwd=root, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout
        without = {k: v for k, v in env.items() if k != "LDAP_BIND_PASSWORD"}
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", str(path)],
                                capture_output=True, text=True, env=without, cwd=root,
                                timeout=60, check=False)
        assert result.returncode == 2 and "LDAP_BIND_PASSWORD" in result.stderr


def test_no_secret_reaches_the_output_on_any_ldap_path(private_slapd: Slapd,
                                                      tmp_path: Path) -> None:
    """Debug logging, every LDAP outcome: 200, 401, 403, 503 (directory stopped)."""
    config = write_config(tmp_path, private_slapd, DEFAULT_CLIENT)
    config.write_text(config.read_text().replace('log_level = "info"', 'log_level = "debug"'))
    dave = USERS["dave"]            # the password with & + % # space and non-ASCII
    bob = USERS["bob"]              # right password, not in the voip group
    wrong = "Wr0ng-Pässword&+%"
    with Gateway(config, tmp_path, env={PASSWORD_ENV: SERVICE_PASSWORD}) as gw:
        statuses = [get(gw, "alice", ALICE.password).status_code,
                    get(gw, "dave", dave.password).status_code,
                    get(gw, "alice", wrong).status_code,
                    get(gw, "bob", bob.password).status_code]
        private_slapd.stop()
        statuses.append(get(gw, "carol", USERS["carol"].password).status_code)
        gw.stop()
        output = gw.output()
    assert statuses == [200, 200, 401, 403, 503]
    assert "DEBUG" in output
    for secret in (ALICE.password, dave.password, wrong, bob.password,
                   USERS["carol"].password, SERVICE_PASSWORD):
        for form in {secret, httpx.QueryParams({"p": secret}).__str__()[2:]}:
            assert form not in output, f"{form!r} leaked"

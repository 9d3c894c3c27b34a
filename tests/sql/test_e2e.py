"""End to end: `zoiper-bridge serve` provisioning from each preset on PostgreSQL and MariaDB,
and a database outage (a private PostgreSQL stopped and started) as 503s then recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway
from tests.sql import schemas
from tests.sql.schemas import DOMAIN, USERS
from tests.sql.servers import PASSWORD, PrivatePostgres, Scratch
from tests.sql.test_presets import COMBOS, login_name

MAPPING = """
[limits]  # many wrong passwords from one address, on purpose
address_failures = 0
username_failures = 0
backoff_base = 0

[mapping.account]
name = { value = "{account.display_name}", default = "SIP" }
username = "{account.sip_user}"
password = "{login.password}"
SIP_auth_username = "{account.auth_user}"
SIP_domain = { value = "{account.domain}", default = "default.example.com" }
protocol = "sip"
"""


def tenant(name: str, preset: str, env: str) -> str:
    table = f'type = "sql"\npreset = "{preset}"\nurl_env = "{env}"\nstatement_timeout = 2.0\n'
    return (f'[tenants.{name}]\npaths = ["/p/{name}"]\n'
            f"[tenants.{name}.auth]\n{table}[tenants.{name}.source]\n{table}\n")


# A source whose query outlives its statement timeout (the server cancels it).
SLOW = """
[tenants.slow]
paths = ["/p/slow"]
[tenants.slow.auth]
type = "sql"
preset = "kamailio"
url_env = "ZB_PG_URL"
[tenants.slow.source]
type = "sql"
url_env = "ZB_PG_URL"
statement_timeout = 0.2
query = '''SELECT username AS sip_user, username AS auth_user, pg_sleep(3)::text AS slept
           FROM subscriber WHERE username = {identity.username}'''
"""


@pytest.fixture(scope="module")
def gateway(pg: Scratch, my: Scratch, tmp_path_factory) -> Iterator[Gateway]:
    """One gateway serving every (preset, server) pair as a tenant at /p/PRESET-SERVER."""
    workdir = tmp_path_factory.mktemp("sql-e2e")
    config = workdir / "config.toml"
    config.write_text('[server]\nlog_level = "debug"\n\n' + MAPPING + "\n" + "".join(
        tenant(f"{preset}-{server}", preset, f"ZB_{server.upper()}_URL")
        for preset, server in COMBOS) + SLOW)
    with Gateway(config, workdir, env={"ZB_PG_URL": pg.url, "ZB_MY_URL": my.url}) as gw:
        yield gw


def get(gw: Gateway, path: str, user: str, password: str) -> httpx.Response:
    return httpx.get(gw.base_url + path, params={"user": user, "password": password},
                     timeout=15)


@pytest.mark.parametrize(("preset", "server"), COMBOS)
def test_each_preset_provisions_through_the_gateway(gateway, preset, server):
    path = f"/p/{preset}-{server}"
    # Two of the odd names (every sample user is checked per preset in test_presets.py).
    for name, password, _ in (USERS[1], USERS[4]):
        user = login_name(preset, name)
        ok = get(gateway, path, user, password)
        assert ok.status_code == 200, (name, ok.text)
        [account] = parse_config(ok.content)["accounts"]
        assert account["username"] == name
        assert account["password"] == password
        assert account["SIP_domain"] in (DOMAIN, "default.example.com")
    wrong = get(gateway, path, user, password + "!")
    assert wrong.status_code == 401
    assert parse_error(wrong.content) == "Wrong username or password."
    for attempt in ("' OR '1'='1", "\\'; DROP TABLE subscriber; --"):
        assert get(gateway, path, attempt, "' OR '1'='1").status_code == 401


def test_a_statement_past_its_timeout_is_a_503_with_retry_after(gateway):
    name, password, _ = USERS[0]
    start = time.monotonic()
    slow = get(gateway, "/p/slow", name, password)
    assert slow.status_code == 503
    assert int(slow.headers["retry-after"]) > 0
    assert time.monotonic() - start < 2.5  # cancelled at 0.2 s, not after the 3 s sleep
    assert "statement timeout (0.2s) exceeded" in gateway.output()


def test_tables_are_intact_and_the_dsn_password_is_never_logged(gateway, pg, my):
    for db in (pg, my):
        assert db.run("SELECT COUNT(*) FROM subscriber;").strip() == str(len(USERS) + 3)
    log = gateway.output()
    assert "provisioned" in log
    assert PASSWORD not in log and "p%40ss" not in log
    for _, password, _ in (USERS[1], USERS[4]):
        assert password not in log


@pytest.fixture
def outage_gateway(private_pg: PrivatePostgres, tmp_path: Path) -> Iterator[Gateway]:
    private_pg.sql(schemas.load_script("postgresql"))
    config = tmp_path / "config.toml"
    table = ('type = "sql"\npreset = "kamailio"\nurl_env = "ZB_URL"\nconnect_timeout = 1.0\n'
             "pool_timeout = 1.0\n")
    config.write_text(f"[auth]\n{table}\n[source]\n{table}\n{MAPPING}\n"
                      "[errors]\nretry_after = 7\n")
    with Gateway(config, tmp_path, env={"ZB_URL": private_pg.url}) as gw:
        yield gw


def test_a_database_stopped_mid_run_is_a_503_then_recovers(outage_gateway, private_pg):
    name, password, _ = USERS[0]
    assert get(outage_gateway, "/provision", name, password).status_code == 200
    private_pg.stop()
    private_pg.wait_stopped()
    down = get(outage_gateway, "/provision", name, password)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"
    assert get(outage_gateway, "/provision", name, "wrong").status_code == 503  # not a 401
    private_pg.start()
    deadline = time.monotonic() + 20  # the breaker may hold back for its cooldown (5 s)
    statuses = []
    while time.monotonic() < deadline:
        response = get(outage_gateway, "/provision", name, password)
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert statuses[-1] == 200, statuses
    assert set(statuses[:-1]) <= {503}
    assert get(outage_gateway, "/provision", name, "wrong").status_code == 401

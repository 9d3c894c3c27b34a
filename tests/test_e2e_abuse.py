"""Limits and secret hygiene through running gateways (real processes, real Redis)."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from bridge.passwords import hash_password
from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway
from tests.upstreams import USERS

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
PASSWORDS = {"alice": "A1ice&pass+word%#ü", "hatter": "Hatter-Secret-9", "broken": "Br0ken-pw!"}
SIP_PASSWORDS = ["Sip-Secret-7781", "Sip-Broken-7782"]
STATE_SECRET = "state-hmac-key-" + uuid.uuid4().hex
QUERY = "SELECT sip_user, sip_password, domain FROM accounts WHERE login = :username"


def write_site(folder: Path, extra: str = "") -> Path:
    users = "\n".join(f'[users.{name}]\npassword = "{hash_password(pw, 10)}"\n'
                      for name, pw in PASSWORDS.items())
    (folder / "users.toml").write_text(users)
    db = folder / "accounts.sqlite"
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE accounts (login, sip_user, sip_password, domain)")
        conn.execute("INSERT INTO accounts VALUES ('alice', '7781', ?, 'sip.example.com')",
                     (SIP_PASSWORDS[0],))
        conn.execute("INSERT INTO accounts VALUES ('broken', '7782', ?, NULL)",
                     (SIP_PASSWORDS[1],))
    config = folder / "config.toml"
    config.write_text(f"""
[server]
log_level = "debug"

[auth]
type = "file"
path = "users.toml"

[source]
type = "sqlite"
path = "accounts.sqlite"
query = "{QUERY}"

[mapping.account]
username = "{{account.sip_user}}"
password = "{{account.sip_password}}"
SIP_domain = "{{account.domain}}"
{extra}
""")
    return config


def get(gw: Gateway, user: str, password: str) -> httpx.Response:
    return httpx.get(gw.base_url + "/provision", params={"user": user, "password": password},
                     timeout=10)


@pytest.fixture
def redis_available():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


def test_limit_holds_across_two_gateways_sharing_redis(tmp_path, redis_available):
    config = write_site(tmp_path, f"""
[state]
backend = "redis"
redis_url = "{REDIS_URL}"
redis_prefix = "test-{uuid.uuid4().hex}:"
secret = "{STATE_SECRET}"

[limits]
username_failures = 3
backoff_base = 0
lockout_window = 0
""")
    with Gateway(config, tmp_path) as a, Gateway(config, tmp_path) as b:
        statuses = [get(gw, "alice", f"guess-{i}").status_code
                    for i, gw in enumerate([a, b] * 4)]
        assert statuses == [401, 401, 401] + [429] * 5
        limited = get(a, "alice", PASSWORDS["alice"])   # even the right password waits
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert parse_error(limited.content) == "Too many attempts. Please wait and try again."
        assert get(b, "hatter", PASSWORDS["hatter"]).status_code == 404  # others unaffected


def test_no_secret_reaches_the_output_on_any_path(tmp_path):
    config = write_site(tmp_path, """
[limits]
username_failures = 2
backoff_base = 0
""")
    gw = Gateway(config, tmp_path).start()
    try:
        seen = set()
        ok = get(gw, "alice", PASSWORDS["alice"])
        assert parse_config(ok.content)["accounts"][0]["password"] == SIP_PASSWORDS[0]
        seen.add(ok.status_code)
        seen.add(get(gw, "alice", "Wrong-Pass-1").status_code)                # 401
        seen.add(get(gw, "alice", "Wrong-Pass-1").status_code)                # 401, remembered
        seen.add(get(gw, "nobody", "Unknown-User-Pass").status_code)          # 401
        seen.add(get(gw, "hatter", PASSWORDS["hatter"]).status_code)          # 404
        seen.add(get(gw, "broken", PASSWORDS["broken"]).status_code)          # 500: NULL domain
        seen.add(get(gw, "alice", "Ctrl\x01Pass").status_code)                # 400
        seen.add(httpx.post(gw.base_url + "/provision",
                            params={"user": "alice", "password": "Post-Pass-1"}).status_code)
        for i in range(3):
            seen.add(get(gw, "hatter", f"Guess-Pass-{i}").status_code)        # ... 429
        (tmp_path / "accounts.sqlite").unlink()
        seen.add(get(gw, "alice", PASSWORDS["alice"]).status_code)            # 503
    finally:
        gw.stop()
    assert seen == {200, 400, 401, 404, 405, 429, 500, 503}
    output = gw.output()
    assert "DEBUG" in output and "/provision" in output
    secrets = [*PASSWORDS.values(), *SIP_PASSWORDS, "Wrong-Pass-1", "Unknown-User-Pass",
               "Post-Pass-1", "Guess-Pass-0", "Guess-Pass-2"]
    for secret in secrets:
        for form in {secret, httpx.QueryParams({"p": secret}).__str__()[2:]}:
            assert form not in output, f"{form!r} leaked"


def test_access_log_names_the_client_behind_a_trusted_proxy(tmp_path):
    config = write_site(tmp_path, "")
    config.write_text(config.read_text().replace(
        '[server]\nlog_level = "debug"\n',
        '[server]\nlog_level = "info"\ntrusted_proxies = ["127.0.0.1"]\n'))
    gw = Gateway(config, tmp_path).start()
    try:
        httpx.get(gw.base_url + "/provision", params={"user": "alice", "password": "x-wrong"},
                  headers={"X-Forwarded-For": "198.51.100.23"})
    finally:
        gw.stop()
    access = [line for line in gw.output().splitlines() if "bridge.access" in line]
    assert len(access) == 1 and "198.51.100.23 \"GET /provision" in access[0]
    assert "x-wrong" not in gw.output()


def test_a_stranger_cannot_lock_a_user_out(tmp_path, redis_available, portal):
    """Two gateways sharing Redis behind a trusted proxy: a stranger hammers alice from one
    address; alice, from another, still logs in; the portal sees a bounded number of tries."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
trusted_proxies = ["127.0.0.1"]

[auth]
type = "website"
url = "{portal.base_url}/api/login"
success_field = "success"
username_field = "data.user.login"
retries = 0
[auth.json]
email = "{{login.username}}"
password = "{{login.password}}"

[source]
type = "static"
[[source.accounts]]
domain = "sip.example.com"

[mapping.account]
username = "{{login.username}}"
password = "{{login.password}}"
SIP_domain = "{{account.domain}}"

[state]
backend = "redis"
redis_url = "{REDIS_URL}"
redis_prefix = "test-{uuid.uuid4().hex}:"
secret = "{STATE_SECRET}"

[limits]
username_failures = 3
backoff_base = 0
bypass_failures = 1
""")
    alice = USERS["alice"]

    def login(gw: Gateway, password: str, address: str) -> int:
        return httpx.get(gw.base_url + "/provision",
                         params={"user": "alice", "password": password},
                         headers={"X-Forwarded-For": address}, timeout=10).status_code

    def tried() -> int:
        return sum(1 for s in portal.seen
                   if s.raw_path == b"/api/login" and json.loads(s.body)["email"] == "alice")

    stranger, bots, home = "203.0.113.66", ["203.0.113.70", "203.0.113.71"], "198.51.100.23"
    portal.seen.clear()
    with Gateway(config, tmp_path) as a, Gateway(config, tmp_path) as b:
        statuses = [login(gw, f"Guess-{i}", stranger) for i, gw in enumerate([a, b] * 6)]
        assert statuses == [401] * 3 + [429] * 9
        assert login(b, alice, home) == 200                       # a new address: served
        assert login(a, alice, home) == 200
        assert login(a, "Guess-right-maybe", stranger) == 429     # the stranger still waits
        assert login(b, alice, stranger) == 429                   # even with her password
        assert [login(a, f"Bot-{x}", x) for x in bots] == [401, 429]   # new addresses: 1 try
        assert login(b, alice, home) == 200                       # her address stays hers
        # username_failures from the stranger, bypass_failures from new addresses, alice's 3
        assert tried() == 3 + 1 + 3

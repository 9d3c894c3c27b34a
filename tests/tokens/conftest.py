"""Configurations with [tokens], on the demo's users file and SIP accounts.

`token_config(tmp_path, ...)` writes one; the store is SQLite unless `tokens`
says otherwise. `pg_url` is a scratch PostgreSQL database for the module,
`redis_url` the machine's Redis (unique key prefixes per test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import unavailable

DEMO = Path(str(resources.files("bridge") / "demo"))
SECRET = "token-hash-key-for-tests-0123456789"
ADMIN_SECRET = "admin-bearer-secret-0123456789"
REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
LINK = "https://prov.example.net/qr?token={token}"
QUERY = ("SELECT sip_user, sip_password, domain, transport, caller_id FROM accounts "
         "WHERE login = :username")

MAPPING = """
[mapping.account]
name = "{account.caller_id} ({account.sip_user})"
username = "{account.sip_user}"
password = "{account.sip_password}"
SIP_auth_username = "{account.sip_user}"
SIP_domain = "{account.domain}"
SIP_transport_type = "{account.transport}"
protocol = "sip"
"""


def token_config(folder: Path, tokens: str = "", extra: str = "",
                 mapping: str = MAPPING) -> Path:
    """A whole configuration file: [server] (debug, 127.0.0.1 trusted for X-Forwarded-For,
    so each test can speak from an address of its own), [tokens] + `tokens`, `extra`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f"""
[server]
log_level = "debug"
trusted_proxies = ["127.0.0.1"]

[tokens]
path = "/token/"
link = "{LINK}"
database = "{folder / 'tokens.sqlite'}"
secret = "{SECRET}"
address_failures = 5
{tokens}

[tokens.admin]
enabled = true
secret = "{ADMIN_SECRET}"

[auth]
type = "file"
path = "{DEMO / 'users.toml'}"

[source]
type = "sqlite"
path = "{DEMO / 'accounts.sqlite'}"
query = "{QUERY}"
{mapping}
{extra}
""")
    return config


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    from tests.sql import servers

    reason = servers.pg_missing()
    if reason:
        unavailable(reason)
    db = servers.scratch("postgresql")
    try:
        yield db.url
    finally:
        db.drop()


@pytest.fixture(scope="module")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL

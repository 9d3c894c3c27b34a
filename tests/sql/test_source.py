# ruff: noqa: S608  (test rows written as SQL literals by q(); the gateway itself only binds)
"""[source] type = "sql": rows to accounts, bound parameters, timeouts, pool, read-only, checks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bridge.config import ConfigError
from bridge.errors import InternalError, UpstreamTimeout, UpstreamUnavailable
from bridge.models import Credentials, Identity
from bridge.settings import from_dict
from bridge.sql.query import BoundQuery
from tests.sql.helpers import problems, source
from tests.sql.schemas import USERS, q
from tests.sql.servers import PASSWORD, Scratch, free_port

QUERY = ("SELECT sip_user, sip_password, domain, enabled, keepalive, note, price "
         "FROM billing_accounts WHERE login = {identity.username} ORDER BY sip_user")
_made: set[str] = set()


@pytest.fixture
def billing(db: Scratch) -> Scratch:
    return made(db)


@pytest.fixture
def billing_pg(pg: Scratch) -> Scratch:
    return made(pg)


def made(db: Scratch) -> Scratch:
    """The billing table in this scratch database, made once per server."""
    if db.name not in _made:
        rows = ["CREATE TABLE billing_accounts (login VARCHAR(64), sip_user VARCHAR(64), "
                "sip_password VARCHAR(64), domain VARCHAR(64), enabled SMALLINT, "
                "keepalive VARCHAR(8), note VARCHAR(64), price NUMERIC(6,2), tenant INTEGER);"]
        for i, (login, password, _) in enumerate(USERS):
            rows.append(f"INSERT INTO billing_accounts VALUES ({q(db.kind, login)}, "
                        f"'{1001 + i}', {q(db.kind, password)}, 'sip.example.com', {i % 2}, "
                        f"'{30 + i}', NULL, 1.50, {i});")
        rows.append("INSERT INTO billing_accounts VALUES ('alice', '2001', 'second', "
                    "'sip.example.com', 1, '45', 'desk', 2.00, 0);")
        db.run("\n".join(rows))
        _made.add(db.name)
    return db


def login(name: str, **attributes: object) -> tuple[Identity, Credentials]:
    return Identity(name, attributes), Credentials(name, "not-sent-anywhere")


def count(db: Scratch) -> int:
    return int(db.run("SELECT COUNT(*) FROM billing_accounts;").strip())


async def test_rows_become_accounts_with_their_types(billing):
    backend = source({"url": billing.url, "query": QUERY})
    try:
        accounts = await backend.accounts(*login("alice"))
    finally:
        await backend.close()
    assert [dict(a.fields) for a in accounts] == [
        {"sip_user": "1001", "sip_password": "alice-Secret-1", "domain": "sip.example.com",
         "enabled": 0, "keepalive": "30", "price": "1.50"},  # NULL note: a missing field
        {"sip_user": "2001", "sip_password": "second", "domain": "sip.example.com",
         "enabled": 1, "keepalive": "45", "note": "desk", "price": 2},
    ]


@pytest.mark.parametrize(("name", "password"), [(u[0], u[1]) for u in USERS])
async def test_odd_usernames_are_data(billing, name, password):
    backend = source({"url": billing.url, "query": QUERY})
    try:
        accounts = await backend.accounts(*login(name))
    finally:
        await backend.close()
    assert accounts[0].fields["sip_password"] == password  # alice has a second one


@pytest.mark.parametrize("name", ["' OR '1'='1", "alice' --", "%", "100%", "_lice",
                                  "\\'; DROP TABLE billing_accounts; --", "ALICE"])
async def test_injection_attempts_find_nothing_and_change_nothing(billing, name):
    before = count(billing)
    backend = source({"url": billing.url, "query": QUERY})
    try:
        assert await backend.accounts(*login(name)) == []
    finally:
        await backend.close()
    assert count(billing) == before


async def test_login_and_identity_attributes_are_bound_too(billing):
    query = ("SELECT sip_user, domain FROM billing_accounts WHERE login = {login.username} "
             "AND tenant = {identity.tenant} AND domain <> 'a:b' ORDER BY sip_user")
    backend = source({"url": billing.url, "query": query})
    try:
        identity = Identity("someone-else", {"tenant": 0})
        accounts = await backend.accounts(identity, Credentials("alice", "x"))
        assert [a.fields["sip_user"] for a in accounts] == ["1001", "2001"]
        with pytest.raises(InternalError, match=r"\{identity\.tenant\} is not known"):
            await backend.accounts(Identity("alice"), Credentials("alice", "x"))
    finally:
        await backend.close()


async def test_postgresql_casts_keep_their_colons(billing_pg):
    query = ("SELECT sip_user::text AS sip_user, 'x:y'::text AS lit FROM billing_accounts "
             "WHERE login = {identity.username}::varchar")
    backend = source({"url": billing_pg.url, "query": query})
    try:
        [account] = await backend.accounts(*login("jürgen"))
    finally:
        await backend.close()
    assert dict(account.fields) == {"sip_user": "1005", "lit": "x:y"}


async def test_the_session_is_read_only(billing_pg):
    before = count(billing_pg)
    query = ("WITH gone AS (DELETE FROM billing_accounts RETURNING sip_user) "
             "SELECT sip_user FROM gone WHERE sip_user <> {identity.username}")
    backend = source({"url": billing_pg.url, "query": query})
    try:
        with pytest.raises(InternalError, match="read-only"):
            await backend.accounts(*login("alice"))
    finally:
        await backend.close()
    assert count(billing_pg) == before


async def test_a_statement_past_its_timeout_is_a_503(billing):
    sleep = "pg_sleep(3)" if billing.kind == "postgresql" else "SLEEP(3)"
    query = (f"SELECT sip_user, {sleep} AS slept FROM billing_accounts "
             f"WHERE login = {{identity.username}}")
    backend = source({"url": billing.url, "query": query, "statement_timeout": 0.3})
    try:
        start = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"statement timeout \(0\.3s\)"):
            await backend.accounts(*login("alice"))
        assert time.monotonic() - start < 2.5  # the server stopped it, not the sleep's end
        # the pool is fine afterwards
        backend_fast = source({"url": billing.url, "query": QUERY})
        assert len(await backend_fast.accounts(*login("alice"))) == 2
        await backend_fast.close()
    finally:
        await backend.close()


async def test_an_exhausted_pool_is_a_503_and_recovers(billing):
    sleep = "pg_sleep(0.8)" if billing.kind == "postgresql" else "SLEEP(0.8)"
    query = (f"SELECT sip_user, {sleep} AS slept FROM billing_accounts "
             f"WHERE login = {{identity.username}}")
    backend = source({"url": billing.url, "query": query, "pool_size": 1,
                      "pool_timeout": 0.1, "statement_timeout": 5})
    try:
        slow = asyncio.ensure_future(backend.accounts(*login("jürgen")))
        await asyncio.sleep(0.3)
        with pytest.raises(UpstreamUnavailable, match=r"no free connection within 0\.1s"):
            await backend.accounts(*login("alice"))
        assert len(await slow) == 1
        assert len(await backend.accounts(*login("jürgen"))) == 1
    finally:
        await backend.close()


async def test_an_unreachable_server_is_a_503_without_the_password():
    url = f"postgresql://gw:{PASSWORD.replace('%', '%25').replace('@', '%40')}@127.0.0.1:" \
          f"{free_port()}/x"
    backend = source({"url": url.replace(":w/", ":w%2F"), "query": QUERY,
                      "connect_timeout": 1})
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await backend.accounts(*login("alice"))
    finally:
        await backend.close()
    assert "***" in info.value.detail
    assert "p@ss" not in info.value.detail and "w/rd" not in info.value.detail


MAPPING = {"account": {"username": "{account.sip_user}", "password": "{account.sip_password}",
                       "SIP_domain": "{account.domain}",
                       "register_on_startup": "{account.enabled}"}}


def settings_problems(source_table: dict, tmp_path: Path, mapping: dict = MAPPING) -> list[str]:
    (tmp_path / "users.toml").write_text("[users]\n")
    data = {"auth": {"type": "file", "path": "users.toml"}, "source": source_table,
            "mapping": mapping}
    try:
        from_dict(data, tmp_path)
    except ConfigError as exc:
        return exc.problems
    return []


def test_check_config_names_a_field_the_query_does_not_select(tmp_path):
    url = "postgresql://gw:Sup3rSecret@127.0.0.1/x"
    ok = {"type": "sql", "url": url, "query": QUERY}
    assert settings_problems(ok, tmp_path) == []
    narrow = {**ok, "query": "SELECT sip_user, sip_password AS secret FROM t "
                             "WHERE login = {identity.username}"}
    assert settings_problems(narrow, tmp_path) == [
        "Config value 'source.query': the mapping uses {account.domain}, {account.enabled}, "
        "{account.sip_password}, but the query returns no such column (it returns: secret, "
        "sip_user)"]
    # a default makes a field optional; a query that cannot be read waits for the server
    optional = {**MAPPING["account"], "SIP_domain": {"value": "{account.domain}",
                                                     "default": "x"}}
    assert "{account.domain}" not in settings_problems(narrow, tmp_path,
                                                       {"account": optional})[0]
    assert settings_problems({**ok, "query": "SELECT * FROM t WHERE a = {identity.username}"},
                             tmp_path) == []
    # PostgreSQL folds unquoted names; preset queries are checked the same way
    assert settings_problems({**ok, "query": "SELECT SIP_USER, Sip_Password, DOMAIN, enabled "
                                             "FROM t WHERE a = {identity.username}"},
                             tmp_path) == []
    assert settings_problems({"type": "sql", "url": url, "preset": "kamailio"}, tmp_path) == [
        "Config value 'source.preset': the mapping uses {account.enabled}, but the query "
        "returns no such column (it returns: auth_user, domain, sip_password, sip_user)"]


async def test_the_server_is_asked_for_the_columns_at_start(billing, tmp_path):
    table = {"type": "sql", "url": billing.url,
             "query": "SELECT * FROM billing_accounts WHERE login = {identity.username}"}
    (tmp_path / "users.toml").write_text("[users]\n")
    data = {"auth": {"type": "file", "path": "users.toml"}, "source": table,
            "mapping": {"account": {**MAPPING["account"], "name": "{account.full_name}"}}}
    settings = from_dict(data, tmp_path)
    backend = settings.default.own.source.build()
    try:
        with pytest.raises(InternalError, match=r"uses \{account\.full_name\}, but the query"):
            await backend.start()
        with pytest.raises(InternalError, match=r"uses \{account\.full_name\}"):
            await backend.accounts(*login("alice"))
    finally:
        await backend.close()


def test_query_rules(tmp_path):
    url = "postgresql://gw:Sup3rSecret@127.0.0.1/x"
    assert problems("source", {"url": url, "query": "SELECT a FROM t WHERE b = "
                                                    "'{identity.username}'"}) == [
        "Config value 'source.query': {identity.username} is inside quotes: placeholders are "
        "bound parameters, write {identity.username} without quotes around it"]
    assert problems("source", {"url": url, "query": "DELETE FROM t"}) == [
        "Config value 'source.query': must be a SELECT (or WITH ... SELECT) query: the "
        "gateway only reads"]
    assert problems("source", {"url": url, "query": "SELECT {account.x} FROM t"})[0] \
        .startswith("Config value 'source.query': {account.x} is not available here")
    assert problems("source", {"url": url}) == [
        "Config value 'source.query': is required (or a preset: asterisk-pjsip, "
        "asterisk-sippeers, freepbx, fusionpbx, kamailio)"]
    assert problems("source", {"url": url, "query": QUERY, "pool_size": 0}) == [
        "Config value 'source.pool_size': must be at least 1, received 0"]
    assert problems("source", {"url": "sqlite:///missing.sqlite", "query": QUERY},
                    tmp_path) == [
        f"Config value 'source.url': sqlite file not found: {tmp_path / 'missing.sqlite'}"]


async def test_sqlite_through_the_same_source(tmp_path):
    path = tmp_path / "billing.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (login TEXT, sip_user TEXT, enabled INTEGER)")
        conn.executemany("INSERT INTO accounts VALUES (?, ?, ?)",
                         [(u[0], f"{1001 + i}", i % 2) for i, u in enumerate(USERS)])
    backend = source({"url": "sqlite:///billing.sqlite",
                      "query": "SELECT sip_user, enabled FROM accounts "
                               "WHERE login = {identity.username}"}, tmp_path)
    writer = source({"url": "sqlite:///billing.sqlite",
                     "query": "WITH x AS (SELECT 1) SELECT sip_user FROM accounts "
                              "WHERE login = {identity.username}; DELETE FROM accounts"},
                    tmp_path)
    try:
        for i, (name, _, _) in enumerate(USERS):
            [account] = await backend.accounts(*login(name))
            assert dict(account.fields) == {"sip_user": f"{1001 + i}", "enabled": i % 2}
        assert await backend.accounts(*login("' OR 1=1 --")) == []
        with pytest.raises(InternalError):
            await writer.accounts(*login("alice"))  # one statement at a time
    finally:
        await backend.close()
        await writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == len(USERS)


async def test_every_connection_is_read_only_even_for_a_write(billing):
    # Below the query check (which admits only SELECT / WITH): the session itself refuses.
    backend = source({"url": billing.url, "query": QUERY})
    before = count(billing)
    write = BoundQuery("INSERT INTO billing_accounts (login) VALUES (:p0)", {})
    try:
        with pytest.raises(InternalError, match=r"(?i)read.only"):
            await backend.db.fetch(write, {"p0": "intruder"})
    finally:
        await backend.close()
    assert count(billing) == before

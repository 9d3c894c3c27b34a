"""The LDAP account source: from the identity (free), or its own search (child entries, values)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import Connection, Server

from bridge.auth.ldap import LdapAuthenticator
from bridge.config import Section
from bridge.errors import InternalError, UpstreamUnavailable
from bridge.models import Account, Credentials, Identity
from bridge.placeholders import UnsafeValue
from bridge.sources import build_source
from bridge.sources.ldap import LdapSource
from tests.auth.test_ldap import CLIENTS, make, table
from tests.ldap.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    Slapd,
    free_port,
)

pytestmark = pytest.mark.slow
ALICE, ERIN = USERS["alice"], USERS["erin"]
LOGIN = Credentials("alice", ALICE.password)


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


def source_table(server: Slapd, client: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "type": "ldap", "from": "directory", "client": client, "uri": server.ldaps_uri,
        "ca_file": str(server.ca_file), "tls_name": server.tls_name, "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD, "timeout": 2, "connect_timeout": 2, "threads": 4,
        "fields": {"extension": "telephoneNumber", "name": "displayName"},
    }
    cfg.update(extra)
    return cfg


def source_problems(cfg: dict[str, Any]) -> list[str]:
    section = Section(cfg, "source", [], Path.cwd())
    build_source(section)
    return section.problems


@contextlib.asynccontextmanager
async def running(cfg: dict[str, Any]) -> AsyncIterator[LdapSource]:
    section = Section(cfg, "source", [], Path.cwd())
    source = build_source(section)
    assert section.problems == []
    assert isinstance(source, LdapSource)
    await source.start()
    try:
        yield source
    finally:
        await source.close()


def fields(accounts: list[Account]) -> list[dict[str, Any]]:
    return [dict(a.fields) for a in accounts]


async def identity_of(server: Slapd, client: str, uid: str) -> Identity:
    auth: LdapAuthenticator = make(table(server, client))
    await auth.start()
    try:
        identity = await auth.authenticate(Credentials(uid, USERS[uid].password))
    finally:
        await auth.close()
    assert identity is not None
    return identity


def test_configuration_problems() -> None:
    assert source_problems({"type": "ldap"}) == []                     # from = "identity"
    found = "\n".join(source_problems({"type": "ldap", "base": "{dn}", "per_value": "x"}))
    assert "'source.base': only used with from = \"directory\"" in found
    assert "'source.per_value'" in found
    found = "\n".join(source_problems({
        "type": "ldap", "from": "directory", "uri": "ldaps://ldap.example.org",
        "fields": {"ext": "telephoneNumber"}, "per_value": "extension", "scope": "all",
        "filter": "(uid={user})", "base": "{dn}", "max_accounts": 0}))
    for needle in ["'source.per_value'", "'source.scope'", "'source.filter'",
                   "'source.max_accounts'"]:
        assert needle in found, found
    assert "needs at least one field" in "\n".join(source_problems(
        {"type": "ldap", "from": "directory", "uri": "ldaps://ldap.example.org"}))


def test_connection_keys_are_only_for_a_directory_search() -> None:
    found = source_problems({"type": "ldap", "uri": "ldaps://ldap.example.org",
                             "bind_dn": SERVICE_DN, "bind_password_env": "ZB_UNUSED",
                             "fields": {"x": "mail"}})
    assert found == [
        "Config value 'source.bind_password': bind_password_env: environment variable "
        "'ZB_UNUSED' is not set"] + [
        f"Config value 'source.{key}': only used with from = \"directory\""
        for key in ("uri", "bind_dn", "fields")], found


def test_every_problem_of_a_directory_source_at_once() -> None:
    found = source_problems({
        "type": "ldap", "from": "directory", "uri": "ldap://ldap.example.org", "tls": "none",
        "bind_password": 42, "timeout": -1, "fields": {"dn": "entryDN", "ext": "not an attr"},
        "per_value": "", "max_accounts": 1001, "base": "ou={team},o=x", "filter": "uid=x",
        "pool_sise": 4})
    keys = sorted(p.split("':")[0].removeprefix("Config value 'source.") for p in found)
    assert keys == ["base", "bind_password", "fields.dn", "fields.ext", "filter",
                    "max_accounts", "per_value", "pool_sise", "timeout", "tls"], found
    text = "\n".join(found)
    assert "'source.pool_sise': unknown key (did you mean 'pool_size'?)" in text
    assert "'source.bind_password': expected a string (the value is not shown)" in text
    assert "42" not in text
    assert source_problems({"type": "ldap", "from": "directory", "fields": {"x": "mail"}}) == [
        "Config value 'source.uri': is required"]


async def test_ready(slapd: Slapd, client: str) -> None:
    async with running({"type": "ldap"}) as source:   # from = "identity": nothing to probe
        await source.ready()
        assert source.client is None
    async with running(source_table(slapd, client)) as source:
        await source.ready()
    closed = f"ldaps://127.0.0.1:{free_port()}"
    async with running(source_table(slapd, client, uri=closed)) as source:
        with pytest.raises(UpstreamUnavailable):
            await source.ready()
    async with running(source_table(slapd, client, bind_password="wrong")) as source:
        with pytest.raises(UpstreamUnavailable, match="service account"):
            await source.ready()


async def test_identity_mode_reuses_what_the_authenticator_read(slapd: Slapd,
                                                                client: str) -> None:
    identity = await identity_of(slapd, client, "alice")
    async with running({"type": "ldap", "require": ["extension"]}) as source:
        assert source.client is None  # no directory traffic at all
        accounts = await source.accounts(identity, LOGIN)
        assert fields(accounts) == [{"dn": ALICE.dn, "displayName": "Alice Liddell",
                                     "extension": "101", "mail": "alice@example.org"}]
        # an entry without the required field: no account (the core answers 404)
        assert await source.accounts(Identity("x", {"mail": "x@example.org"}), LOGIN) == []


async def test_one_account_per_value_of_a_multi_valued_attribute(slapd: Slapd,
                                                                 client: str) -> None:
    erin = await identity_of(slapd, client, "erin")
    async with running(source_table(slapd, client, per_value="extension")) as source:
        assert fields(await source.accounts(erin, LOGIN)) == [
            {"dn": ERIN.dn, "name": "Erin Hannon", "extension": "105"},
            {"dn": ERIN.dn, "name": "Erin Hannon", "extension": "+49 30 5550105"}]
    async with running(source_table(slapd, client)) as source:   # first value only
        assert fields(await source.accounts(erin, LOGIN)) == [
            {"dn": ERIN.dn, "name": "Erin Hannon", "extension": "105"}]
    async with running(source_table(slapd, client, per_value="extension",
                                    max_accounts=1)) as source:
        assert len(await source.accounts(erin, LOGIN)) == 1


async def test_child_entries_become_accounts(private_slapd: Slapd, client: str) -> None:
    admin = Connection(Server(private_slapd.host, port=private_slapd.port), ADMIN_DN,
                       ADMIN_PASSWORD, auto_bind=True)
    for cn, number in (("desk", "201"), ("mobile", "202")):
        assert admin.add(f"cn={cn},{ALICE.dn}", ["device"],
                         {"cn": cn, "serialNumber": number, "description": f"Alice {cn}"})
    admin.unbind()
    identity = Identity("alice", {"dn": ALICE.dn})
    cfg = source_table(private_slapd, client, base="{dn}", scope="one",
                       filter="(objectClass=device)",
                       fields={"sip_user": "serialNumber", "label": "description"})
    async with running(cfg) as source:
        accounts = sorted(fields(await source.accounts(identity, LOGIN)),
                          key=lambda f: f["sip_user"])
    assert accounts == [
        {"dn": f"cn=desk,{ALICE.dn}", "sip_user": "201", "label": "Alice desk"},
        {"dn": f"cn=mobile,{ALICE.dn}", "sip_user": "202", "label": "Alice mobile"}]


async def test_search_by_username_is_escaped(slapd: Slapd, client: str) -> None:
    cfg = source_table(slapd, client, base=PEOPLE_DN, scope="one",
                       filter="(&(objectClass=inetOrgPerson)(uid={username}))")
    async with running(cfg) as source:
        assert len(await source.accounts(Identity("alice"), LOGIN)) == 1
        for hostile in ("*", "alice)(uid=*", "*)(|(uid=*"):
            assert await source.accounts(Identity(hostile), LOGIN) == []


@pytest.mark.parametrize("mode", ["dn", "dn+attributes", "search"])
async def test_directory_source_after_any_ldap_login(slapd: Slapd, client: str,
                                                     mode: str) -> None:
    """{identity.dn} is always set, so the default base "{dn}" works after every kind of login.

    A bind by user_dn with nothing else to read (no service account needed) used to give an
    identity without dn, and this source then failed for every user.
    """
    by_dn = {"user_search": None, "user_dn": "uid={username}," + PEOPLE_DN}
    extra: dict[str, Any] = {
        "dn": {**by_dn, "bind_dn": None, "bind_password": None, "attributes": None,
               "username_attribute": None},
        "dn+attributes": by_dn,
        "search": {},
    }[mode]
    auth = make(table(slapd, client, **extra))
    await auth.start()
    try:
        identity = await auth.authenticate(LOGIN)
    finally:
        await auth.close()
    assert identity is not None and identity.attributes["dn"] == ALICE.dn
    async with running(source_table(slapd, client)) as source:   # base = "{dn}"
        assert fields(await source.accounts(identity, LOGIN)) == [
            {"dn": ALICE.dn, "name": "Alice Liddell", "extension": "101"}]


async def test_identity_without_dn_is_a_configuration_error(slapd: Slapd,
                                                            client: str) -> None:
    async with running(source_table(slapd, client)) as source:
        with pytest.raises(InternalError, match="no 'dn'"):
            await source.accounts(Identity("alice"), LOGIN)


def test_placeholders_of_base_and_filter() -> None:
    """{dn}/{username} stay (aliases); {identity.*} and {login.username} are accepted too."""
    table = {"type": "ldap", "from": "directory", "uri": "ldaps://ldap.example.org",
             "fields": {"x": "mail"}}
    for base, flt in (("{dn}", "(uid={username})"), ("{identity.dn}", "(uid={identity.uid})"),
                      ("ou=phones,{identity.dn}", "(owner={login.username})"),
                      ("uid={username},ou=people,o=x", "(cn={{braced}})")):
        assert source_problems({**table, "base": base, "filter": flt}) == [], (base, flt)
    found = "\n".join(source_problems({**table, "base": "{account.x}",
                                       "filter": "(uid={login.password})"}))
    assert "'source.base': {account.x} is not available here (only {identity.*}, " \
           "{login.username}, {username}, {dn})" in found
    assert "'source.filter': {login.password} is not available here" in found


async def test_the_new_spellings_mean_what_the_aliases_mean(slapd: Slapd, client: str) -> None:
    identity = Identity("alice", {"dn": ALICE.dn})
    typed = Credentials("typed-name", "pw")
    searches = [  # base, filter, credentials: each finds alice's entry, and only it
        ("{dn}", "(objectClass=*)", LOGIN), ("{identity.dn}", "(objectClass=*)", LOGIN),
        (PEOPLE_DN, "(uid={username})", typed), (PEOPLE_DN, "(uid={identity.username})", typed),
        (PEOPLE_DN, "(uid={login.username})", LOGIN),
        ("uid={identity.username}," + PEOPLE_DN, "(objectClass=*)", typed),
    ]
    for base, flt, credentials in searches:
        async with running(source_table(slapd, client, base=base, filter=flt,
                                        scope="one" if base == PEOPLE_DN else "base")) as src:
            assert fields(await src.accounts(identity, credentials)) == [
                {"dn": ALICE.dn, "name": "Alice Liddell", "extension": "101"}], (base, flt)
    async with running(source_table(slapd, client, base=PEOPLE_DN, scope="one",
                                    filter="(uid={login.username})")) as src:
        assert await src.accounts(identity, typed) == []  # what was typed, not the identity


@pytest.mark.parametrize(("attributes", "username", "field"), [
    ({"dn": "alice"}, "alice", "{identity.dn}"),                     # not a DN: refused
    ({"dn": "uid=alice\x00,ou=people"}, "alice", "{identity.dn}"),
    ({"dn": ALICE.dn}, "al\x00ice", "{identity.username}"),           # a NUL into a DN value
])
async def test_a_value_that_cannot_be_placed_is_a_500_not_no_account(
        slapd: Slapd, client: str, attributes: dict[str, str], username: str,
        field: str) -> None:
    base = "{dn}" if field == "{identity.dn}" else "uid={username}," + PEOPLE_DN
    async with running(source_table(slapd, client, base=base)) as source:
        with pytest.raises(UnsafeValue, match=re.escape(f"the value of {field} cannot be "
                                                        "placed in a DN")) as caught:
            await source.accounts(Identity(username, attributes), LOGIN)
    assert isinstance(caught.value, InternalError) and "alice" not in caught.value.detail


async def test_outage_is_upstream_unavailable(private_slapd: Slapd, client: str) -> None:
    identity = Identity("alice", {"dn": ALICE.dn})
    async with running(source_table(private_slapd, client)) as source:
        assert len(await source.accounts(identity, LOGIN)) == 1
        private_slapd.stop()
        with pytest.raises(UpstreamUnavailable):
            await source.accounts(identity, LOGIN)

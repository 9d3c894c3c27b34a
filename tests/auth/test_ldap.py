"""The LDAP authenticator against a real slapd, with both LDAP clients.

Escaping is asserted twice: on the exact filter/DN built from a hostile name,
and on what the directory answers to it. Failures are asserted by class:
an outage must never look like a wrong password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.auth import build_authenticator
from bridge.auth.ldap import GroupPolicy, LdapAuthenticator, account_refusal
from bridge.config import Section
from bridge.errors import InternalError, NotPermitted, UpstreamTimeout, UpstreamUnavailable
from bridge.ldap import aio
from bridge.ldap.client import (
    DOWN_FOR,
    Entry,
    LdapClient,
    LdapOperationError,
    LdapResult,
    LdapTimeout,
    LdapUnavailable,
    Scope,
    SearchRequest,
    ServerSettings,
    TlsMode,
)
from bridge.ldap.config import (
    AUTH_ALIASES,
    DEFAULT_CLIENT,
    render_dn,
    render_filter,
    template,
    text_value,
)
from bridge.ldap.errors import translate
from bridge.ldap.escape import (
    ad_data_code,
    dn_key,
    escape_dn_value,
    escape_filter_value,
    parse_dn,
    rdn_value,
)
from bridge.models import Credentials, Identity
from bridge.placeholders import UnsafeValue, Values
from tests.ldap import slapd as slapd_mod
from tests.ldap.slapd import (
    GROUPS,
    GROUPS_DN,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    Slapd,
    bind_count,
    bound_as,
)
from tests.ldap.test_failover import Listener

pytestmark = pytest.mark.slow

CLIENTS = ["asyncio", "ldap3"]
SEARCH = {"base": PEOPLE_DN, "filter": "(&(objectClass=inetOrgPerson)(uid={username}))"}
ATTRIBUTES = {"displayName": "displayName", "extension": "telephoneNumber", "mail": "mail"}
ALICE = USERS["alice"]
# What a user might type to widen a search or change a DN; none of these is a seeded uid.
HOSTILE = ["*", ")(uid=*", "*)(uid=*))(|(uid=*", "\\", "\\2a", "\x00", "alice\x00", ",", "+",
           "=", "#", "alice,ou=people", "uid=alice", "alice)", "(alice", "al*ce", "*alice*",
           "alice)(objectClass=*", "ünï€ode*"]


def fill(kind: str, text: str, typed: str) -> str:
    """An [auth] template (its `{username}` is what was typed) filled as the authenticator does."""
    parsed = template(kind, ("login.username",), AUTH_ALIASES)(text)  # type: ignore[arg-type]
    lookup = Values(Credentials(typed, "")).lookup
    return render_dn(parsed, lookup) if kind == "dn" else render_filter(parsed, lookup)


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


def table(server: Slapd, client: str, *, ldaps: bool = True, **extra: Any) -> dict[str, Any]:
    """An [auth] table for `server`: LDAPS (or StartTLS), the service account, search-then-bind."""
    cfg: dict[str, Any] = {
        "type": "ldap", "client": client,
        "uri": server.ldaps_uri if ldaps else server.uri,
        "ca_file": str(server.ca_file), "tls_name": server.tls_name,
        "bind_dn": SERVICE_DN, "bind_password": SERVICE_PASSWORD,
        "connect_timeout": 2, "timeout": 2, "threads": 8,
        "user_search": dict(SEARCH), "username_attribute": "uid",
        "attributes": dict(ATTRIBUTES),
    }
    cfg.update(extra)
    return {k: v for k, v in cfg.items() if v is not None}


def problems(cfg: dict[str, Any]) -> list[str]:
    section = Section(cfg, "auth", [], Path.cwd())
    build_authenticator(section)
    return section.problems


def make(cfg: dict[str, Any]) -> LdapAuthenticator:
    section = Section(cfg, "auth", [], Path.cwd())
    auth = build_authenticator(section)
    assert section.problems == []
    assert isinstance(auth, LdapAuthenticator)
    return auth


@contextlib.asynccontextmanager
async def running(cfg: dict[str, Any]) -> AsyncIterator[LdapAuthenticator]:
    auth = make(cfg)
    await auth.start()
    try:
        yield auth
    finally:
        await auth.close()


async def login(auth: LdapAuthenticator, username: str, password: str) -> Identity | None:
    return await auth.authenticate(Credentials(username, password))


# -- cn=Monitor: counting binds and seeing who each connection is bound as -----------------


# -- configuration -----------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems({
        "type": "ldap", "client": "openldap", "uri": ["ldap://ldap.example.org", "http://x"],
        "tls": "none", "ca_file": str(tmp_path / "missing.pem"), "timeout": 0,
        "bind_dn": "cn=gw,dc=example,dc=org",
        "user_search": {"base": PEOPLE_DN, "scope": "deep", "filter": "uid={username}"},
        "user_dn": "uid=alice,{user}", "attributes": {"username": "uid", "x": "not an attr!"},
        "groups": {"membership": ["member", "nested"], "required": ["voip"]},
        "colour": "blue",
    })
    text = "\n".join(found)
    for needle in ["'auth.client'", "'auth.uri'", "http://x", "'auth.tls'", "clear text",
                   "'auth.ca_file': file not found", "'auth.timeout'", "'auth.bind_password'",
                   "'auth.user_search.scope'", "'auth.user_search.filter'", "parentheses",
                   "'auth.user_dn'", "{user}", "'auth.attributes.username'",
                   "'auth.attributes.x'", "'auth.groups.membership'", "'auth.groups.base'",
                   "'auth.colour': unknown key"]:
        assert needle in text, f"{needle} missing from:\n{text}"


def test_a_broken_table_is_reported_not_crashed_on(tmp_path: Path) -> None:
    assert {"Config value 'auth.uri': is required",
            "Config value 'auth.user_search': give one of user_dn, user_upn or [user_search] to "
            "say how a login name becomes a directory entry"} <= set(problems({"type": "ldap"}))
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    for client in ("asyncio", "ldap3"):
        found = "\n".join(problems({
            "type": "ldap", "client": client, "uri": "ldaps://ldap.example.org",
            "ca_file": str(tmp_path / "not-a-ca.pem"), "user_dn": "{username}"}))
        assert "is not a readable PEM CA certificate" in found
        assert "'auth.user_dn': '{username}' is not a DN template" in found


@pytest.mark.parametrize(("uri", "extra", "refused"), [
    ("ldap://ldap.example.org", {"tls": "none"}, True),
    ("ldap://10.1.2.3:389", {"tls": "none"}, True),
    ("ldap://ldap.example.org", {"tls": "none", "allow_cleartext": True}, False),
    ("ldap://127.0.0.1:3890", {"tls": "none"}, False),
    ("ldap://[::1]:3890", {"tls": "none"}, False),
    ("ldap://localhost", {"tls": "none"}, False),
    ("ldap://ldap.example.org", {}, False),       # StartTLS is the default
    ("ldaps://ldap.example.org", {"tls": "none"}, False),
])
def test_cleartext_binds_to_remote_servers_are_refused(uri: str, extra: dict[str, Any],
                                                       refused: bool) -> None:
    cfg = {"type": "ldap", "client": "ldap3", "uri": uri, "user_dn": "uid={username},o=x",
           **extra}
    found = problems(cfg)
    assert any("clear text" in p for p in found) is refused, found


def test_service_password_from_env_and_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"type": "ldap", "client": "ldap3", "uri": "ldaps://ldap.example.org",
            "user_dn": "uid={username},o=x", "bind_dn": SERVICE_DN}
    monkeypatch.setenv("ZB_TEST_LDAP_PASSWORD", "from-env")
    (tmp_path / "pw").write_text("from-file\n")
    env = make({**base, "bind_password_env": "ZB_TEST_LDAP_PASSWORD"})
    assert env.directory.server.service_password == "from-env"
    file = make({**base, "bind_password_file": str(tmp_path / "pw")})
    assert file.directory.server.service_password == "from-file"
    assert "from-file" not in repr(file.directory.server)
    assert any("bind_password" in p for p in problems(base))
    assert any("must not be empty" in p for p in problems({**base, "bind_password": ""}))
    assert any("give only one" in p for p in problems(
        {**base, "bind_password": "x", "bind_password_env": "ZB_TEST_LDAP_PASSWORD"}))


def test_one_way_to_find_the_user() -> None:
    base = {"type": "ldap", "client": "ldap3", "uri": "ldaps://ldap.example.org"}
    assert any("give one of user_dn" in p for p in problems(base))
    assert any("not both" in p for p in problems(
        {**base, "user_dn": "uid={username},o=x", "user_upn": "{username}@example.test"}))
    assert any("user_upn" in p for p in problems({**base, "user_upn": "{username}"}))
    assert any("needs [user_search]" in p for p in problems(
        {**base, "user_upn": "{username}@example.test", "attributes": {"mail": "mail"}}))
    assert problems({**base, "user_upn": "{username}@example.test"}) == []


def test_cross_key_rules_are_checked_when_other_keys_are_wrong() -> None:
    """Each problem once, with its key path: a bad timeout does not hide a clear-text bind."""
    found = problems({
        "type": "ldap", "client": "openldap", "timeout": 0, "tls": "none",
        "uri": ["ldap://ldap.example.org", "ldap://ldap2.example.org:0"],
        "bind_dn": SERVICE_DN, "user_dn": "uid={username},o=x",
        "user_upn": "{username}@example.test",
        "groups": {"membership": "nested", "required": ["voip"]},
    })
    keys = sorted(p.split("':")[0].removeprefix("Config value '") for p in found)
    assert keys == ["auth.bind_password", "auth.client", "auth.groups.membership",
                    "auth.groups.required", "auth.timeout", "auth.tls", "auth.uri",
                    "auth.user_upn"], found
    text = "\n".join(found)
    assert "'auth.tls': 'ldap://ldap.example.org' would carry passwords in clear text" in text
    assert "'ldap://ldap2.example.org:0': invalid port" in text
    assert "'auth.user_upn': give user_dn or user_upn, not both" in text


def test_misspelt_keys_get_a_suggestion() -> None:
    base = {"type": "ldap", "uri": "ldaps://ldap.example.org", "user_dn": "uid={username},o=x",
            "bind_dn": SERVICE_DN}
    found = problems({**base, "bind_passwrd": SERVICE_PASSWORD,
                      "groups": {"base": "o=x", "memberhsip": "member"}})
    assert "Config value 'auth.bind_passwrd': unknown key (did you mean 'bind_password'?)" \
        in found, found
    assert "Config value 'auth.groups.memberhsip': unknown key (did you mean 'membership'?)" \
        in found, found
    assert "Config value 'auth.bind_password': is required (or bind_password_env / " \
        "bind_password_file)" in found, found
    assert SERVICE_PASSWORD not in "\n".join(found)


@pytest.mark.parametrize("value", [8675309, 3.14159, ["hunter2-in-a-list"],
                                   {"pw": "hunter2-in-a-table"}])
def test_a_service_password_of_the_wrong_type_is_never_echoed(value: Any) -> None:
    base = {"type": "ldap", "uri": "ldaps://ldap.example.org", "user_dn": "uid={username},o=x",
            "bind_dn": SERVICE_DN, "bind_password": value}
    shown = {8675309: "8675309", 3.14159: "3.14159"}.get(value) if not isinstance(
        value, list | dict) else "hunter2"
    assert shown is not None
    alone = problems(base)
    assert alone == ["Config value 'auth.bind_password': expected a string (the value is not "
                     "shown)"]
    with_others = problems({**base, "timeout": "slow", "groups": {"required": ["voip"]}})
    keys = [p.split("':")[0].removeprefix("Config value '") for p in with_others]
    assert keys == ["auth.timeout", "auth.bind_password", "auth.groups.base",
                    "auth.groups.required"], with_others  # the rules ran too
    assert shown not in "\n".join(alone + with_others)


def test_the_service_password_is_in_no_repr() -> None:
    auth = make({"type": "ldap", "uri": "ldaps://ldap.example.org", "bind_dn": SERVICE_DN,
                 "bind_password": SERVICE_PASSWORD, "user_dn": "uid={username},o=x"})
    assert auth.directory.server.service_password == SERVICE_PASSWORD
    for value in (auth.config, auth.directory, auth.directory.server):
        assert SERVICE_PASSWORD not in repr(value)


def test_default_client_is_asyncio() -> None:
    assert DEFAULT_CLIENT == "asyncio"
    assert make({"type": "ldap", "uri": "ldaps://ldap.example.org",
                 "user_dn": "uid={username},o=x"}).directory.client == "asyncio"


# -- escaping, at the unit level (the core refuses NUL and controls with a 400 anyway) --------


@pytest.mark.parametrize(("typed", "value"), [
    ("*", "\\2a"), (")(uid=*", "\\29\\28uid=\\2a"), ("\\", "\\5c"), ("\x00", "\\00"),
    ("a\x01b", "a\\01b"), (",", ","), ("+", "+"), ("=", "="), ("#", "#"),
    (" alice", "\\20alice"), ("alice ", "alice\\20"), ("a b", "a b"), ("zoë", "zoë"),
    ("\\2a", "\\5c2a"),
])
def test_filter_values_are_escaped(typed: str, value: str) -> None:
    assert escape_filter_value(typed) == value
    assert fill("filter", "(&(objectClass=person)(uid={username}))",
                typed) == f"(&(objectClass=person)(uid={value}))"


@pytest.mark.parametrize(("typed", "value"), [
    (",", "\\2C"), ("+", "\\2B"), ("=", "\\3D"), ("#ops", "\\23ops"), ("a#", "a#"),
    (" alice", "\\20alice"), ("alice ", "alice\\20"), ("a b", "a b"), ("\\", "\\5C"),
    ('"<>;', "\\22\\3C\\3E\\3B"), ("zoë", "zoë"), ("*", "*"),
    ("alice,ou=admins", "alice\\2Cou\\3Dadmins"),
])
def test_dn_values_are_escaped_and_never_change_the_dn(typed: str, value: str) -> None:
    assert escape_dn_value(typed) == value
    dn = fill("dn", "uid={login.username},ou=people,dc=example,dc=org", typed)
    assert dn == f"uid={value},ou=people,dc=example,dc=org"
    rdns = parse_dn(dn)
    assert len(rdns) == 4 and rdns[0] == [("uid", typed)]
    assert rdns[1:] == parse_dn(PEOPLE_DN)


def test_the_escaped_dn_is_the_one_slapd_prints() -> None:
    for user in USERS.values():
        if not user.rdn:
            assert fill("dn", "uid={username}," + PEOPLE_DN, user.uid) == user.dn


def test_dn_comparison_and_names() -> None:
    assert dn_key("CN=Voip, OU=Groups,dc=example,dc=org") == dn_key(GROUPS["voip"].dn)
    assert dn_key(r"cn=a\2Cb,o=x") == dn_key(r"cn=a\,b,o=x") != dn_key("cn=a,cn=b,o=x")
    assert rdn_value(r"CN=Zoë O'Brien\, Jr. (\#1\+2),CN=Users,DC=example,DC=test") == \
        "Zoë O'Brien, Jr. (#1+2)"
    assert ad_data_code("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext "
                        "error, data 52e, v1db1") == "52e"
    assert ad_data_code("invalidCredentials") is None


def test_directory_values_become_text_deliberately() -> None:
    assert text_value("displayName", "Zoë".encode()) == "Zoë"
    assert text_value("description", b"\xff\xfe\x00") == "fffe00"          # not UTF-8: hex
    assert text_value("description", b"\xff\xfe\x00", "base64") == "//4A"
    assert text_value("description", b"a\x00b") == "610062"                 # NUL: not text
    guid = b"0123456789abcdef"  # valid ASCII, but objectGUID is binary by definition
    assert text_value("objectGUID", guid) == guid.hex()
    assert text_value("userCertificate;binary", b"x") == "78"


def test_disabled_and_expired_entries_are_refused() -> None:
    def entry(**attrs: str) -> Entry:
        return Entry("CN=x,DC=example,DC=test",
                     {k.lower(): [v.encode()] for k, v in attrs.items()})

    now = time.time()
    filetime = int(now * 10_000_000) + 116444736000000000
    account_refusal(entry(userAccountControl="512", accountExpires="0"), "x")
    account_refusal(entry(accountExpires=str(0x7FFFFFFFFFFFFFFF)), "x")
    account_refusal(entry(accountExpires=str(filetime + 3600 * 10_000_000)), "x")
    account_refusal(entry(), "x")  # OpenLDAP: neither attribute
    with pytest.raises(NotPermitted, match="disabled"):
        account_refusal(entry(userAccountControl="514"), "x")
    with pytest.raises(NotPermitted, match="expired"):
        account_refusal(entry(accountExpires=str(filetime - 10_000_000)), "x")


# -- finding the user and checking the password --------------------------------------------


async def test_search_then_bind_reads_the_entry(slapd: Slapd, client: str) -> None:
    async with running(table(slapd, client)) as auth:
        identity = await login(auth, "alice", ALICE.password)
    assert identity is not None
    assert identity.username == "alice"
    assert dict(identity.attributes) == {
        "dn": ALICE.dn, "displayName": "Alice Liddell", "extension": "101",
        "mail": "alice@example.org"}


@pytest.mark.parametrize("ldaps", [True, False], ids=["ldaps", "starttls"])
async def test_wrong_password_and_unknown_users_are_none(slapd: Slapd, client: str,
                                                         ldaps: bool) -> None:
    async with running(table(slapd, client, ldaps=ldaps)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        assert await login(auth, "alice", "not-her-password") is None
        assert await login(auth, "nobody", ALICE.password) is None
        assert await login(auth, "nopass", "anything") is None       # no userPassword
        assert await login(auth, "ALICE", ALICE.password) is not None  # directory rules
        assert (await login(auth, "ALICE", ALICE.password)).username == "alice"


async def test_empty_password_never_reaches_a_bind(slapd: Slapd, client: str) -> None:
    async with running(table(slapd, client)) as auth:
        assert await login(auth, "alice", "") is None
        assert await login(auth, "", "x") is None
        with pytest.raises(ValueError, match="empty password"):
            await auth.client.bind(ALICE.dn, "")


@pytest.mark.parametrize("mode", ["search", "dn"])
@pytest.mark.parametrize("uid", ["#ops+dev,team=1", "zoë", "o'brien", "dave"])
async def test_special_names_log_in(slapd: Slapd, client: str, mode: str, uid: str) -> None:
    extra = {"user_dn": "uid={username}," + PEOPLE_DN} if mode == "dn" else {}
    async with running(table(slapd, client, **extra)) as auth:
        identity = await login(auth, uid, USERS[uid].password)
        assert identity is not None and identity.username == uid
        assert identity.attributes["dn"] == USERS[uid].dn
        assert await login(auth, uid, USERS[uid].password + "x") is None


async def test_hostile_names_never_widen_a_search(slapd: Slapd, client: str) -> None:
    async with running(table(slapd, client)) as auth:
        for typed in HOSTILE:
            flt = fill("filter", SEARCH["filter"], typed)
            # what the directory answers to the filter actually built: nobody
            found = await auth.client.search(PEOPLE_DN, Scope.SUBTREE, flt, ["uid"])
            assert found == [], (typed, flt)
            for password in (ALICE.password, "*"):
                assert await login(auth, typed, password) is None, typed


async def test_hostile_names_never_change_a_dn(slapd: Slapd, client: str) -> None:
    dn_template = "uid={username}," + PEOPLE_DN
    async with running(table(slapd, client, user_dn=dn_template, user_search=None)) as auth:
        for typed in HOSTILE:
            if "\x00" in typed:  # refused before any bind: see test_a_nul_never_reaches_a_dn
                with pytest.raises(UnsafeValue):
                    fill("dn", dn_template, typed)
            else:
                dn = fill("dn", dn_template, typed)
                assert parse_dn(dn)[0] == [("uid", typed)] and len(parse_dn(dn)) == 4, dn
            for password in (ALICE.password, "*"):
                assert await login(auth, typed, password) is None, typed


async def test_edge_spaces_follow_the_directory_matching_rules(slapd: Slapd,
                                                               client: str) -> None:
    """' alice' is sent as \\20alice (ldap3 would strip it); slapd ignores edge spaces."""
    async with running(table(slapd, client)) as auth:
        found = await auth.client.search(
            PEOPLE_DN, Scope.SUBTREE, fill("filter", SEARCH["filter"], " alice "), ["uid"])
        assert [e.dn for e in found] == [ALICE.dn]
        identity = await login(auth, " alice ", ALICE.password)
        assert identity is not None and identity.username == "alice"  # canonical
        assert await login(auth, " alice ", "wrong") is None


async def test_several_matches_are_invalid_credentials(slapd: Slapd, client: str) -> None:
    by_mail = {"base": PEOPLE_DN, "filter": "(mail={username})"}
    async with running(table(slapd, client, user_search=by_mail)) as auth:
        assert await login(auth, "twins@example.org", USERS["twin1"].password) is None
        assert await login(auth, "twins@example.org", USERS["twin2"].password) is None
        identity = await login(auth, "alice@example.org", ALICE.password)
        assert identity is not None and identity.username == "alice"


async def test_direct_bind_without_a_service_account(slapd: Slapd, client: str) -> None:
    """A pure DN bind: no search at all, the identity is the name as typed and the DN bound."""
    cfg = table(slapd, client, user_search=None, user_dn="uid={username}," + PEOPLE_DN,
                bind_dn=None, bind_password=None, attributes=None, username_attribute=None)
    async with running(cfg) as auth:
        assert await login(auth, "alice", ALICE.password) == Identity("alice", {"dn": ALICE.dn})
        assert await login(auth, "alice", "wrong") is None
        assert await login(auth, "jsmith", USERS["jsmith"].password) is None  # named by cn


# -- groups ------------------------------------------------------------------------------

VOIP = GROUPS["voip"].dn


@pytest.mark.parametrize(("groups", "uid", "allowed"), [
    ({"required": [VOIP]}, "alice", True),
    ({"required": [VOIP]}, "bob", False),
    ({"required": [VOIP.upper()]}, "dave", True),                 # DNs compare case-blind
    ({"required": [VOIP]}, "carol", True),                        # via staff: nested
    ({"required": [VOIP], "nested": False}, "carol", False),
    ({"required": [VOIP], "max_depth": 1}, "carol", False),
    ({"required": ["voip"]}, "carol", True),                      # a bare name: the CN
    ({"required": ["staff", "phones-unique"]}, "carol", True),    # any of
    ({"required": ["phones-unique"], "membership": "uniqueMember"}, "alice", True),
    ({"required": ["phones-unique"], "membership": "uniqueMember"}, "dave", False),
    ({"required": ["phones-unique"], "membership": "member"}, "alice", False),
    ({"required": ["sipusers"], "membership": "memberUid"}, "alice", True),
    ({"required": ["sipusers"], "membership": "memberUid"}, "dave", False),
    ({"required": ["loop-a"]}, "erin", True),                     # a cycle terminates
    ({"required": ["voip"], "filter": "(objectClass=groupOfUniqueNames)"}, "alice", False),
])
async def test_required_groups(slapd: Slapd, client: str, groups: dict[str, Any], uid: str,
                               allowed: bool) -> None:
    async with running(table(slapd, client, groups={"base": GROUPS_DN, **groups})) as auth:
        if allowed:
            assert await login(auth, uid, USERS[uid].password) is not None
        else:
            with pytest.raises(NotPermitted, match="required groups"):
                await login(auth, uid, USERS[uid].password)
        # authenticated-but-not-permitted is only ever said to the right password
        assert await login(auth, uid, "wrong-password") is None


async def test_identity_groups_are_every_group_found(slapd: Slapd, client: str) -> None:
    groups = {"base": GROUPS_DN, "membership": ["member", "uniqueMember", "memberUid"]}
    async with running(table(slapd, client, groups=groups)) as auth:
        alice = await login(auth, "alice", ALICE.password)
        erin = await login(auth, "erin", USERS["erin"].password)
    assert alice is not None and erin is not None
    assert alice.groups == {VOIP, GROUPS["phones-unique"].dn, GROUPS["sipusers"].dn}
    assert erin.groups == {VOIP, GROUPS["loop-a"].dn, GROUPS["loop-b"].dn}


async def test_multi_valued_attributes_give_their_first_value(slapd: Slapd,
                                                              client: str) -> None:
    async with running(table(slapd, client)) as auth:
        erin = await login(auth, "erin", USERS["erin"].password)
    assert erin is not None and erin.attributes["extension"] == "105"


# -- failures ------------------------------------------------------------------------------


async def test_stopped_directory_is_an_outage_not_a_wrong_password(private_slapd: Slapd,
                                                                   client: str) -> None:
    async with running(table(private_slapd, client)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        private_slapd.stop()
        for password in (ALICE.password, "wrong"):
            with pytest.raises(UpstreamUnavailable):
                await login(auth, "alice", password)
        private_slapd.start()
        deadline = time.monotonic() + 10  # the asyncio client skips a failed server ~3 s
        while True:
            try:
                identity = await login(auth, "alice", ALICE.password)
                break
            except UpstreamUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert identity is not None
        assert await login(auth, "alice", "wrong") is None


async def test_restart_between_requests_costs_no_error(private_slapd: Slapd,
                                                       client: str) -> None:
    """Pooled connections die with the server; one retry on a new connection hides it."""
    async with running(table(private_slapd, client)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        private_slapd.restart()
        assert await login(auth, "alice", ALICE.password) is not None
        assert await login(auth, "bob", "wrong") is None


async def test_paused_directory_times_out(private_slapd: Slapd, client: str) -> None:
    async with running(table(private_slapd, client, ldaps=False, tls="none",
                             timeout=0.5, connect_timeout=0.5)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        with private_slapd.paused():
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await login(auth, "alice", ALICE.password)
            assert time.monotonic() - started < 2.5
        # A server that hung on a fresh connection's first operation is skipped for
        # down_for seconds (bridge/ldap/failover.py); after that it is used again.
        recovered = time.monotonic() + DOWN_FOR + 2
        while True:
            try:
                assert await login(auth, "alice", ALICE.password) is not None
                break
            except UpstreamUnavailable:
                assert time.monotonic() < recovered, "not used again after down_for"
                await asyncio.sleep(0.2)


async def test_failover_to_the_next_uri(slapd: Slapd, client: str) -> None:
    dead = f"ldaps://127.0.0.1:{slapd_mod.free_port()}"
    async with running(table(slapd, client, uri=[dead, slapd.ldaps_uri])) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        assert await login(auth, "alice", "wrong") is None
    async with running(table(slapd, client, uri=[dead])) as auth:
        with pytest.raises(UpstreamUnavailable):
            await login(auth, "alice", "wrong")


async def test_a_hanging_first_uri_is_failed_over(slapd: Slapd, client: str) -> None:
    """A first URI that accepts TCP and never answers (tls = "none"): the login that meets it
    is answered by the next URI within connect_timeout + timeout, and a wrong password
    stays a wrong password, never an outage."""
    with Listener("hang") as hang:
        uris = [hang.uri(TlsMode.NONE), slapd.uri]
        async with running(table(slapd, client, ldaps=False, tls="none", uri=uris,
                                 timeout=0.5, connect_timeout=0.5)) as auth:
            started = time.monotonic()
            assert await login(auth, "alice", ALICE.password) is not None
            assert time.monotonic() - started < 1.0 + 0.5
            seen = hang.accepted
            assert await login(auth, "alice", "wrong") is None
            assert await login(auth, "bob", USERS["bob"].password or "") is not None
            assert hang.accepted == seen  # marked down: not tried again within down_for


async def test_untrusted_certificate_is_an_outage(slapd: Slapd, client: str,
                                                  tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    for ldaps in (True, False):
        async with running(table(slapd, client, ldaps=ldaps, ca_file=str(other))) as auth:
            with pytest.raises(UpstreamUnavailable):
                await login(auth, "alice", ALICE.password)
    async with running(table(slapd, client, tls_name="ldap.example.org")) as auth:
        with pytest.raises(UpstreamUnavailable):  # the certificate is for localhost
            await login(auth, "alice", ALICE.password)


async def test_rejected_service_account_is_an_outage(slapd: Slapd, client: str) -> None:
    async with running(table(slapd, client, bind_password="not-the-secret")) as auth:
        with pytest.raises(UpstreamUnavailable):
            await login(auth, "alice", ALICE.password)


async def test_wrong_base_is_a_configuration_error(slapd: Slapd, client: str) -> None:
    search = {"base": "ou=nowhere,dc=example,dc=org", "filter": SEARCH["filter"]}
    async with running(table(slapd, client, user_search=search)) as auth:
        with pytest.raises(InternalError, match="32"):
            await login(auth, "alice", ALICE.password)


# -- readiness ---------------------------------------------------------------------------


async def test_ready_when_the_directory_answers(slapd: Slapd, client: str) -> None:
    anonymous = table(slapd, client, user_search=None, user_dn="uid={username}," + PEOPLE_DN,
                      bind_dn=None, bind_password=None, attributes=None,
                      username_attribute=None)
    for cfg in (table(slapd, client), table(slapd, client, ldaps=False), anonymous):
        async with running(cfg) as auth:
            await auth.ready()      # a root DSE read (as the service account, or anonymous)
            await auth.ready()      # and again, on the pooled connection


async def test_ready_raises_when_the_directory_cannot_serve(slapd: Slapd, client: str) -> None:
    closed = f"ldaps://127.0.0.1:{slapd_mod.free_port()}"
    async with running(table(slapd, client, uri=closed)) as auth:
        with pytest.raises(UpstreamUnavailable):
            await auth.ready()
    async with running(table(slapd, client, bind_password="not-the-secret")) as auth:
        with pytest.raises(UpstreamUnavailable, match="service account") as refused:
            await auth.ready()
        assert "not-the-secret" not in str(refused.value)


async def test_ready_times_out_on_a_paused_directory(private_slapd: Slapd, client: str) -> None:
    async with running(table(private_slapd, client, ldaps=False, tls="none",
                             timeout=1, connect_timeout=1)) as auth:
        await auth.ready()
        with private_slapd.paused(), pytest.raises(UpstreamTimeout):
            await auth.ready()


# -- connections -------------------------------------------------------------------------


async def test_no_connection_stays_bound_as_the_user(monitored_slapd: Slapd,
                                                     client: str) -> None:
    monitor = monitored_slapd.monitor()
    async with running(table(monitored_slapd, client)) as auth:
        for uid in ("alice", "dave", "carol"):
            assert await login(auth, uid, USERS[uid].password) is not None
        await asyncio.sleep(0.3)  # the asyncio client resets in the background
        dns = bound_as(monitor)
        assert SERVICE_DN in dns  # the pooled service connection stays
        assert not [dn for dn in dns if "ou=people" in dn], dns
    monitor.unbind()


async def test_connections_are_reused(monitored_slapd: Slapd, client: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequential logins: one service bind in total, then per login a bind, and the reset:
    ldap3 after each bind; asyncio only once a connection has been idle for RESET_DELAY
    (made long here, so that back-to-back means the same on a loaded machine)."""
    monkeypatch.setattr(aio, "RESET_DELAY", 1.0)
    monitor = monitored_slapd.monitor()
    async with running(table(monitored_slapd, client, threads=1)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None
        await asyncio.sleep(1.2)
        before = bind_count(monitor)
        for _ in range(10):
            assert await login(auth, "alice", ALICE.password) is not None
        if client == "asyncio":
            assert bind_count(monitor) - before == 10  # the user binds, nothing between them
            assert ALICE.dn in bound_as(monitor)  # idle for less than RESET_DELAY
            await asyncio.sleep(1.2)
            assert bind_count(monitor) - before == 11  # one anonymous reset, when idle
        else:
            await asyncio.sleep(0.3)
            assert bind_count(monitor) - before == 20  # 10 user binds + 10 anonymous resets
        assert ALICE.dn not in bound_as(monitor)
    monitor.unbind()



async def test_a_nul_never_reaches_a_dn(monitored_slapd: Slapd, client: str) -> None:
    """A typed name with a NUL cannot be placed in a DN: invalid credentials, without a bind
    (no 5xx: it is what the phone sent, not what a backend returned)."""
    monitor = monitored_slapd.monitor()
    dn_template = "uid={username}," + PEOPLE_DN
    async with running(table(monitored_slapd, client, user_dn=dn_template,
                             user_search=None)) as auth:
        assert await login(auth, "alice", ALICE.password) is not None  # connected, warm
        await asyncio.sleep(0.3)
        before = bind_count(monitor)
        for typed in ("alice\x00", "\x00"):
            assert await login(auth, typed, ALICE.password) is None
        await asyncio.sleep(0.3)
        assert bind_count(monitor) == before
    monitor.unbind()


async def test_rejected_service_account_binds_once_per_down_for(
        monitored_slapd: Slapd, client: str, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong service password: 30 logins, one failed service bind (not 30: AD lockout)."""
    caplog.set_level(logging.INFO)
    wrong = "not-the-gateway-secret"
    monitor = monitored_slapd.monitor()
    before = bind_count(monitor)
    async with running(table(monitored_slapd, client, bind_password=wrong)) as auth:
        for _ in range(10):
            with pytest.raises(UpstreamUnavailable, match="service account"):  # a 503
                await login(auth, "alice", ALICE.password)
        results = await asyncio.gather(*(login(auth, "alice", ALICE.password)
                                         for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, UpstreamUnavailable) for r in results), results
        binds = bind_count(monitor) - before
    monitor.unbind()
    assert 1 <= binds <= 2, f"{binds} service binds for 30 logins within down_for"
    errors = [r.getMessage() for r in caplog.records
              if r.name == "bridge.ldap" and r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert monitored_slapd.ldaps_uri in errors[0] and SERVICE_DN in errors[0]
    assert wrong not in caplog.text


async def test_bind_and_search_runs_as_the_user(slapd: Slapd, client: str) -> None:
    own = SearchRequest(ALICE.dn, Scope.BASE, "(objectClass=*)", ["uid", "userPassword"])
    async with running(table(slapd, client)) as auth:
        result, entries = await auth.client.bind_and_search(ALICE.dn, ALICE.password, own)
        assert result.ok and [e.dn for e in entries] == [ALICE.dn]
        assert entries[0].values("userPassword")  # readable by alice herself only
        assert await auth.client.search(ALICE.dn, Scope.BASE, "(objectClass=*)",
                                        ["userPassword"]) == [Entry(ALICE.dn, {})]
        result, entries = await auth.client.bind_and_search(ALICE.dn, "wrong", own)
        assert (result.code, entries) == (49, [])
        missing = SearchRequest(f"ou=nowhere,{slapd.base_dn}", Scope.BASE, "(uid=*)", [])
        with pytest.raises(LdapOperationError):
            await auth.client.bind_and_search(ALICE.dn, ALICE.password, missing)
        assert (await auth.client.bind(ALICE.dn, ALICE.password)).ok  # the pool is fine


# -- AD bind sub-codes, at the unit level (tests/ad has the real ones) ---------------------

# Recorded from Samba AD (tests/ad) after two wrong passwords under a lockout policy of 2:
# the same answer for the right password and for any other.
AD_LOCKED_OUT = ("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, "
                 "data 775, v1db1")


class RecordedAD(LdapClient):
    """Answers every bind with one recorded Active Directory result: no network."""

    def __init__(self, message: str) -> None:
        super().__init__(ServerSettings(uris=("ldaps://dc1.example.test",)))
        self.message = message
        self.binds = 0

    async def bind(self, dn: str, password: str) -> LdapResult:
        self.binds += 1
        return LdapResult(49, self.message)


def recorded(message: str) -> LdapAuthenticator:
    auth = make({"type": "ldap", "uri": "ldaps://dc1.example.test",
                 "user_dn": "CN={username},CN=Users,DC=example,DC=test"})
    auth._client = RecordedAD(message)
    return auth


async def test_locked_out_is_invalid_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """AD says 775 to any password: telling it apart would confirm the account to a guesser."""
    caplog.set_level(logging.INFO, logger="bridge.auth.ldap")
    auth = recorded(AD_LOCKED_OUT)
    for password in ("the-right-one", "a-guess"):
        assert await login(auth, "alice", password) is None  # -> 401, counted as a failure
    assert "'alice' is locked out (AD data 775)" in caplog.text
    assert "a-guess" not in caplog.text


@pytest.mark.parametrize(("code", "why"), [
    ("533", "account disabled"), ("701", "account expired"), ("773", "must be changed"),
    ("530", "at this time"), ("531", "from this workstation"), ("532", "password expired")])
async def test_refusals_after_the_right_password_are_not_permitted(code: str, why: str) -> None:
    """Only ever answered to the right password (52e otherwise): a 403 tells nothing new."""
    auth = recorded(AD_LOCKED_OUT.replace("data 775", f"data {code}"))
    with pytest.raises(NotPermitted, match=why):
        await login(auth, "alice", "the-right-one")


async def test_wrong_password_and_unknown_user_sub_codes_are_none() -> None:
    for code in ("52e", "525"):
        assert await login(recorded(AD_LOCKED_OUT.replace("775", code)), "alice", "x") is None


# -- group names ---------------------------------------------------------------------------


def test_bare_group_names_only_match_under_the_base() -> None:
    inside, outside = GROUPS["voip"].dn, "cn=voip,ou=projects,dc=example,dc=org"
    deeper = "cn=voip,ou=team,ou=groups,dc=example,dc=org"

    def found(*dns: str) -> dict[tuple, str]:
        return {dn_key(dn): dn for dn in dns}

    policy = GroupPolicy(required=("voip",), base=GROUPS_DN)
    assert policy.allows(found(inside))
    assert not policy.allows(found(outside))  # same name, elsewhere (e.g. through memberOf)
    assert policy.allows(found(deeper))       # scope "sub"
    assert not GroupPolicy(required=("voip",), base=GROUPS_DN,
                           scope=Scope.ONELEVEL).allows(found(deeper))
    assert GroupPolicy(required=("VOIP",), base=GROUPS_DN.upper()).allows(found(inside))
    # a DN says exactly which group: it needs no base
    assert GroupPolicy(required=(outside,), base=GROUPS_DN).allows(found(outside))
    assert GroupPolicy(required=(outside,), membership=("memberOf",)).allows(found(outside))


def test_bare_group_names_need_a_base() -> None:
    base = {"type": "ldap", "client": "ldap3", "uri": "ldaps://ldap.example.org",
            "user_dn": "uid={username},o=x", "bind_dn": SERVICE_DN, "bind_password": "x"}
    found = problems({**base, "groups": {"membership": "memberOf",
                                         "required": ["voip", "cn=staff,o=x"]}})
    assert any("'auth.groups.required': bare group names ('voip')" in p for p in found), found
    assert problems({**base, "groups": {"membership": "memberOf",
                                        "required": ["cn=staff,o=x"]}}) == []
    assert problems({**base, "groups": {"membership": "memberOf", "required": ["voip"],
                                        "base": "o=x"}}) == []


# -- shared pieces: the error mapping and the TLS policy --------------------------------------


def test_translate_is_one_mapping_for_auth_and_source() -> None:
    import bridge.auth.ldap
    import bridge.sources.ldap

    assert bridge.auth.ldap.translate is translate is bridge.sources.ldap.translate
    assert isinstance(translate(LdapUnavailable("service account rejected")),
                      UpstreamUnavailable)
    assert isinstance(translate(LdapTimeout("slow")), UpstreamTimeout)
    assert isinstance(translate(LdapOperationError(LdapResult(32), "search")), InternalError)
    assert isinstance(translate(LdapOperationError(LdapResult(1), "search")),
                      UpstreamUnavailable)


async def test_one_tls_policy_for_ldap_and_http(slapd: Slapd,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Both clients and the configuration check build contexts with bridge.net's policy."""
    import bridge.ldap.aio
    import bridge.ldap.config
    import bridge.ldap.threaded
    import bridge.net

    calls: list[tuple[str | None, bool]] = []

    def spy(ca_file: str | None = None, *, verify: bool = True, **kw: Any) -> Any:
        calls.append((ca_file, verify))
        return bridge.net.client_tls_context(ca_file, verify=verify, **kw)

    for module in (bridge.ldap.aio, bridge.ldap.config, bridge.ldap.threaded):
        monkeypatch.setattr(module, "client_tls_context", spy)
    assert bridge.ldap.config.is_loopback is bridge.net.is_loopback
    ca = str(slapd.ca_file)
    for client in CLIENTS:
        calls.clear()
        async with running(table(slapd, client)) as auth:
            assert calls[0] == (ca, True)  # the configuration check
            assert await login(auth, "alice", ALICE.password) is not None
        assert calls == [(ca, True)] * 2, calls  # and the client's one context
    calls.clear()
    auth = make(table(slapd, "ldap3", tls_verify=False))
    auth.directory.make_client()
    assert calls == [(ca, False), (ca, False)]


# -- round trips per login (issue 16): counted by slapd's cn=Monitor --------------------------

OPENLDAP_GROUPS = {"required": [VOIP], "membership": ["member", "uniqueMember"],
                   "base": GROUPS_DN}  # as deploy/examples/openldap.toml: nested by default


class Counter:
    """Searches and binds slapd completed between two reads (the reads' own search excluded)."""

    def __init__(self, server: Slapd) -> None:
        self.monitor = server.monitor()
        self.searches, self.binds = self._read()
        again, _ = self._read()
        self.own = again - self.searches  # a read's own search, counted by the next read
        self.searches = again

    def _read(self) -> tuple[int, int]:
        return slapd_mod.search_count(self.monitor), bind_count(self.monitor)

    async def since(self) -> tuple[int, int]:
        await asyncio.sleep(0.2)  # let a background anonymous rebind complete
        searches, binds = self._read()
        delta = (searches - self.searches - self.own, binds - self.binds)
        self.searches, self.binds = searches, binds
        return delta

    def close(self) -> None:
        self.monitor.unbind()


async def test_group_lookups_are_cached_per_dn(monitored_slapd: Slapd, client: str) -> None:
    """openldap.toml's shape: before (cache_ttl = 0) a login is the user search, the bind
    and two group searches (alice's groups, then the groups holding those); after, a second
    login needs the user search and the bind only."""
    count = Counter(monitored_slapd)
    try:
        for ttl, searches in ((0, [3, 3]), (30, [3, 1])):
            cfg = table(monitored_slapd, client, groups={**OPENLDAP_GROUPS, "cache_ttl": ttl})
            async with running(cfg) as auth:
                # opens the connections (service binds are not a login's); dave's groups
                # are voip only, so alice's first login still looks up phones-unique's
                assert await login(auth, "dave", USERS["dave"].password) is not None
                await count.since()
                for expected in searches:
                    identity = await login(auth, "alice", ALICE.password)
                    assert identity is not None
                    assert identity.groups == {VOIP, GROUPS["phones-unique"].dn}
                    found, binds = await count.since()
                    assert found == expected, (ttl, found)
                    # the user's bind and an anonymous rebind (ldap3's threads may also
                    # open a connection of their own, with its service bind)
                    assert 1 <= binds <= (2 if client == "asyncio" else 4)
                # the cache holds groups, never a password: a wrong one is still refused
                assert await login(auth, "alice", "wrong-password") is None
                # and a failed bind reads no groups: the user search only
                assert (await count.since())[0] == 1
    finally:
        count.close()


async def test_a_membership_change_shows_within_the_ttl(monitored_slapd: Slapd,
                                                        client: str) -> None:
    from ldap3 import MODIFY_ADD, MODIFY_DELETE, Connection, Server

    ttl = 2.0
    cfg = table(monitored_slapd, client,
                groups={"required": [VOIP], "base": GROUPS_DN, "cache_ttl": ttl})
    admin = Connection(Server(monitored_slapd.host, port=monitored_slapd.port),
                       monitored_slapd.admin_dn, monitored_slapd.admin_password,
                       auto_bind=True)
    try:
        async with running(cfg) as auth:
            assert await login(auth, "dave", USERS["dave"].password) is not None
            started = time.monotonic()
            assert admin.modify(VOIP, {"member": [(MODIFY_DELETE, [USERS["dave"].dn])]})
            # within the ttl the cached lookup may still let dave in ...
            if time.monotonic() - started < ttl / 2:
                assert await login(auth, "dave", USERS["dave"].password) is not None
            # ... past it, never
            await asyncio.sleep(max(0.0, started + ttl + 0.1 - time.monotonic()))
            with pytest.raises(NotPermitted, match="required groups"):
                await login(auth, "dave", USERS["dave"].password)
            # a refusal is cached no longer than an admission
            assert admin.modify(VOIP, {"member": [(MODIFY_ADD, [USERS["dave"].dn])]})
            await asyncio.sleep(ttl + 0.1)
            assert await login(auth, "dave", USERS["dave"].password) is not None
    finally:
        admin.unbind()


async def test_a_failed_lookup_is_not_cached(slapd: Slapd, client: str) -> None:
    """A group search that fails (here: a base that does not exist) raises every time; were
    its failure stored as "no groups", the second login would be a 403 instead."""
    missing = f"ou=missing,{GROUPS_DN}"
    async with running(table(slapd, client, groups={"required": [VOIP], "base": missing})) \
            as auth:
        for _ in range(2):
            with pytest.raises(InternalError):
                await login(auth, "alice", ALICE.password)
        assert auth.group_cache.get(f"(member={escape_filter_value(ALICE.dn)})",
                                    time.monotonic()) is None


def test_group_cache_expires_and_stays_bounded() -> None:
    from bridge.auth.ldap import GroupCache

    cache = GroupCache(ttl=10, limit=3)
    hit = ((dn_key(VOIP), VOIP),)
    cache.put("(member=a)", hit, now=100)
    assert cache.get("(member=a)", now=109.9) == hit
    assert cache.get("(member=a)", now=110) is None  # never past the ttl
    for i, key in enumerate("bcde"):
        cache.put(f"(member={key})", (), now=200 + i)
    assert cache.get("(member=b)", now=205) is None  # the oldest went first
    assert cache.get("(member=e)", now=205) == ()
    off = GroupCache(ttl=0)
    off.put("(member=a)", hit, now=0)
    assert off.get("(member=a)", now=0) is None


DIRECT = {"user_dn": f"uid={{username}},{PEOPLE_DN}", "user_search": None}


@pytest.mark.parametrize("read_entry_as", ["service", "user"])
async def test_direct_bind_reads_the_entry(monitored_slapd: Slapd, client: str,
                                           read_entry_as: str) -> None:
    """One bind and one read either way; as the user, no service account connection."""
    count = Counter(monitored_slapd)
    try:
        async with running(table(monitored_slapd, client, read_entry_as=read_entry_as,
                                 **DIRECT)) as auth:
            await count.since()
            identity = await login(auth, "alice", ALICE.password)
            assert identity is not None
            assert identity.attributes["displayName"] == ALICE.display_name
            assert identity.attributes["dn"] == ALICE.dn
            assert identity.username == "alice"
            searches, binds = await count.since()
            assert searches == 1
            # the user's bind (+ rebind); as the service account also the service bind
            assert binds <= (2 if read_entry_as == "user" else 3)
            service = [dn for dn in bound_as(count.monitor) if dn.lower() == SERVICE_DN.lower()]
            assert bool(service) == (read_entry_as == "service")
            assert await login(auth, "alice", "wrong-password") is None
    finally:
        count.close()


async def test_read_as_user_needs_no_service_account(slapd: Slapd, client: str) -> None:
    """With a refused service password, "user" still logs in: the read was the user's."""
    cfg = table(slapd, client, read_entry_as="user", bind_password="not-the-password",
                **DIRECT)
    async with running(cfg) as auth:
        assert (await login(auth, "bob", USERS["bob"].password)) is not None
        assert await login(auth, "bob", "wrong") is None
    cfg["read_entry_as"] = "service"
    async with running(cfg) as auth:
        with pytest.raises(UpstreamUnavailable):
            await login(auth, "bob", USERS["bob"].password)


async def test_read_as_user_that_finds_nothing_names_the_setting(slapd: Slapd,
                                                                 client: str) -> None:
    """An entry the user cannot read (here: a filter that matches nothing) is a 500 that
    says what to change, never a wrong password."""
    cfg = table(slapd, client, read_entry_as="user", user_dn=f"uid={{username}},{PEOPLE_DN}",
                user_search={"base": PEOPLE_DN,
                             "filter": "(&(objectClass=groupOfNames)(uid={username}))"})
    async with running(cfg) as auth:
        with pytest.raises(InternalError, match="as itself"):
            await login(auth, "alice", ALICE.password)
        assert await login(auth, "alice", "wrong") is None

"""The LDAP authenticator against a real Samba AD DC: the Active Directory specifics.

sAMAccountName search-then-bind and UPN binds over LDAPS and StartTLS (the
entry's DN found as the user after a UPN bind), nested groups through the
in-chain matching rule (one search), the bind sub-codes (533 disabled, 701
expired, 773 must change password) as NotPermitted and 775 (locked out) as
invalid credentials, bare group names only under the groups' base, the search
continuation references AD puts in subtree results, binary attributes.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import Connection, Server, Tls

from bridge.auth import build_authenticator
from bridge.auth.ldap import LdapAuthenticator
from bridge.config import Section
from bridge.errors import NotPermitted
from bridge.ldap.client import Scope
from bridge.ldap.escape import escape_filter_value
from bridge.models import Credentials, Identity
from bridge.sources import build_source
from bridge.sources.ldap import LdapSource
from tests.ad.samba import AD_GROUPS, AD_USERS
from tests.auth.test_ldap import CLIENTS

pytestmark = pytest.mark.slow
ALICE = AD_USERS["alice"]
SPECIAL = AD_USERS["zoë.o'brien(x)"]
BY_SAM = "(&(objectClass=user)(sAMAccountName={username}))"


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["ldaps", "starttls"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def ad_table(env: dict[str, str], client: str, transport: str = "ldaps",
             **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "type": "ldap", "client": client,
        "uri": env["AD_LDAPS_URL"] if transport == "ldaps" else env["AD_LDAP_URL"],
        "ca_file": env["AD_CA_FILE"], "tls_name": env["AD_TLS_NAME"],
        "bind_dn": env["AD_SVC_UPN"], "bind_password": env["AD_SVC_PASSWORD"],
        "timeout": 5, "connect_timeout": 3, "threads": 4,
        "user_search": {"base": env["AD_BASE_DN"], "filter": BY_SAM},
        "username_attribute": "sAMAccountName",
        "attributes": {"mail": "mail", "guid": "objectGUID", "sid": "objectSid",
                       "upn": "userPrincipalName"},
    }
    cfg.update(extra)
    return {k: v for k, v in cfg.items() if v is not None}


@contextlib.asynccontextmanager
async def running(cfg: dict[str, Any]) -> AsyncIterator[LdapAuthenticator]:
    section = Section(cfg, "auth", [], Path.cwd())
    auth = build_authenticator(section)
    assert section.problems == []
    assert isinstance(auth, LdapAuthenticator)
    await auth.start()
    try:
        yield auth
    finally:
        await auth.close()


async def login(auth: LdapAuthenticator, username: str, password: str) -> Identity | None:
    return await auth.authenticate(Credentials(username, password))


@contextlib.contextmanager
def administrator(env: dict[str, str]) -> Iterator[Connection]:
    """An ldap3 connection as the domain's Administrator, to add objects for one test."""
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=env["AD_CA_FILE"],
              version=ssl.PROTOCOL_TLS_CLIENT, valid_names=[env["AD_TLS_NAME"]])
    conn = Connection(Server(env["AD_HOST"], port=636, use_ssl=True, tls=tls),
                      env["AD_ADMIN_UPN"], env["AD_ADMIN_PASSWORD"], auto_bind=True)
    try:
        yield conn
    finally:
        conn.unbind()


def add_fresh(admin: Connection, dn: str, classes: list[str], attrs: dict[str, Any]) -> None:
    admin.delete(dn)  # a kept domain (ZB_SAMBA_AD_DIR) may hold it from an interrupted run
    assert admin.add(dn, classes, attrs), admin.result


async def test_sam_account_name_search_then_bind(samba_ad: dict[str, str], client: str,
                                                 transport: str) -> None:
    async with running(ad_table(samba_ad, client, transport)) as auth:
        identity = await login(auth, "alice", ALICE.password)
        assert identity is not None
        assert identity.username == "alice"
        assert identity.attributes["dn"] == ALICE.dn
        assert identity.attributes["mail"] == "alice@example.test"
        assert identity.attributes["upn"] == ALICE.upn
        # binary attributes come out as hex, never as mangled text
        assert len(str(identity.attributes["guid"])) == 32
        assert str(identity.attributes["sid"]).startswith("010500000000000515000000")
        assert await login(auth, "alice", "Wrong-Passw0rd") is None
        assert await login(auth, "nobody", ALICE.password) is None


@pytest.mark.parametrize("service", [True, False], ids=["service-account", "no-service-account"])
async def test_upn_bind(samba_ad: dict[str, str], client: str, transport: str,
                        service: bool) -> None:
    upn = "{username}@" + samba_ad["AD_UPN_SUFFIX"]
    pure = ad_table(samba_ad, client, transport, user_upn=upn, user_search=None,
                    attributes=None, username_attribute=None)
    if not service:
        pure = {k: v for k, v in pure.items() if k not in ("bind_dn", "bind_password")}
    async with running(pure) as auth:   # a bind, and the DN found as that user
        assert await login(auth, "alice", ALICE.password) == Identity("alice", {"dn": ALICE.dn})
        assert await login(auth, SPECIAL.sam, SPECIAL.password) == Identity(
            SPECIAL.sam, {"dn": SPECIAL.dn})  # (x) in the UPN: escaped in the filter
        assert await login(auth, "alice", "Wrong-Passw0rd") is None
        assert await login(auth, "nobody", "Wrong-Passw0rd") is None
        for typed in ("alice@example.test", "EXAMPLE\\alice", "alice,CN=Users", "*", " alice"):
            assert await login(auth, typed, ALICE.password) is None
    if not service:
        return
    async with running(ad_table(samba_ad, client, transport, user_upn=upn)) as auth:
        identity = await login(auth, "alice", ALICE.password)  # bind by UPN, read by search
        assert identity is not None and identity.attributes["dn"] == ALICE.dn
    bare = ad_table(samba_ad, client, transport, user_upn=upn, attributes=None,
                    username_attribute=None)
    async with running(bare) as auth:  # with a search but nothing to read: the DN still
        assert await login(auth, "alice", ALICE.password) == Identity("alice", {"dn": ALICE.dn})


async def test_directory_source_after_a_upn_bind(samba_ad: dict[str, str], client: str) -> None:
    """{identity.dn} after a UPN bind alone: the source's default base "{dn}" finds the entry."""
    cfg = ad_table(samba_ad, client, user_upn="{username}@" + samba_ad["AD_UPN_SUFFIX"],
                   user_search=None, attributes=None, username_attribute=None)
    cfg = {k: v for k, v in cfg.items() if k not in ("bind_dn", "bind_password")}
    async with running(cfg) as auth:
        identity = await login(auth, "alice", ALICE.password)
    assert identity is not None
    section = Section({"type": "ldap", "from": "directory", "client": client,
                       **{k: cfg[k] for k in ("uri", "ca_file", "tls_name")},
                       "bind_dn": samba_ad["AD_SVC_UPN"],
                       "bind_password": samba_ad["AD_SVC_PASSWORD"],
                       "fields": {"mail": "mail"}}, "source", [], Path.cwd())
    source = build_source(section)
    assert section.problems == [] and isinstance(source, LdapSource)
    await source.start()
    try:
        accounts = await source.accounts(identity, Credentials("alice", ALICE.password))
    finally:
        await source.close()
    assert [dict(a.fields) for a in accounts] == [{"dn": ALICE.dn,
                                                   "mail": "alice@example.test"}]


@pytest.mark.parametrize("mode", ["search", "upn"])
@pytest.mark.parametrize(("sam", "code"), [("bob", "533"), ("dave", "701"), ("carol", "773")])
async def test_refused_accounts_are_not_permitted(samba_ad: dict[str, str], client: str,
                                                  mode: str, sam: str, code: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    extra = {"user_upn": "{username}@" + samba_ad["AD_UPN_SUFFIX"]} if mode == "upn" else {}
    async with running(ad_table(samba_ad, client, **extra)) as auth:
        with pytest.raises(NotPermitted, match=f"AD data {code}") as refused:
            await login(auth, sam, AD_USERS[sam].password)
        assert sam in refused.value.detail
        # the wrong password is still only a wrong password (52e)
        assert await login(auth, sam, "Wrong-Passw0rd") is None


@pytest.mark.parametrize(("groups", "allowed", "found"), [
    ({"membership": "in_chain", "required": [AD_GROUPS["groupOuter"]]}, True,
     {"groupInner", "groupOuter"}),
    ({"membership": "in_chain", "required": ["groupouter"]}, True,
     {"groupInner", "groupOuter"}),
    ({"membership": "memberOf", "required": ["groupInner"]}, True, {"groupInner"}),
    ({"membership": "memberOf", "required": ["groupOuter"]}, False, set()),  # direct only
    ({"membership": "memberOf", "required": [AD_GROUPS["groupInner"]]}, True,
     {"groupInner"}),                                                       # DNs: no base
    ({"membership": "member", "required": ["groupOuter"]}, True,
     {"groupInner", "groupOuter"}),                                         # client-side
    ({"membership": "in_chain", "required": ["Domain Admins"]}, False, set()),
])
async def test_nested_groups(samba_ad: dict[str, str], client: str, groups: dict[str, Any],
                             allowed: bool, found: set[str]) -> None:
    policy = {"base": samba_ad["AD_BASE_DN"], **groups}
    if groups["membership"] == "memberOf" and all("=" in r for r in groups["required"]):
        policy.pop("base")  # memberOf needs no search; bare names need the base, DNs do not
    async with running(ad_table(samba_ad, client, groups=policy)) as auth:
        if not allowed:
            with pytest.raises(NotPermitted, match="required groups"):
                await login(auth, "alice", ALICE.password)
            return
        identity = await login(auth, "alice", ALICE.password)
    assert identity is not None
    assert identity.groups >= {AD_GROUPS[g] for g in found}


async def test_in_chain_is_one_search(samba_ad: dict[str, str], client: str) -> None:
    async with running(ad_table(samba_ad, client)) as auth:
        flt = f"(member:1.2.840.113556.1.4.1941:={escape_filter_value(ALICE.dn)})"
        entries = await auth.client.search(samba_ad["AD_BASE_DN"], Scope.SUBTREE, flt, ["1.1"])
    assert {e.dn for e in entries} >= set(AD_GROUPS.values())


async def test_continuation_references_are_skipped(samba_ad: dict[str, str],
                                                   client: str) -> None:
    """A subtree search from the domain root carries a searchResRef; it is not an entry."""
    base = samba_ad["AD_BASE_DN"]
    async with running(ad_table(samba_ad, client)) as auth:
        one = await auth.client.search(base, Scope.SUBTREE, "(sAMAccountName=alice)", ["cn"])
        assert [e.dn for e in one] == [ALICE.dn]
        assert await auth.client.search(base, Scope.SUBTREE, "(sAMAccountName=nobody)",
                                        ["cn"]) == []


@pytest.mark.parametrize("mode", ["search", "upn"])
async def test_special_characters(samba_ad: dict[str, str], client: str, mode: str) -> None:
    extra = {"user_upn": "{username}@" + samba_ad["AD_UPN_SUFFIX"]} if mode == "upn" else {}
    groups = {"base": samba_ad["AD_BASE_DN"], "membership": "in_chain"}  # the DN in a filter
    async with running(ad_table(samba_ad, client, groups=groups, **extra)) as auth:
        identity = await login(auth, SPECIAL.sam, SPECIAL.password)
        assert identity is not None
        assert identity.username == SPECIAL.sam
        assert identity.attributes["dn"] == SPECIAL.dn
        assert await login(auth, SPECIAL.sam, SPECIAL.password[:-1]) is None
        for hostile in ("*", "zoë*", "alice)(|(sAMAccountName=*", "*)(objectClass=*"):
            flt = BY_SAM.replace("{username}", escape_filter_value(hostile))
            assert await auth.client.search(samba_ad["AD_BASE_DN"], Scope.SUBTREE, flt,
                                            ["cn"]) == []
            assert await login(auth, hostile, ALICE.password) is None


@pytest.fixture
def voip_elsewhere(samba_ad: dict[str, str]) -> Iterator[str]:
    """A group named "voip" outside CN=Users, with alice in it; removed afterwards."""
    ou = f"OU=zb-elsewhere,{samba_ad['AD_BASE_DN']}"
    group = f"CN=voip,{ou}"
    with administrator(samba_ad) as admin:
        admin.delete(group)
        add_fresh(admin, ou, ["top", "organizationalUnit"], {})
        add_fresh(admin, group, ["top", "group"], {"sAMAccountName": "zb-voip-elsewhere",
                                                    "member": [ALICE.dn]})
        try:
            yield group
        finally:
            admin.delete(group)
            admin.delete(ou)


@pytest.mark.parametrize("membership", ["memberOf", "in_chain"])
async def test_bare_group_name_elsewhere_does_not_count(samba_ad: dict[str, str], client: str,
                                                        voip_elsewhere: str,
                                                        membership: str) -> None:
    users = samba_ad["AD_USERS_DN"]
    policy = {"membership": membership, "required": ["voip"], "base": users}
    async with running(ad_table(samba_ad, client, groups=policy)) as auth:
        with pytest.raises(NotPermitted, match="required groups"):
            await login(auth, "alice", ALICE.password)
    # the same group under the base (here: the domain) does count, and so does its DN
    # wherever membership finds it (memberOf lists groups anywhere; searches look under base)
    cases = [(["voip"], samba_ad["AD_BASE_DN"])]
    if membership == "memberOf":
        cases.append(([voip_elsewhere], users))
    for required, base in cases:
        policy = {"membership": membership, "required": required, "base": base}
        async with running(ad_table(samba_ad, client, groups=policy)) as auth:
            identity = await login(auth, "alice", ALICE.password)
        assert identity is not None and voip_elsewhere in identity.groups


@pytest.fixture
def locked_out(samba_ad: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A user under a password policy that locks it after 2 wrong passwords (a PSO)."""
    base = samba_ad["AD_BASE_DN"]
    user = f"CN=zb-locky,{samba_ad['AD_USERS_DN']}"
    pso = f"CN=zb-lockout,CN=Password Settings Container,CN=System,{base}"
    password = "Locky-Passw0rd"
    ten_minutes = -10 * 60 * 10_000_000  # AD intervals: negative, in 100 ns
    with administrator(samba_ad) as admin:
        add_fresh(admin, user, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": "zb-locky", "userAccountControl": 512,
            "userPrincipalName": f"zb-locky@{samba_ad['AD_UPN_SUFFIX']}",
            "unicodePwd": f'"{password}"'.encode("utf-16-le")})
        add_fresh(admin, pso, ["msDS-PasswordSettings"], {
            "msDS-PasswordSettingsPrecedence": 1, "msDS-PasswordReversibleEncryptionEnabled":
            False, "msDS-PasswordHistoryLength": 0, "msDS-PasswordComplexityEnabled": False,
            "msDS-MinimumPasswordLength": 0, "msDS-MinimumPasswordAge": 0,
            "msDS-MaximumPasswordAge": -(2**63) + 1, "msDS-LockoutThreshold": 2,
            "msDS-LockoutObservationWindow": ten_minutes, "msDS-LockoutDuration": ten_minutes,
            "msDS-PSOAppliesTo": user})
        try:
            yield "zb-locky", password
        finally:
            admin.delete(user)
            admin.delete(pso)


@pytest.mark.parametrize("mode", ["search", "upn"])
async def test_locked_out_account_is_invalid_credentials(samba_ad: dict[str, str], client: str,
                                                         locked_out: tuple[str, str],
                                                         mode: str) -> None:
    """775 comes back for ANY password: a 403 would confirm the account to a guesser."""
    sam, password = locked_out
    extra = {"user_upn": "{username}@" + samba_ad["AD_UPN_SUFFIX"]} if mode == "upn" else {}
    async with running(ad_table(samba_ad, client, **extra)) as auth:
        assert await login(auth, sam, password) is not None
        for _ in range(2):
            assert await login(auth, sam, "Wrong-Passw0rd") is None
        bind = await auth.client.bind(f"{sam}@{samba_ad['AD_UPN_SUFFIX']}", password)
        assert bind.code == 49 and "data 775" in bind.message  # locked now
        assert await login(auth, sam, password) is None  # the right password: still a 401
        assert await login(auth, sam, "Wrong-Passw0rd") is None


@pytest.fixture
def without_upn(samba_ad: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A user without a userPrincipalName value: it binds by its implicit UPN only."""
    user = f"CN=zb-noupn,{samba_ad['AD_USERS_DN']}"
    password = "NoUpn-Passw0rd"
    with administrator(samba_ad) as admin:
        add_fresh(admin, user, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": "zb-noupn", "userAccountControl": 512,
            "unicodePwd": f'"{password}"'.encode("utf-16-le")})
        try:
            yield "zb-noupn", password
        finally:
            admin.delete(user)


async def test_upn_login_whose_entry_cannot_be_found_has_no_dn(
        samba_ad: dict[str, str], client: str, without_upn: tuple[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Still a login (as before), without {identity.dn}; the log says why."""
    sam, password = without_upn
    upn = "{username}@" + samba_ad["AD_UPN_SUFFIX"]
    pure = ad_table(samba_ad, client, user_upn=upn, user_search=None, attributes=None,
                    username_attribute=None)
    async with running(pure) as auth:
        assert await login(auth, sam, password) == Identity(sam)  # its implicit UPN
        assert "0 entries have that userPrincipalName" in caplog.text
    finding_nobody = {"base": samba_ad["AD_BASE_DN"],
                      "filter": "(&(objectClass=user)(sAMAccountName=nobody-{username}))"}
    cfg = ad_table(samba_ad, client, user_upn=upn, user_search=finding_nobody,
                   attributes=None, username_attribute=None)
    async with running(cfg) as auth:
        assert await login(auth, "alice", ALICE.password) == Identity("alice")
    assert "0 entries were found reading" in caplog.text

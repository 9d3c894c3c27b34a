"""The LDAP authenticator against a real Samba AD DC: the Active Directory specifics.

sAMAccountName search-then-bind and UPN binds over LDAPS and StartTLS, nested
groups through the in-chain matching rule (one search), the bind sub-codes
(533 disabled, 701 expired, 773 must change password) as NotPermitted, the
search continuation references AD puts in subtree results, binary attributes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.auth import build_authenticator
from bridge.auth.ldap import LdapAuthenticator
from bridge.config import Section
from bridge.errors import NotPermitted
from bridge.ldap.client import Scope
from bridge.ldap.escape import escape_filter_value, fill
from bridge.models import Credentials, Identity
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


async def test_upn_bind(samba_ad: dict[str, str], client: str, transport: str) -> None:
    upn = "{username}@" + samba_ad["AD_UPN_SUFFIX"]
    pure = ad_table(samba_ad, client, transport, user_upn=upn, user_search=None,
                    attributes=None, username_attribute=None)
    async with running(pure) as auth:   # a bind and nothing else
        assert await login(auth, "alice", ALICE.password) == Identity("alice")
        assert await login(auth, "alice", "Wrong-Passw0rd") is None
        assert await login(auth, "nobody", "Wrong-Passw0rd") is None
        for typed in ("alice@example.test", "EXAMPLE\\alice", "alice,CN=Users", "*", " alice"):
            assert await login(auth, typed, ALICE.password) is None
    async with running(ad_table(samba_ad, client, transport, user_upn=upn)) as auth:
        identity = await login(auth, "alice", ALICE.password)  # bind by UPN, read by search
        assert identity is not None and identity.attributes["dn"] == ALICE.dn


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
    ({"membership": "member", "required": ["groupOuter"]}, True,
     {"groupInner", "groupOuter"}),                                         # client-side
    ({"membership": "in_chain", "required": ["Domain Admins"]}, False, set()),
])
async def test_nested_groups(samba_ad: dict[str, str], client: str, groups: dict[str, Any],
                             allowed: bool, found: set[str]) -> None:
    policy = {"base": samba_ad["AD_BASE_DN"], **groups}
    if groups["membership"] == "memberOf":
        policy.pop("base")
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
            flt = fill(BY_SAM, escape_filter_value, username=hostile)
            assert await auth.client.search(samba_ad["AD_BASE_DN"], Scope.SUBTREE, flt,
                                            ["cn"]) == []
            assert await login(auth, hostile, ALICE.password) is None

"""The Samba AD fixture itself: LDAPS with the generated CA, AD bind codes, nested groups."""

from __future__ import annotations

import ssl

import pytest
from ldap3 import SUBTREE, Connection, Server, Tls
from ldap3.utils.conv import escape_filter_chars

from tests.ad.samba import AD_GROUPS, AD_USERS

pytestmark = pytest.mark.slow
IN_CHAIN = "1.2.840.113556.1.4.1941"


def ldaps(env: dict[str, str]) -> Server:
    # valid_names: on Python >= 3.12 ldap3 matches DNS SANs only, not the IP we connect to
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=env["AD_CA_FILE"],
              version=ssl.PROTOCOL_TLS_CLIENT, valid_names=[env["AD_TLS_NAME"]])
    return Server(env["AD_HOST"], port=636, use_ssl=True, tls=tls, connect_timeout=5)


def test_alice_binds_by_upn_over_ldaps(samba_ad: dict[str, str]) -> None:
    alice = AD_USERS["alice"]
    assert alice.upn == "alice@example.test"
    assert samba_ad["AD_LDAPS_URL"] == f"ldaps://{samba_ad['AD_HOST']}:636"
    conn = Connection(ldaps(samba_ad), alice.upn, alice.password, receive_timeout=10)
    assert conn.bind(), conn.result
    conn.unbind()


@pytest.mark.parametrize(("sam", "password", "data"), [
    ("alice", "wrong", "52e"),
    ("nobody", "x", "52e"),
    ("bob", AD_USERS["bob"].password, "533"),
])
def test_refused_binds_are_49_with_data(samba_ad: dict[str, str], sam: str, password: str,
                                        data: str) -> None:
    conn = Connection(ldaps(samba_ad), f"{sam}@{samba_ad['AD_UPN_SUFFIX']}", password)
    assert not conn.bind()
    assert conn.result["result"] == 49
    assert f"data {data}," in conn.result["message"]


def test_search_then_bind_and_nested_groups(samba_ad: dict[str, str]) -> None:
    base = samba_ad["AD_BASE_DN"]
    svc = Connection(ldaps(samba_ad), samba_ad["AD_SVC_UPN"], samba_ad["AD_SVC_PASSWORD"],
                     auto_bind=True, receive_timeout=10)
    special = AD_USERS["zoë.o'brien(x)"]
    svc.search(base, f"(sAMAccountName={escape_filter_chars(special.sam)})", SUBTREE)
    assert [e.entry_dn for e in svc.entries] == [special.dn]
    assert Connection(ldaps(samba_ad), special.dn, special.password).bind()
    svc.search(base, f"(&(sAMAccountName=alice)(memberOf:{IN_CHAIN}:={AD_GROUPS['groupOuter']}))",
               SUBTREE)
    assert [e.entry_dn for e in svc.entries] == [AD_USERS["alice"].dn]
    svc.unbind()

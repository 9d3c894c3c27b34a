"""The OpenLDAP fixture itself: TLS, seeded data, ACLs, restart on the same ports."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from ldap3 import BASE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPSocketOpenError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from tests.ldap.slapd import (
    GROUPS,
    GROUPS_DN,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    Slapd,
    bulk_user_dn,
)

pytestmark = pytest.mark.slow
ALICE = USERS["alice"]


def plain(s: Slapd) -> Server:
    return Server(s.host, port=s.port, tls=s.ldap3_tls(), connect_timeout=3)


def ldaps(s: Slapd) -> Server:
    return Server(s.host, port=s.tls_port, use_ssl=True, tls=s.ldap3_tls(), connect_timeout=3)


def test_alice_binds_with_starttls(slapd: Slapd) -> None:
    assert slapd.uri == f"ldap://127.0.0.1:{slapd.port}"
    conn = Connection(plain(slapd), ALICE.dn, ALICE.password, receive_timeout=5)
    conn.open()
    assert conn.start_tls()
    assert conn.bind(), conn.result
    assert conn.tls_started
    assert conn.extend.standard.who_am_i() == f"dn:{ALICE.dn}"
    conn.unbind()


def test_alice_binds_over_ldaps(slapd: Slapd) -> None:
    assert slapd.ldaps_uri == f"ldaps://127.0.0.1:{slapd.tls_port}"
    conn = Connection(ldaps(slapd), ALICE.dn, ALICE.password, receive_timeout=5)
    assert conn.bind(), conn.result
    conn.unbind()


def test_unknown_ca_is_refused(slapd: Slapd, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(other))
    conn = Connection(Server(slapd.host, port=slapd.port, tls=tls, connect_timeout=3))
    conn.open()
    with pytest.raises((LDAPStartTLSError, LDAPSocketOpenError)):
        conn.start_tls()


def test_wrong_password_is_49(slapd: Slapd) -> None:
    conn = Connection(plain(slapd), ALICE.dn, "not-her-password")
    assert not conn.bind()
    assert conn.result["result"] == 49


@pytest.mark.parametrize("uid", [u for u, seed in USERS.items() if seed.password])
def test_every_seeded_user_binds(slapd: Slapd, uid: str) -> None:
    user = USERS[uid]
    conn = Connection(plain(slapd), user.dn, user.password)
    assert conn.bind(), (uid, conn.result)
    conn.unbind()


def test_nopass_cannot_bind(slapd: Slapd) -> None:
    conn = Connection(plain(slapd), USERS["nopass"].dn, "anything")
    assert not conn.bind()
    assert conn.result["result"] == 49


def test_service_account_searches_people_and_groups(slapd: Slapd) -> None:
    conn = Connection(plain(slapd), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    for user in USERS.values():  # the DNs in USERS are exactly what the server returns
        conn.search(PEOPLE_DN, f"(uid={escape_filter_chars(user.uid)})",
                    attributes=["telephoneNumber", "displayName", "mail"])
        assert [e.entry_dn for e in conn.entries] == [user.dn]
        assert conn.entries[0].telephoneNumber.values == list(user.phones)
    conn.search(PEOPLE_DN, "(mail=twins@example.org)")
    assert len(conn.entries) == 2
    conn.search(GROUPS_DN, f"(|(member={ALICE.dn})(uniqueMember={ALICE.dn})(memberUid=alice))",
                attributes=["cn"])
    assert sorted(e.entry_dn for e in conn.entries) == sorted(
        GROUPS[g].dn for g in ("voip", "phones-unique", "sipusers"))
    # carol is in voip only through staff (nesting is resolved by the client)
    conn.search(GROUPS_DN, f"(member={USERS['carol'].dn})", attributes=["cn"])
    assert [e.entry_dn for e in conn.entries] == [GROUPS["staff"].dn]
    conn.search(GROUPS_DN, f"(member={GROUPS['staff'].dn})", attributes=["cn"])
    assert [e.entry_dn for e in conn.entries] == [GROUPS["voip"].dn]
    # password hashes stay hidden from the service account; rebind as a user works
    conn.search(ALICE.dn, "(objectClass=*)", BASE, attributes=["userPassword"])
    assert conn.entries[0].userPassword.values == []
    assert conn.rebind(ALICE.dn, ALICE.password)
    conn.unbind()


def test_restart_and_crash_keep_ports_and_data(private_slapd: Slapd) -> None:
    s = private_slapd
    uri, ldaps_uri = s.uri, s.ldaps_uri
    s.stop()
    with pytest.raises(LDAPSocketOpenError):
        Connection(plain(s), ALICE.dn, ALICE.password).bind()
    s.start()
    assert (s.uri, s.ldaps_uri) == (uri, ldaps_uri)
    assert Connection(plain(s), ALICE.dn, ALICE.password).bind()
    s.kill()
    assert not s.running
    s.start()
    assert Connection(ldaps(s), ALICE.dn, ALICE.password).bind()


def test_bulk_users(tmp_path: Path, slapd: Slapd) -> None:
    with Slapd(tmp_path / "bulk", bulk_users=3) as s:
        assert Connection(plain(s), bulk_user_dn(3), "pass3").bind()
        assert Connection(plain(s), ALICE.dn, ALICE.password).bind()

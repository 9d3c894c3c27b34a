"""Proof on the wire: what the gateway serves registers on a real SIP registrar.

Each case asks the running gateway (`zoiper-bridge serve`) for a document, parses it
with the dialect's schema, turns its account into a user agent's configuration
(tests/sip/agent.py: baresip; tests/sip/sipp.py: SIPp) and lets the agent REGISTER with
Kamailio. A registration counts
when both sides say so: baresip's own "200 OK" line, and a row in Kamailio's location
table for the served username and domain on the served transport's socket (read while
the binding exists; it is gone once the agent stops and unregisters). The wrong-mapping
cases must fail, and the same document with the one value corrected must then register,
so a failure is the mapping's and not the environment's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.zoiper.dialects import ANDROID, DESKTOP, IOS, Dialect
from bridge.zoiper.document import parse_config
from tests.sip import agent, sipp
from tests.sip.conftest import (
    ALICE_AOR,
    ALICE_AUTH,
    ALICE_LOGIN,
    ALICE_PASSWORD,
    DESKTOP_USER,
    DOMAIN,
    IOS_USER,
    TCP_USER,
    TLS_USER,
    UDP_USER,
    WRONG_TRANSPORT_USER,
    Certificates,
    SipGateway,
    Subscriber,
    verify_tls,
)
from tests.sip.kamailio import Kamailio, Registration

pytestmark = pytest.mark.slow


def provision(gw: SipGateway, path: str, username: str, password: str,
              dialect: Dialect = ANDROID, basic: bool = False) -> dict[str, Any]:
    """The document the phone would get, parsed and validated with its dialect's schema."""
    url = gw.gateway.base_url + path
    if basic:
        response = httpx.get(url, params={"version": "1.14"}, auth=(username, password))
    else:
        response = httpx.get(url, params={"user": username, "password": password,
                                          "version": "1.14"})
    assert response.status_code == 200, response.text
    return parse_config(response.content, dialect)


def only_account(tree: dict[str, Any]) -> dict[str, Any]:
    accounts = tree["accounts"]
    assert len(accounts) == 1
    return dict(accounts[0])


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One registration attempt, as both sides saw it."""

    agent: agent.Outcome
    kamailio: list[str]  # the registrar script's log lines written meanwhile


def register(config: agent.AgentConfig, kamailio: Kamailio, certs: Certificates,
             folder: Path) -> Attempt:
    mark = kamailio.log_size()
    outcome = agent.register(config, folder / "baresip", certs.ca,
                             while_registered=lambda: kamailio.registrations(config.user))
    return Attempt(outcome, kamailio.log_lines(mark))


def assert_registered(attempt: Attempt, kamailio: Kamailio, config: agent.AgentConfig
                      ) -> Registration:
    """Both sides agree: the agent's 200 OK; one location row for the served user and
    domain on the served transport's socket; the registrar's log line."""
    outcome = attempt.agent
    assert outcome.registered, f"{outcome.line}\n--- baresip:\n{outcome.log}"
    assert outcome.exit_code == 0, outcome.log
    row = assert_bound(outcome.seen, kamailio, config, "baresip")
    assert registered_line(config) in attempt.kamailio
    # the agent unregistered when it stopped
    assert agent.wait_until(lambda: not kamailio.registrations(config.user))
    return row


def assert_bound(rows: list[Registration] | None, kamailio: Kamailio,
                 config: agent.AgentConfig, user_agent: str) -> Registration:
    """One location row: the served user and domain, on the served transport's socket."""
    assert rows is not None and len(rows) == 1, rows
    row = rows[0]
    assert (row.username, row.domain) == (config.user, DOMAIN)
    assert row.socket == f"{config.transport}:127.0.0.1:{kamailio.port(config.transport)}"
    assert row.user_agent.startswith(user_agent), row
    return row


def registered_line(config: agent.AgentConfig) -> str:
    return (f"registered sip:{config.user}@{DOMAIN} over {config.transport} "
            f"(auth user '{config.auth_user}')")


def assert_served(account: dict[str, Any], sub: Subscriber, transport: str,
                  kamailio: Kamailio) -> None:
    """The document carries the subscriber row's values, unchanged."""
    assert account["username"] == sub.username
    assert account["password"] == sub.password
    assert account["SIP_domain"] == DOMAIN
    assert account["SIP_transport_type"] == transport
    assert account["SIP_outbound_proxy"] == f"127.0.0.1:{kamailio.port(transport)}"


@pytest.mark.parametrize(("transport", "path", "sub"), [
    ("udp", "/provision", UDP_USER),
    ("tcp", "/tcp", TCP_USER),
    ("tls", "/tls", TLS_USER),
])
def test_provisioned_user_registers(transport: str, path: str, sub: Subscriber,
                                    sip_gateway: SipGateway, kamailio: Kamailio,
                                    sip_certs: Certificates, tmp_path: Path) -> None:
    account = only_account(provision(sip_gateway, path, sub.username, sub.password))
    assert_served(account, sub, transport, kamailio)
    config = agent.translate(account)
    assert_registered(register(config, kamailio, sip_certs, tmp_path), kamailio, config)


def test_sip_credentials_differ_from_the_login(sip_gateway: SipGateway, kamailio: Kamailio,
                                               sip_certs: Certificates, tmp_path: Path) -> None:
    """Login alice / her own password; SIP: AOR 1001, digest user a1001, a1001's password."""
    account = only_account(provision(sip_gateway, "/staff", ALICE_LOGIN, ALICE_PASSWORD))
    assert account["username"] == ALICE_AOR
    assert account["SIP_auth_username"] == ALICE_AUTH.username
    assert account["password"] == ALICE_AUTH.password != ALICE_PASSWORD
    config = agent.translate(account)
    assert (config.user, config.auth_user, config.transport) == (ALICE_AOR, ALICE_AUTH.username,
                                                                 "tls")
    assert_registered(register(config, kamailio, sip_certs, tmp_path), kamailio, config)
    # Kamailio holds a1001 to the AORs the uri table gives it
    other = dataclasses.replace(config, user=UDP_USER.username)
    attempt = register(other, kamailio, sip_certs, tmp_path)
    assert not attempt.agent.registered
    assert "403 Forbidden auth ID" in attempt.agent.line
    assert f"auth user '{ALICE_AUTH.username}' may not register sip:{UDP_USER.username}@" \
        f"{DOMAIN}" in attempt.kamailio


def test_wrong_auth_username_fails(sip_gateway: SipGateway, kamailio: Kamailio,
                                   sip_certs: Certificates, tmp_path: Path) -> None:
    """A mapping without SIP_auth_username: the phone authenticates as 1001, which is not
    a subscriber; Kamailio keeps challenging and nothing is bound."""
    account = only_account(provision(sip_gateway, "/wrong-auth", ALICE_LOGIN, ALICE_PASSWORD))
    assert "SIP_auth_username" not in account
    config = agent.translate(account)
    attempt = register(config, kamailio, sip_certs, tmp_path)
    assert not attempt.agent.registered, attempt.agent.log
    assert "401 Unauthorized" in attempt.agent.line
    assert f"challenge sip:{ALICE_AOR}@{DOMAIN} over udp (auth user '{ALICE_AOR}')" \
        in attempt.kamailio
    assert not [line for line in attempt.kamailio if line.startswith("registered")]
    assert kamailio.registrations(ALICE_AOR) == []
    # the one value corrected, the same document registers
    fixed = dataclasses.replace(config, auth_user=ALICE_AUTH.username)
    assert_registered(register(fixed, kamailio, sip_certs, tmp_path), kamailio, fixed)


def test_wrong_transport_fails(sip_gateway: SipGateway, kamailio: Kamailio,
                               sip_certs: Certificates, tmp_path: Path) -> None:
    """A mapping saying TCP where the registrar's address is its UDP port: refused, and
    Kamailio never sees the request."""
    sub = WRONG_TRANSPORT_USER
    account = only_account(provision(sip_gateway, "/wrong-transport", sub.username,
                                     sub.password))
    config = agent.translate(account)
    assert (config.transport, config.outbound) == ("tcp", f"127.0.0.1:{kamailio.udp_port}")
    attempt = register(config, kamailio, sip_certs, tmp_path)
    assert not attempt.agent.registered, attempt.agent.log
    assert "Connection refused" in attempt.agent.line
    assert attempt.kamailio == []
    assert kamailio.registrations(sub.username) == []
    fixed = dataclasses.replace(config, transport="udp")
    assert_registered(register(fixed, kamailio, sip_certs, tmp_path), kamailio, fixed)


def test_ios_document_registers(sip_gateway: SipGateway, kamailio: Kamailio,
                                sip_certs: Certificates, tmp_path: Path) -> None:
    sub = IOS_USER
    account = only_account(provision(sip_gateway, "/ios", sub.username, sub.password, IOS))
    assert_served(account, sub, "tls", kamailio)
    assert account["SIP_use_auth_username"] == "true"
    config = agent.translate(account, auth_flag=True)
    assert_registered(register(config, kamailio, sip_certs, tmp_path), kamailio, config)


def test_desktop_document_registers(sip_gateway: SipGateway, kamailio: Kamailio,
                                    sip_certs: Certificates, tmp_path: Path) -> None:
    """Zoiper5 Desktop over HTTP Basic; its sip_options fix the local SIP port, which shows
    in the contact Kamailio stored."""
    sub = DESKTOP_USER
    tree = provision(sip_gateway, "/desktop", sub.username, sub.password, DESKTOP, basic=True)
    account = only_account(tree)
    assert_served(account, sub, "tcp", kamailio)
    config = agent.translate(account, tree, auth_flag=True)
    assert config.local_port == sip_gateway.desktop_port
    row = assert_registered(register(config, kamailio, sip_certs, tmp_path), kamailio, config)
    assert f"@127.0.0.1:{sip_gateway.desktop_port}" in row.contact


def test_registrar_tls_certificate(kamailio: Kamailio, sip_certs: Certificates) -> None:
    """baresip 1.0.0 does not check the server's certificate: check that Kamailio's TLS
    port presents the one made for this run, valid for the SIP domain."""
    assert verify_tls(kamailio, sip_certs).startswith("TLSv1.")


def test_translator_follows_the_flags() -> None:
    """iOS/Desktop ignore SIP_auth_username and SIP_outbound_proxy unless their flags are
    set; Android uses a non-empty SIP_auth_username as it is."""
    account = {"username": "u", "password": "p", "SIP_domain": "example.test:5070",
               "SIP_auth_username": "au", "SIP_outbound_proxy": "127.0.0.1:5080"}
    android = agent.translate(account)
    assert (android.auth_user, android.outbound, android.transport) == ("au", None, "udp")
    assert agent.translate(account, auth_flag=True).auth_user == "u"
    flagged = agent.translate({**account, "SIP_use_auth_username": "true",
                               "SIP_use_outbound_proxy": "true"}, auth_flag=True)
    assert (flagged.auth_user, flagged.outbound) == ("au", "127.0.0.1:5080")
    assert agent.accounts_line(flagged).startswith("<sip:u@example.test:5070;transport=udp>;")
    with pytest.raises(agent.NotRegistrable):
        agent.translate({**account, "SIP_transport_type": "dns-srv"})


@pytest.mark.parametrize(("path", "sub"), [("/provision", UDP_USER), ("/tcp", TCP_USER)])
def test_sipp_registers(path: str, sub: Subscriber, sip_gateway: SipGateway,
                        kamailio: Kamailio, tmp_path: Path) -> None:
    """A second SIP stack, SIPp (UDP and TCP: Debian's build has no TLS), with the same
    translation: its exit status 0, the binding in the location table while the scenario
    pauses, gone after its un-REGISTER."""
    config = agent.translate(only_account(provision(sip_gateway, path, sub.username,
                                                    sub.password)))
    mark = kamailio.log_size()
    outcome = sipp.register(config, tmp_path / "sipp",
                            lambda: kamailio.registrations(config.user))
    assert outcome.exit_code == 0, outcome.errors + outcome.messages
    assert_bound(outcome.seen, kamailio, config, "sipp")
    assert registered_line(config) in kamailio.log_lines(mark)
    assert kamailio.registrations(config.user) == []


@pytest.mark.parametrize(("path", "login", "password"), [
    ("/wrong-auth", ALICE_LOGIN, ALICE_PASSWORD),
    ("/wrong-transport", WRONG_TRANSPORT_USER.username, WRONG_TRANSPORT_USER.password),
])
def test_sipp_wrong_mapping_fails(path: str, login: str, password: str,
                                  sip_gateway: SipGateway, kamailio: Kamailio,
                                  tmp_path: Path) -> None:
    """Wrong auth username: the digest REGISTER is challenged again (exit status 1).
    Wrong transport: the TCP connection is refused (a fatal error for SIPp)."""
    config = agent.translate(only_account(provision(sip_gateway, path, login, password)))
    mark = kamailio.log_size()
    outcome = sipp.register(config, tmp_path / "sipp",
                            lambda: kamailio.registrations(config.user))
    assert outcome.exit_code != 0, outcome.messages
    assert outcome.seen == []
    assert "SIP/2.0 200" not in outcome.messages
    if path == "/wrong-auth":
        assert outcome.exit_code == 1
        assert outcome.messages.count("SIP/2.0 401 Unauthorized") >= 2, outcome.messages
    else:
        assert "Connection refused" in outcome.errors, outcome.errors
    assert not [line for line in kamailio.log_lines(mark) if line.startswith("registered")]

# ruff: noqa: S608  (the SQL source's query in the gateway's TOML; its value is bound)
"""The SIP proof's environment, once per session, all on loopback.

``sip_db``     a scratch PostgreSQL database with Kamailio's tables (dropped afterwards)
``kamailio``   Kamailio on UDP/TCP/TLS, registrar with digest authentication against it
``sip_gateway``  `zoiper-bridge serve` reading the same database (SQL source, Kamailio
               preset), one profile per case (see gateway_config)

Subscribers are inserted here, before the gateway starts, and are the only copy of
each user's SIP credentials: the gateway serves them, Kamailio checks them.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from bridge.passwords import hash_password
from tests.conftest import unavailable
from tests.gateway import Gateway
from tests.sip import agent, sipp
from tests.sip import kamailio as kamailio_mod
from tests.sip.kamailio import Kamailio
from tests.sql import servers
from tests.sql.servers import Scratch

DOMAIN = "zb.test"


@dataclass(frozen=True)
class Subscriber:
    username: str
    password: str


# One subscriber per case, so each test reads only its own location rows.
UDP_USER = Subscriber("2001", "udp-2001.secret")
TCP_USER = Subscriber("2002", "tcp 2002 secret")
TLS_USER = Subscriber("2003", "tls,2003;secret")
IOS_USER = Subscriber("2004", "ios-2004-secret")
DESKTOP_USER = Subscriber("2005", "desktop/2005")
WRONG_TRANSPORT_USER = Subscriber("2006", "wt-2006-secret")
# alice logs in to the gateway with her own password (users file); her SIP account is
# AOR 1001, digest username a1001 (a subscriber row), allowed to register 1001 by a row of
# Kamailio's uri table.
ALICE_LOGIN, ALICE_PASSWORD = "alice", "x-wonderland"
ALICE_AUTH = Subscriber("a1001", "a1001's own secret")
ALICE_AOR = "1001"
SUBSCRIBERS = (UDP_USER, TCP_USER, TLS_USER, IOS_USER, DESKTOP_USER, WRONG_TRANSPORT_USER,
               ALICE_AUTH)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def sip_folder() -> Iterator[Path]:
    # not pytest's tmp_path: Kamailio and baresip get short, world-readable paths
    folder = Path(tempfile.mkdtemp(prefix="zb-sip-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def sip_certs(sip_folder: Path) -> Certificates:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", DOMAIN)
    certs = Certificates(sip_folder / "ca.pem", sip_folder / "cert.pem", sip_folder / "key.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    issued.cert_chain_pems[0].write_to_path(str(certs.cert))
    issued.private_key_pem.write_to_path(str(certs.key))
    return certs


@pytest.fixture(scope="session")
def sip_db() -> Iterator[Scratch]:
    reason = servers.pg_missing()
    if reason:
        unavailable(reason)
    db = servers.scratch("postgresql")
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="session")
def kamailio(sip_folder: Path, sip_db: Scratch, sip_certs: Certificates) -> Iterator[Kamailio]:
    reason = kamailio_mod.missing() or agent.missing() or sipp.missing()
    if reason:
        unavailable(f"SIP fixture unavailable: {reason}")
    server = Kamailio(sip_folder / "kamailio", sip_db, sip_certs.cert, sip_certs.key)
    server.folder.mkdir()
    server.start()
    try:
        for sub in SUBSCRIBERS:
            server.add_subscriber(sub.username, DOMAIN, sub.password)
        server.allow_aor(ALICE_AUTH.username, DOMAIN, ALICE_AOR)
        yield server
    finally:
        status = server.stop()
    if status != 0:
        raise RuntimeError(f"kamailio did not stop cleanly (exit status {status}):\n"
                           + server.output()[-3000:])


def _proxy(server: Kamailio, transport: str) -> str:
    return f'"127.0.0.1:{server.port(transport)}"'


def gateway_config(folder: Path, server: Kamailio, desktop_port: int) -> Path:
    """One gateway, one profile per case. Every SIP value but the transport and the proxy's
    address comes from the subscriber rows; the wrong-* profiles are mistakes an operator
    could make, and the phone would fail to register with them."""
    (folder / "users.toml").write_text(f"""
[users.{ALICE_LOGIN}]
password = "{hash_password(ALICE_PASSWORD, 10)}"
sip_login = "{ALICE_AUTH.username}"
""")
    dsn = f"postgresql://{server.db.name}@127.0.0.1:5432/{server.db.name}"
    kamailio_sql = f'type = "sql"\npreset = "kamailio"\nurl = "{dsn}"'
    # alice's account: the AOR from the uri table, credentials from the subscriber row
    staff_source = f'''type = "sql"
url = "{dsn}"
query = """
SELECT u.uri_user AS sip_user, s.password AS sip_password, s.username AS auth_user,
       s.domain AS domain
FROM subscriber s JOIN uri u ON u.username = s.username AND u.domain = s.domain
WHERE s.username = {{identity.sip_login}}"""'''
    account = """name = "{account.sip_user}"
username = "{account.sip_user}"
password = "{account.sip_password}"
SIP_domain = "{account.domain}"
SIP_use_outbound_proxy = true"""
    config = folder / "gateway.toml"
    config.write_text(f"""
[limits]
username_failures = 0
address_failures = 0
lockout_window = 0

[auth]
{kamailio_sql}

[source]
{kamailio_sql}

[mapping.account]
{account}
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "udp"
SIP_outbound_proxy = {_proxy(server, "udp")}

[profiles.tcp]
path = "/tcp"
[profiles.tcp.mapping.account]
{account}
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tcp"
SIP_outbound_proxy = {_proxy(server, "tcp")}

[profiles.tls]
path = "/tls"
[profiles.tls.mapping.account]
{account}
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tls"
SIP_outbound_proxy = {_proxy(server, "tls")}

[profiles.ios]
path = "/ios"
request = {{ dialect = "ios" }}
[profiles.ios.mapping.account]
{account}
SIP_use_auth_username = true
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tls"
SIP_outbound_proxy = {_proxy(server, "tls")}

[profiles.desktop]
path = "/desktop"
[profiles.desktop.request]
dialect = "desktop"
credentials = "basic"
[profiles.desktop.mapping.account]
{account}
SIP_use_auth_username = true
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tcp"
SIP_outbound_proxy = {_proxy(server, "tcp")}
[profiles.desktop.mapping.sip_options]
port = {desktop_port}
use_random_port = false

[profiles.staff]
path = "/staff"
[profiles.staff.auth]
type = "file"
path = "users.toml"
[profiles.staff.source]
{staff_source}
[profiles.staff.mapping.account]
{account}
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tls"
SIP_outbound_proxy = {_proxy(server, "tls")}

# mistake: the auth username left out, so the digest username is the SIP user
[profiles.wrong-auth]
path = "/wrong-auth"
[profiles.wrong-auth.auth]
type = "file"
path = "users.toml"
[profiles.wrong-auth.source]
{staff_source}
[profiles.wrong-auth.mapping.account]
{account}
SIP_transport_type = "udp"
SIP_outbound_proxy = {_proxy(server, "udp")}

# mistake: TCP to the registrar's UDP port
[profiles.wrong-transport]
path = "/wrong-transport"
[profiles.wrong-transport.mapping.account]
{account}
SIP_auth_username = "{{account.auth_user}}"
SIP_transport_type = "tcp"
SIP_outbound_proxy = {_proxy(server, "udp")}
""")
    return config


@dataclass(frozen=True)
class SipGateway:
    gateway: Gateway
    desktop_port: int


@pytest.fixture(scope="session")
def sip_gateway(kamailio: Kamailio, sip_folder: Path) -> Iterator[SipGateway]:
    folder = sip_folder / "gateway"
    folder.mkdir()
    desktop_port = kamailio_mod.free_both()
    config = gateway_config(folder, kamailio, desktop_port)
    with Gateway(config, folder) as gateway:
        yield SipGateway(gateway, desktop_port)
    logs = {"gateway": gateway.output(), "kamailio": kamailio.output()}
    for name, text in logs.items():
        for secret in (ALICE_PASSWORD, *(sub.password for sub in SUBSCRIBERS)):
            if secret in text:
                raise AssertionError(f"a password appears in the {name} log")


def verify_tls(server: Kamailio, certs: Certificates) -> str:
    """Kamailio's TLS port, checked with the run's CA (baresip 1.0.0 does not check it):
    the TLS version it speaks; ssl.SSLError when the certificate is not the run's."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    with socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        return str(tls.version())

"""Each preset against its system's schema (tests/sql/schemas.py), on the databases it runs on."""

from __future__ import annotations

import pytest

from bridge.models import Credentials
from tests.sql.helpers import auth, source
from tests.sql.schemas import DOMAIN, OTHER_DOMAIN, SIMILAR, USERS
from tests.sql.servers import Scratch

# (preset, server): FreePBX is MariaDB only, FusionPBX PostgreSQL only, as the systems are.
COMBOS = [("asterisk-pjsip", "pg"), ("asterisk-pjsip", "my"), ("asterisk-sippeers", "pg"),
          ("asterisk-sippeers", "my"), ("freepbx", "my"), ("fusionpbx", "pg"),
          ("kamailio", "pg"), ("kamailio", "my")]
ALL = [*USERS, SIMILAR]


def login_name(preset: str, name: str) -> str:
    return f"{name}@{DOMAIN}" if preset == "fusionpbx" else name


def expected(preset: str, i: int) -> dict[str, object]:
    """The account fields a preset returns for sample user i (see schemas.py for the rows)."""
    name, password, display = ALL[i]
    fields: dict[str, object] = {"sip_user": name, "auth_user": name}
    if preset == "asterisk-pjsip":
        fields |= {"display_name": display, "endpoint": f"ep{i}", "transport": "transport-tls",
                   "dtmf_mode": "rfc4733", "media_encryption": "sdes", "max_contacts": i + 1}
        if i % 2 == 0:  # odd users keep only md5_cred
            fields["sip_password"] = password
        if i % 3:
            fields["domain"] = DOMAIN
    elif preset == "asterisk-sippeers":
        fields |= {"sip_password": password, "domain": DOMAIN, "display_name": display,
                   "transport": "tls", "dtmf_mode": "rfc2833"}
    elif preset == "freepbx":
        fields |= {"sip_password": password, "display_name": display,
                   "outbound_caller_id": f'"{display}" <100>', "device_description": display}
    elif preset == "fusionpbx":
        fields |= {"sip_password": password, "domain": DOMAIN, "display_name": display,
                   "caller_id_number": str(100 + i)}
    else:
        fields["domain"] = DOMAIN
        if i % 2 == 0:  # odd users keep only ha1
            fields["sip_password"] = password
    return fields


@pytest.mark.parametrize(("preset", "server"), COMBOS)
async def test_every_sample_user_logs_in_and_gets_their_account(request, preset, server):
    db: Scratch = request.getfixturevalue(server)
    authenticator = auth({"url": db.url, "preset": preset})
    accounts = source({"url": db.url, "preset": preset})
    try:
        await accounts.start()
        for i, (name, password, _) in enumerate(ALL):
            credentials = Credentials(login_name(preset, name), password)
            identity = await authenticator.authenticate(credentials)
            assert identity is not None, name
            assert identity.username == login_name(preset, name)
            assert not {"password", "md5_cred", "md5secret", "ha1"} & set(identity.attributes)
            [account] = await accounts.accounts(identity, credentials)
            assert dict(account.fields) == expected(preset, i), name
            for wrong in (password + "x", password.upper(), "", "' OR '1'='1"):
                assert await authenticator.authenticate(
                    Credentials(login_name(preset, name), wrong)) is None
        for stranger in ("nobody", "' OR '1'='1", "%", "\\'; DROP TABLE users; --"):
            assert await authenticator.authenticate(
                Credentials(login_name(preset, stranger), "x' OR '1'='1")) is None
    finally:
        await authenticator.close()
        await accounts.close()


async def test_fusionpbx_domains_are_tenants(pg):
    authenticator = auth({"url": pg.url, "preset": "fusionpbx"})
    try:
        other = await authenticator.authenticate(Credentials(f"alice@{OTHER_DOMAIN}",
                                                             "other-tenant-pw"))
        assert other is not None and other.attributes["display_name"] == "Alice Other"
        # each tenant's alice has her own password
        assert await authenticator.authenticate(
            Credentials(f"alice@{OTHER_DOMAIN}", USERS[0][1])) is None
        assert await authenticator.authenticate(Credentials("alice", USERS[0][1])) is None
        assert await authenticator.authenticate(
            Credentials(f"disabled@{DOMAIN}", "disabled-pw")) is None
    finally:
        await authenticator.close()


@pytest.mark.parametrize("server", ["pg", "my"])
async def test_kamailio_name_in_two_domains_is_ambiguous(request, server):
    db: Scratch = request.getfixturevalue(server)
    authenticator = auth({"url": db.url, "preset": "kamailio"})
    try:
        assert await authenticator.authenticate(Credentials("twin", "twin-pw")) is None
    finally:
        await authenticator.close()


@pytest.mark.parametrize("server", ["pg", "my"])
async def test_a_named_scheme_overrides_the_presets_order(request, server):
    # ha1 only: users that have a plaintext password are checked against md5_cred too
    db: Scratch = request.getfixturevalue(server)
    authenticator = auth({"url": db.url, "preset": "asterisk-pjsip", "password_scheme": "ha1"})
    try:
        for name, password, _ in ALL:
            assert await authenticator.authenticate(Credentials(name, password)) is not None
    finally:
        await authenticator.close()

"""The token service on each real store: SQLite (a file), PostgreSQL (scratch database), Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid

import pytest

from bridge.settings import load
from bridge.tokens.service import TokenError, TokenService
from bridge.tokens.store import Ticket
from tests.tokens.conftest import SECRET, token_config


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def service(request, tmp_path):
    tokens = ""
    if request.param == "postgresql":
        tokens = f'backend = "postgresql"\nurl = "{request.getfixturevalue("pg_url")}"\n' \
                 f'table = "t_{uuid.uuid4().hex[:8]}"'
    elif request.param == "redis":
        tokens = f'backend = "redis"\nurl = "{request.getfixturevalue("redis_url")}"\n' \
                 f'prefix = "test-{uuid.uuid4().hex}:"'
    settings = load(token_config(tmp_path, tokens=tokens))
    svc = TokenService(settings)
    async with svc.running():
        yield svc


async def test_a_token_is_used_once_then_refused(service):
    issued = await service.issue("alice")
    assert len(issued.token) >= 22  # at least 128 bits, URL-safe
    assert issued.link == f"https://prov.example.net/qr?token={issued.token}"
    ticket = await service.redeem(issued.token, "default")
    assert ticket is not None and (ticket.username, ticket.used, ticket.uses) == ("alice", 1, 1)
    assert await service.redeem(issued.token, "default") is None
    [listed] = await service.tickets("alice")
    assert listed.status() == "spent"


async def test_two_concurrent_uses_of_a_one_use_token_give_one_success(service):
    issued = await service.issue("alice")
    results = await asyncio.gather(*(service.redeem(issued.token, "default")
                                     for _ in range(12)))
    assert sum(r is not None for r in results) == 1
    two = await service.issue("alice", uses=2)
    results = await asyncio.gather(*(service.redeem(two.token, "default") for _ in range(12)))
    assert sum(r is not None for r in results) == 2


async def test_expired_revoked_unknown_and_other_profile_are_refused(service):
    short = await service.issue("alice", ttl=0.3)
    revoked = await service.issue("alice")
    other = await service.issue("alice")
    assert [t.fingerprint for t in await service.revoke(revoked.ticket.fingerprint)] == \
           [revoked.ticket.fingerprint]
    await asyncio.sleep(0.4)
    assert await service.redeem(short.token, "default") is None
    assert await service.redeem(revoked.token, "default") is None
    assert await service.redeem("A" * 24, "default") is None
    assert await service.redeem("not a token/../", "default") is None
    assert await service.redeem(other.token, "desktop") is None  # another profile's endpoint
    assert await service.redeem(other.token, "default") is not None  # ...did not spend it
    statuses = {t.fingerprint: t.status() for t in await service.tickets()}
    assert statuses[short.ticket.fingerprint] == "expired"
    assert statuses[revoked.ticket.fingerprint] == "revoked"


async def test_a_use_given_back_can_be_made_again(service):
    issued = await service.issue("alice")
    ticket = await service.redeem(issued.token, "default")
    assert ticket is not None
    await service.store.give_back(ticket.digest)
    assert await service.redeem(issued.token, "default") is not None


async def test_revoke_by_username_and_ambiguity(service):
    a, b = await service.issue("hatter"), await service.issue("hatter")
    await service.issue("alice")
    revoked = await service.revoke(username="hatter")
    assert {t.fingerprint for t in revoked} == {a.ticket.fingerprint, b.ticket.fingerprint}
    assert all(t.status() == "live" for t in await service.tickets("alice"))
    with pytest.raises(TokenError, match="no live token"):
        await service.revoke(username="hatter")
    with pytest.raises(TokenError, match="no such token"):
        await service.revoke("00000000")
    with pytest.raises(TokenError, match="hex digits"):
        await service.revoke("zz")
    now = time.time()
    for digest in ("abcd0001" + "0" * 56, "abcd0002" + "0" * 56):
        await service.store.add(Ticket(digest, "x", "default", "default", now, now + 60))
    with pytest.raises(TokenError, match="names 2 tokens"):
        await service.revoke("abcd")
    assert [t.username for t in await service.revoke("ABCD0001")] == ["x"]


async def test_only_a_keyed_hash_is_stored(tmp_path):
    settings = load(token_config(tmp_path))
    async with TokenService(settings).running() as svc:
        issued = await svc.issue("alice")
    raw = (tmp_path / "tokens.sqlite").read_bytes()
    assert issued.token.encode() not in raw
    with sqlite3.connect(tmp_path / "tokens.sqlite") as db:
        [(digest,)] = db.execute("SELECT digest FROM zoiper_bridge_tokens").fetchall()
    assert digest == svc.digest(issued.token) and digest.startswith(issued.ticket.fingerprint)
    # The same key gives the same hash; another key another one, so a copy of the store
    # is useless without the secret.
    assert TokenService(load(token_config(tmp_path / "same"))).digest(issued.token) == digest
    other = token_config(tmp_path / "other")
    other.write_text(other.read_text().replace(SECRET, "another-key-0123456789abcdef"))
    assert TokenService(load(other)).digest(issued.token) != digest


async def test_issue_refuses_what_it_cannot_do(tmp_path):
    extra = """
[tenants.acme]
domains = ["acme.example"]
[tenants.acme.auth]
type = "file"
path = "{users}"
[tenants.acme.source]
type = "sqlite"
path = "{accounts}"
query = "SELECT sip_user, sip_password, domain, transport, caller_id FROM accounts"
"""
    from tests.tokens.conftest import DEMO

    config = token_config(tmp_path, extra=extra.format(users=DEMO / "users.toml",
                                                       accounts=DEMO / "accounts.sqlite"))
    async with TokenService(load(config)).running() as svc:
        with pytest.raises(TokenError, match="no profile 'nope'"):
            await svc.issue("alice", "nope")
        with pytest.raises(TokenError, match="max_ttl"):
            await svc.issue("alice", ttl=90 * 86400)
        with pytest.raises(TokenError, match="printable"):
            await svc.issue("alice\n")
        with pytest.raises(TokenError, match="no tenant 'other'"):
            await svc.issue("alice", tenant="other")
        issued = await svc.issue("bob@ACME.example")  # chosen by domain, stripped
        assert (issued.ticket.username, issued.ticket.pipeline) == ("bob", "default/acme")
        issued = await svc.issue("carol")
        assert issued.ticket.pipeline == "default"
        assert issued.ticket.expires == pytest.approx(time.time() + 86400, abs=5)

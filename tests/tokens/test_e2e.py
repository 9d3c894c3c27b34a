"""One-time tokens end to end: `zoiper-bridge token` and the real gateway over HTTP.

The gateway believes X-Forwarded-For from 127.0.0.1 (see conftest), so each
request can come from an address of its own and the per-address guessing
limit of one test never shows in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bridge.settings import load
from bridge.tokens.service import TokenService
from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway
from tests.tokens.conftest import ADMIN_SECRET, LINK, token_config

ISSUED: list[str] = []  # every token this module saw: none may reach the gateway's output
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))

P2 = '[profiles.p2]\npath = "/p2"\n[profiles.p2.tokens]\npath = "/p2/token/"\n'


def parsed(stdout: str) -> dict[str, str]:
    """The `key  value` lines of `zoiper-bridge token` as a dict."""
    lines = dict(re.findall(r"^(\w+) +(.+)$", stdout, re.MULTILINE))
    if "token" in lines:
        ISSUED.append(lines["token"])
    return lines


def zoiper_bridge(config: Path, *args: str) -> dict[str, str]:
    """`zoiper-bridge token ...` as its own process, the way an operator runs it."""
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "token", *args,
                             "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return parsed(result.stdout)


@pytest.fixture
def cli(capsys, monkeypatch):
    """`zoiper-bridge token ...` in this process (a new interpreter costs seconds on a busy
    machine); the command's logging set-up is left out so that it cannot change ours."""
    from bridge.cli import main

    monkeypatch.setattr("logging.config.dictConfig", lambda config: None)

    def run(config: Path, *args: str) -> dict[str, str]:
        capsys.readouterr()
        assert main(["token", *args, "--config", str(config)]) == 0, capsys.readouterr().err
        return parsed(capsys.readouterr().out)

    return run


def fetch(gw: Gateway, token: str, path: str = "/token/",
          address: str | None = None) -> httpx.Response:
    return httpx.get(gw.base_url + path + token, timeout=10,
                     headers={"X-Forwarded-For": address or next(_addresses)})


def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    return (response.status_code, response.content,
            {k: v for k, v in response.headers.items() if k not in ("date", "x-request-id")})


async def race(urls: list[str]) -> list[int]:
    """GET them all at once, each from another address; their statuses."""
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(*(
            client.get(url, headers={"X-Forwarded-For": next(_addresses)}) for url in urls))
    return [r.status_code for r in responses]


async def issue(config: Path, username: str = "alice") -> str:
    async with TokenService(load(config)).running() as service:
        token = (await service.issue(username)).token
    ISSUED.append(token)
    return token


@pytest.fixture(scope="module")
def sqlite_gw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokens")
    config = token_config(folder, extra=P2)
    with Gateway(config, folder) as gw:
        yield gw


def test_a_token_provisions_once_then_every_refusal_is_the_same(sqlite_gw, tmp_path, cli):
    config = sqlite_gw.config
    expiring = cli(config, "issue", "--username", "alice", "--ttl", "1s")
    expires_at = time.monotonic() + 1
    issued = zoiper_bridge(config, "issue", "--username", "alice", "--qr-dir", str(tmp_path))
    assert issued["link"] == LINK.replace("{token}", issued["token"])

    first = fetch(sqlite_gw, issued["token"])
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/xml; charset=utf-8"
    assert first.headers["cache-control"] == "no-store"
    [account] = parse_config(first.content)["accounts"]  # validated against the schema
    assert (account["username"], account["password"], account["SIP_auth_username"]) == \
           ("1001", "Sip-Secret-1001", "1001")

    used = fetch(sqlite_gw, issued["token"])
    unknown = fetch(sqlite_gw, secrets.token_urlsafe(18))
    malformed = fetch(sqlite_gw, "not-a-token%21")
    revoked = cli(config, "issue", "--username", "alice", "--uses", "3")
    assert cli(config, "revoke", revoked["fingerprint"]) == {
        "revoked": f"{revoked['fingerprint']} (alice)"}
    time.sleep(max(0.0, expires_at - time.monotonic()) + 0.1)
    expired = fetch(sqlite_gw, expiring["token"])
    after_revocation = fetch(sqlite_gw, revoked["token"])
    assert used.status_code == 401
    assert "www-authenticate" not in used.headers
    assert parse_error(used.content) == "Wrong username or password."
    for other in (unknown, malformed, expired, after_revocation):
        assert comparable(other) == comparable(used)

    listing = cli(config, "list", "--all")  # fingerprint -> "status uses expires ..."
    assert listing[issued["fingerprint"]].split()[:2] == ["spent", "1/1"]
    assert listing[expiring["fingerprint"]].split()[0] == "expired"
    assert listing[revoked["fingerprint"]].split()[:2] == ["revoked", "0/3"]
    assert not any(t in " ".join(listing.values()) for t in ISSUED)


def test_the_png_decodes_to_the_link(sqlite_gw, tmp_path, cli):
    import zxingcpp
    from PIL import Image

    issued = cli(sqlite_gw.config, "issue", "--username", "alice", "--qr-dir",
                 str(tmp_path), "--terminal")
    png, svg = issued["qr"].split()
    assert Path(png) == tmp_path / f"{issued['fingerprint']}.png"
    [code] = zxingcpp.read_barcodes(Image.open(png))
    assert code.text == issued["link"] == LINK.replace("{token}", issued["token"])
    assert Path(svg).read_text().startswith("<?xml")
    assert (tmp_path / Path(png).name).stat().st_mode & 0o077 == 0  # a working token: private


async def test_two_concurrent_uses_of_a_one_use_token_give_one_200(sqlite_gw):
    for _ in range(3):
        token = await issue(sqlite_gw.config)
        statuses = await race([f"{sqlite_gw.base_url}/token/{token}"] * 6)
        assert sorted(statuses) == [200] + [401] * 5


async def test_a_failed_delivery_gives_the_use_back(sqlite_gw):
    token = await issue(sqlite_gw.config, "hatter")  # a login without a SIP account
    response = fetch(sqlite_gw, token)
    assert response.status_code == 404
    async with TokenService(load(sqlite_gw.config)).running() as service:
        [ticket] = await service.tickets("hatter")
    assert (ticket.status(), ticket.used) == ("live", 0)


def test_a_token_works_only_at_its_profile_endpoint(sqlite_gw, cli):
    issued = cli(sqlite_gw.config, "issue", "--username", "alice", "--profile", "p2")
    assert fetch(sqlite_gw, issued["token"]).status_code == 401
    assert fetch(sqlite_gw, issued["token"], path="/p2/token/").status_code == 200


async def test_guessing_is_limited_per_address(sqlite_gw):
    guesser = next(_addresses)
    for _ in range(5):  # address_failures = 5
        assert fetch(sqlite_gw, secrets.token_urlsafe(18), address=guesser).status_code == 401
    token = await issue(sqlite_gw.config)
    limited = fetch(sqlite_gw, token, address=guesser)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert fetch(sqlite_gw, token).status_code == 200  # the 429 did not spend it


def test_the_admin_api(sqlite_gw):
    url = sqlite_gw.base_url + "/admin/tokens"
    right = {"Authorization": f"Bearer {ADMIN_SECRET}"}
    for headers in ({}, {"Authorization": "Bearer wrong-secret-0123456789"},
                    {"Authorization": f"Basic {ADMIN_SECRET}"},
                    {"Authorization": f"Bearer {ADMIN_SECRET}x"}):
        refused = httpx.post(url, json={"username": "alice"}, headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {"error": "unauthorized"}
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(url, headers=headers).status_code == 401

    created = httpx.post(url, json={"username": "alice", "ttl": "1h", "uses": 1},
                         headers=right)
    assert created.status_code == 201, created.text
    body = created.json()
    ISSUED.append(body["token"])
    assert body["link"] == LINK.replace("{token}", body["token"])
    assert (body["username"], body["status"], body["uses"]) == ("alice", "live", 1)
    assert body["expires"] == pytest.approx(time.time() + 3600, abs=30)

    listing = httpx.get(url, params={"username": "alice"}, headers=right)
    assert body["fingerprint"] in [t["fingerprint"] for t in listing.json()["tokens"]]
    assert body["token"] not in listing.text
    assert httpx.post(url, json={"username": "alice", "profile": "nope"},
                      headers=right).status_code == 400
    assert httpx.post(url, json={"username": "alice", "password": "x"},
                      headers=right).status_code == 400

    revoked = httpx.delete(f"{url}/{body['fingerprint']}", headers=right)
    assert revoked.json() == {"revoked": [body["fingerprint"]]}
    more = [httpx.post(url, json={"username": "march-hare"}, headers=right).json()
            for _ in range(2)]
    ISSUED.extend(m["token"] for m in more)
    by_user = httpx.delete(url, params={"username": "march-hare"}, headers=right).json()
    assert sorted(by_user["revoked"]) == sorted(m["fingerprint"] for m in more)
    assert fetch(sqlite_gw, body["token"]).status_code == 401
    assert httpx.delete(f"{url}/{body['fingerprint']}",
                        headers={"Authorization": "Bearer nope"}).status_code == 401


async def test_no_token_in_the_gateway_output_at_debug_level(sqlite_gw):
    token = await issue(sqlite_gw.config)
    assert fetch(sqlite_gw, token).status_code == 200
    assert fetch(sqlite_gw, token).status_code == 401
    time.sleep(0.2)
    output = sqlite_gw.output()
    leaked = [t for t in ISSUED if t in output]
    assert leaked == []
    async with TokenService(load(sqlite_gw.config)).running() as service:
        fingerprint = service.fingerprint(token)
    assert f"DEBUG bridge.tokens: token {fingerprint} asked for at profile 'default'" in output
    assert f"token {fingerprint}: use 1 of 1 by 'alice'" in output
    assert f"token {fingerprint}: unknown, expired, spent or revoked" in output
    assert '"GET /token/******** HTTP/1.1" 200' in output
    metrics = httpx.get(sqlite_gw.base_url + "/metrics").text
    assert "bridge_tokens_redeemed_total" in metrics and token not in metrics


# -- several instances sharing one store --------------------------------------------------


def _two_gateways(folder: Path, tokens: str) -> tuple[Path, Gateway, Gateway]:
    config = token_config(folder, tokens=tokens)
    return config, Gateway(config, folder), Gateway(config, folder)


@contextlib.contextmanager
def both(a: Gateway, b: Gateway) -> Iterator[None]:
    """Start the two at once (each takes seconds on a busy machine); stop both after."""
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Gateway.start, (a, b)))
        yield
    finally:
        a.stop()
        b.stop()


async def _one_success_each(config: Path, a: Gateway, b: Gateway) -> None:
    for _ in range(4):
        token = await issue(config)
        statuses = await race([f"{gw.base_url}/token/{token}" for gw in (a, b) * 4])
        assert sorted(statuses) == [200] + [401] * 7
    for gw in (a, b):
        leaked = [t for t in ISSUED if t in gw.output()]
        assert leaked == []


async def test_two_gateways_sharing_postgresql(tmp_path, pg_url):
    config, a, b = _two_gateways(tmp_path, f'backend = "postgresql"\nurl = "{pg_url}"\n'
                                           f'table = "t_{uuid.uuid4().hex[:8]}"')
    await issue(config)  # creates the table before both gateways start
    with both(a, b):
        await _one_success_each(config, a, b)


async def test_two_gateways_sharing_redis(tmp_path, redis_url):
    config, a, b = _two_gateways(tmp_path, f'backend = "redis"\nurl = "{redis_url}"\n'
                                           f'prefix = "test-{uuid.uuid4().hex}:"')
    with both(a, b):
        await _one_success_each(config, a, b)

"""Every client and two tenants from one running gateway with one configuration.

One `zoiper-bridge serve` process serves: Zoiper for Android (the default
profile, URL parameters), iOS (/ios), Zoiper5 Desktop with HTTP Basic or URL
parameters and its MD5 password format (/desktop), and Desktop with HTTP Basic
and plaintext passwords (/desktop-plain); users of tenant acme.example are
checked against a real slapd, users of hung.example against a directory that
accepts connections and never answers. Each document is validated against
its own dialect. Run with -s to see the latencies of the tenant test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.auth.file import md5_hex
from bridge.passwords import hash_password
from bridge.zoiper.dialects import ANDROID, DESKTOP, IOS, Dialect
from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway
from tests.ldap.slapd import PEOPLE_DN, SERVICE_DN, SERVICE_PASSWORD, USERS, Slapd
from tests.upstreams import RawServer

pytestmark = pytest.mark.slow

ALICE_PASSWORD = "wonder land+&%"
BOB = USERS["bob"]


def write_config(folder: Path, slapd: Slapd, hung: RawServer) -> Path:
    (folder / "users.toml").write_text(f"""
[users.alice]
password = "{hash_password(ALICE_PASSWORD, 10)}"
password_md5 = "{hash_password(md5_hex(ALICE_PASSWORD), 10)}"
displayName = "Alice Liddell"
""")
    hung_port = hung.url.rpartition(":")[2]
    config = folder / "gateway.toml"
    config.write_text(f"""
[server]
deadline = 3.0

[limits]
username_failures = 0
address_failures = 0
lockout_window = 0

[auth]
type = "file"
path = "users.toml"

[source]
type = "static"
accounts = [{{ domain = "sip.example.com" }}]

[mapping.account]
name = "{{identity.username}}"
username = "{{identity.username}}"
password = "{{login.password}}"
SIP_domain = "{{account.domain}}"
SIP_transport_type = "tcp"

[tenants.acme]
domains = ["acme.example"]
[tenants.acme.auth]
type = "ldap"
uri = "{slapd.ldaps_uri}"
ca_file = "{slapd.ca_file}"
tls_name = "{slapd.tls_name}"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
timeout = 2
connect_timeout = 1
[tenants.acme.auth.user_search]
base = "{PEOPLE_DN}"
filter = "(uid={{username}})"
[tenants.acme.source]
type = "static"
accounts = [{{ domain = "pbx.acme.example" }}]

[tenants.hung]
domains = ["hung.example"]
[tenants.hung.auth]
type = "ldap"
uri = "ldap://127.0.0.1:{hung_port}"
tls = "none"
timeout = 2
connect_timeout = 1
bind_dn = "cn=nobody"
bind_password = "unused"
[tenants.hung.auth.user_search]
base = "dc=hung,dc=example"
filter = "(uid={{username}})"
[tenants.hung.source]
type = "static"
accounts = [{{ domain = "pbx.hung.example" }}]

[profiles.ios]
path = "/ios"
request = {{ dialect = "ios" }}

[profiles.desktop]
path = "/desktop"
[profiles.desktop.request]
dialect = "desktop"
credentials = "any"
password_format = "md5"
username_param = "username"
[profiles.desktop.tenants]          # none: MD5s cannot be checked by a directory bind

[profiles.desktop.mapping.account]
name = "{{identity.username}} (desktop)"
username = "{{identity.username}}"
password = "sip-secret"
SIP_domain = "{{account.domain}}"
[profiles.desktop.mapping.general]
check_for_updates = false

[profiles.desktop-plain]
path = "/desktop-plain"
request = {{ dialect = "desktop", credentials = "basic" }}
""")
    return config


@pytest.fixture(scope="module")
def site(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("profiles")
    with RawServer(lambda head: None) as hung:
        config = write_config(folder, slapd, hung)
        with Gateway(config, folder) as gw:
            yield gw


def document(response: httpx.Response, dialect: Dialect) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    return parse_config(response.content, dialect)


def test_check_config_accepts_the_multi_profile_file(site: Gateway) -> None:
    import subprocess
    import sys

    assert site.config is not None
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config",
                             str(site.config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_android_ios_and_desktop_each_get_their_dialect(site: Gateway) -> None:
    query = {"user": "alice", "password": ALICE_PASSWORD, "version": "1.14"}
    android = document(httpx.get(site.base_url + "/provision", params=query), ANDROID)
    ios = document(httpx.get(site.base_url + "/ios", params=query), IOS)
    assert android["accounts"][0]["SIP_domain"] == ios["accounts"][0]["SIP_domain"] \
        == "sip.example.com"
    assert ios["accounts"][0]["password"] == ALICE_PASSWORD

    md5 = md5_hex(ALICE_PASSWORD)
    basic = httpx.get(site.base_url + "/desktop", auth=("alice", md5))
    desktop = document(basic, DESKTOP)
    assert desktop["accounts"][0]["name"] == "alice (desktop)"
    assert desktop["general"]["check_for_updates"] == "false"
    url = httpx.get(site.base_url + "/desktop", params={"username": "alice", "password": md5})
    assert document(url, DESKTOP) == desktop
    # The Desktop-only section is not valid Android: each document fits its own dialect.
    with pytest.raises(ValueError):
        parse_config(basic.content, ANDROID)

    plain = httpx.get(site.base_url + "/desktop-plain", auth=("alice", ALICE_PASSWORD))
    assert document(plain, DESKTOP)["accounts"][0]["password"] == ALICE_PASSWORD


def test_wrong_md5_and_plaintext_where_md5_is_expected_are_refused(site: Gateway) -> None:
    wrong = httpx.get(site.base_url + "/desktop", auth=("alice", md5_hex("nope")))
    assert wrong.status_code == 401
    assert parse_error(wrong.content)
    assert wrong.headers["www-authenticate"].startswith('Basic realm="zoiper-bridge"')
    plain = httpx.get(site.base_url + "/desktop", auth=("alice", ALICE_PASSWORD))
    assert plain.status_code == 400   # not an MD5 at all
    none = httpx.get(site.base_url + "/desktop-plain")
    assert none.status_code == 401
    assert "www-authenticate" in none.headers
    # Profiles answering URL parameters only send no challenge.
    android = httpx.get(site.base_url + "/provision", params={"user": "alice",
                                                              "password": "nope"})
    assert android.status_code == 401
    assert "www-authenticate" not in android.headers


def test_tenant_users_are_served_by_their_own_directory(site: Gateway) -> None:
    response = httpx.get(site.base_url + "/provision",
                         params={"user": "bob@acme.example", "password": BOB.password})
    account = document(response, ANDROID)["accounts"][0]
    assert account["username"] == "bob"              # the directory's name, domain stripped
    assert account["SIP_domain"] == "pbx.acme.example"
    wrong = httpx.get(site.base_url + "/provision",
                      params={"user": "bob@acme.example", "password": "nope"})
    unknown = httpx.get(site.base_url + "/provision",
                        params={"user": "bob@nowhere.example", "password": BOB.password})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content          # an unknown tenant is a wrong password


def test_a_hanging_tenant_directory_does_not_slow_another_tenant(site: Gateway) -> None:
    async def one(client: httpx.AsyncClient, user: str, password: str) -> tuple[int, float]:
        start = time.perf_counter()
        response = await client.get(site.base_url + "/provision",
                                    params={"user": user, "password": password})
        return response.status_code, time.perf_counter() - start

    async def run() -> tuple[list[float], list[tuple[int, float]], list[tuple[int, float]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            quiet = [(await one(client, "bob@acme.example", BOB.password))[1]
                     for _ in range(10)]
            hung = [asyncio.create_task(one(client, f"u{i}@hung.example", "pw"))
                    for i in range(20)]
            await asyncio.sleep(0.3)  # the hung requests are now waiting on the directory
            during = [await one(client, "bob@acme.example", BOB.password) for _ in range(10)]
            return quiet, during, list(await asyncio.gather(*hung))

    quiet, during, hung = asyncio.run(run())
    assert all(status == 200 for status, _ in during)
    assert all(status == 503 for status, _ in hung)
    median_quiet = statistics.median(quiet)
    median_during = statistics.median(t for _, t in during)
    slowest_hung = max(t for _, t in hung)
    print(f"\ntenant acme: median {median_quiet * 1000:.1f} ms alone, "
          f"{median_during * 1000:.1f} ms while tenant hung's 20 requests wait "
          f"(they took up to {slowest_hung:.2f} s and got 503)")
    assert slowest_hung >= 0.9          # they really did wait on the hanging directory
    assert median_during < 0.5          # acme's users did not wait with them

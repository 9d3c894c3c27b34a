"""Website login + HTTP account data, end to end: the real gateway in a subprocess, a real
portal on loopback, and the phone's view (status, headers, error document)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway, free_port
from tests.upstreams import (
    CUSTOMERS,
    INJECTION,
    MISBEHAVIOUR,
    USERS,
    leaks,
)

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "e2e-api-key-4b9d0c"
WRONG = "Wrong username or password."
UNAVAILABLE = "The service is temporarily unavailable. Please try again later."
NO_ACCOUNT = "No phone account is set up for this user. Contact your administrator."
INTERNAL = "Provisioning failed because of a server error. Please try again later."

CONFIG = """
[server]
log_level = "debug"
deadline = 1.5

[auth]
type = "website"
url = "{portal}/api/login"
success_field = "success"
username_field = "data.user.login"
token_field = "/data/token"
read_timeout = 0.7
retries = 0
[auth.json]
email = "{{login.username}}"
password = "{{login.password}}"
[auth.attributes]
displayName = "data.user.name"
customer_id = "data.user.customer_id"

[source]
type = "http"
url = "{portal}/api/users/{{identity.username}}/accounts"
accounts_path = "data.accounts"
read_timeout = 0.7
max_bytes = 65536
breaker_failures = 50
[source.query]
customer = "{{identity.customer_id}}"
login = "{{login.username}}"
[source.headers]
Authorization = "Bearer {{identity.token}}"
[source.auth]
type = "api_key"
header = "X-API-Key"
key_env = "E2E_API_KEY"
[source.fields]
sip_user = "sip.username"
sip_password = "sip.password"
domain = "domain"
label = "label"

[mapping.account]
name = "{{identity.displayName}} ({{account.label}})"
username = "{{account.sip_user}}"
password = "{{account.sip_password}}"
SIP_domain = "{{account.domain}}"
SIP_transport_type = "tls"
"""


@pytest.fixture(scope="module")
def gateway(portal, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e-website")
    config = workdir / "config.toml"
    config.write_text(CONFIG.format(portal=portal.base_url))
    with Gateway(config, workdir, env={"E2E_API_KEY": API_KEY}) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(portal):
    portal.seen.clear()


def provision(gw: Gateway, user: str, password: str) -> httpx.Response:
    return httpx.get(gw.base_url + "/provision", params={"user": user, "password": password},
                     timeout=10)


def test_alice_gets_both_accounts(gateway, portal):
    response = provision(gateway, "alice", "wonderland-1")
    assert response.status_code == 200, response.text
    accounts = parse_config(response.content)["accounts"]
    assert [(a["username"], a["password"], a["SIP_domain"]) for a in accounts] == [
        ("1001", "Sip-Secret-1001", "sip.example.com"),
        ("1002", "Sip-Secret-1002", "sip.example.com"),
    ]
    assert accounts[0]["name"] == "Alice Liddell (Alice office)"
    login, data = portal.seen
    assert json.loads(login.body) == {"email": "alice", "password": "wonderland-1"}
    assert data.raw_path == b"/api/users/alice/accounts"
    assert data.params == {"customer": [str(CUSTOMERS["alice"])], "login": ["alice"]}
    assert data.headers["authorization"] == f"Bearer tok-{CUSTOMERS['alice']}"  # the session
    assert data.headers["x-api-key"] == API_KEY                                # from the env


def test_wrong_password_is_401(gateway, portal):
    response = provision(gateway, "bob", "not-bobs-password")
    assert response.status_code == 401
    assert parse_error(response.content) == WRONG
    assert "retry-after" not in response.headers
    assert [s.raw_path for s in portal.seen] == [b"/api/login"]  # accounts never asked


@pytest.mark.parametrize(("user", "logged"), [
    ("crash", "UpstreamUnavailable: http source 127.0.0.1: HTTP 500"),
    ("sleepy", "UpstreamTimeout: http source 127.0.0.1: ReadTimeout"),
    ("drip", "UpstreamTimeout: request deadline of 1.5s exceeded"),
    ("garbage", "UpstreamUnavailable: http source 127.0.0.1: HTTP 200, not valid JSON"),
    ("huge-chunked", "http source 127.0.0.1: answer is over max_bytes = 65536"),
    ("login-crash", "UpstreamUnavailable: website login 127.0.0.1: HTTP 500"),
    ("login-slow", "UpstreamTimeout: website login 127.0.0.1: ReadTimeout"),
    ("login-garbage", "UpstreamUnavailable: website login 127.0.0.1: HTTP 200, not valid"),
])
def test_upstream_trouble_is_503_with_retry_after(gateway, portal, user, logged):
    before = len(gateway.output())
    response = provision(gateway, user, "secret-pw")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert parse_error(response.content) == UNAVAILABLE
    assert response.headers["cache-control"] == "no-store"
    assert logged in gateway.output()[before:]  # and for the reason this case is about


@pytest.mark.parametrize("user", ["nobody", "ghost"])  # [] and HTTP 404
def test_no_accounts_is_404(gateway, user):
    response = provision(gateway, user, "secret-pw")
    assert response.status_code == 404
    assert parse_error(response.content) == NO_ACCOUNT


def test_a_name_that_cannot_be_a_path_segment_is_a_500_not_no_account(gateway, portal):
    """The portal's canonical name (username_field) goes into the accounts URL's path: one
    with a dot segment ("a/../b", "..") is refused, nothing is sent, the log names the field."""
    before = len(gateway.output())
    for user in (INJECTION, ".."):
        portal.seen.clear()
        response = provision(gateway, user, "secret-pw")
        assert response.status_code == 500, response.text
        assert parse_error(response.content) == INTERNAL
        [login] = portal.seen  # logged in; the accounts request was never sent
        assert login.raw_path == b"/api/login" and login.query == b""
        assert json.loads(login.body)["email"] == user
    # One line for both: the detail names the field, not the value, so the second is a repeat.
    [line] = [x for x in gateway.output()[before:].splitlines() if "UnsafeValue" in x]
    line = line.partition(" request_id=")[0]  # the request's id ends every line of it
    assert line.endswith("UnsafeValue: placeholder: the value of {identity.username} cannot be "
                         "placed in a URL path segment (a '.' or '..' segment once %2F or %5C "
                         "is decoded)")


def test_secrets_never_reach_the_gateway_log(gateway):
    provision(gateway, "alice", "wonderland-1")
    provision(gateway, "crash", "secret-pw")
    output = gateway.output()
    assert "http source 127.0.0.1: HTTP 500" in output  # the failures are logged...
    assert "website login 127.0.0.1" in output
    for secret in ("wonderland-1", "not-bobs-password", API_KEY,
                   *(f"tok-{c}" for c in CUSTOMERS.values()), "Sip-Secret-1001"):
        assert secret not in output                       # ...without any secret
    assert "a%2F..%2Fb" not in output and "customer=" not in output  # nor request URLs


def test_users_the_portal_refuses_or_garbles_never_shut_out_everyone(gateway, portal):
    """Review evidence: 5 logins the portal answered 400 opened the breaker for 'alice'."""
    before = len(gateway.output())
    for n in range(7):
        rejected = provision(gateway, f"login-rejected-{n}", "secret-pw")
        assert rejected.status_code == 401, rejected.text  # a refused login, not an outage
        assert parse_error(rejected.content) == WRONG
    for n in range(7):
        garbled = provision(gateway, f"login-garbage-{n}", "secret-pw")
        assert garbled.status_code == 503  # that user's outage ...
        assert parse_error(garbled.content) == UNAVAILABLE
    alice = provision(gateway, "alice", "wonderland-1")
    assert alice.status_code == 200, alice.text  # ... but no breaker opened for everyone
    assert "circuit" not in gateway.output()[before:]
    assert len([s for s in portal.seen if s.raw_path == b"/api/login"]) == 15


def check_config(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "WHMCS_API_KEY"}
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check-config",
                           str(ROOT / "deploy" / "examples" / name)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**clean, **env})


def test_example_website_json_passes_check_config():
    result = check_config("website-json.toml", {})
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_example_website_form_passes_check_config_with_its_api_key():
    result = check_config("website-form.toml", {"WHMCS_API_KEY": "k-123"})
    assert result.returncode == 0, result.stderr
    missing = check_config("website-form.toml", {})
    assert missing.returncode == 2
    assert "WHMCS_API_KEY" in missing.stderr


def test_every_scenario_user_is_known_to_the_portal():
    """Guards the table above: a typo would turn an outage test into a wrong-password one."""
    assert {"crash", "sleepy", "drip", "garbage", "huge-chunked", "nobody", "ghost",
            INJECTION, ".."} <= USERS.keys()


QUERY_LOGIN = """
[server]
log_level = "debug"
deadline = 3.0

[auth]
type = "website"
url = "{url}/portal/login"
method = "GET"
allow_password_in_query = true   # the risky setup this test is about
retries = 0
read_timeout = 0.5
breaker_failures = 0
{extra}
[auth.query]
user = "{{login.username}}"
password = "{{login.password}}"

[source]
type = "static"
[[source.accounts]]
domain = "sip.example.com"

[mapping.account]
username = "{{login.username}}"
password = "{{login.password}}"
SIP_domain = "{{account.domain}}"
"""


@pytest.mark.parametrize("password", ["Müller2024x", "Zq7Kx9Wm!pw&x=1"])
@pytest.mark.parametrize("target", ["broken-http", "wrong-ca"])
def test_a_password_in_the_upstream_url_never_reaches_the_log(raw_server, tls_portal, tls,
                                                             tmp_path, target, password):
    """aiohttp's error texts quote the whole URL; they must not reach a logged traceback.

    (The log formatter masks the password as typed, but not every encoding of it:
    'M%C3%BCller2024x' got through before the transport stopped chaining them.)
    """
    if target == "broken-http":
        url, extra = raw_server.url, ""
        users = {**{user: "RemoteProtocolError" if user in ("malformed", "bad-header")
                    else "ReadError" for user in MISBEHAVIOUR},
                 "silent": "UpstreamTimeout: website login 127.0.0.1: ReadTimeout"}
    else:
        url, extra = tls_portal.url, f'ca_file = "{tls.other_ca}"'
        users = {"alice": "ConnectError (TLS CERTIFICATE_VERIFY_FAILED)"}
    config = tmp_path / "config.toml"
    config.write_text(QUERY_LOGIN.format(url=url, extra=extra))
    with Gateway(config, tmp_path) as gw:
        for user in users:
            response = provision(gw, user, password)
            assert response.status_code == 503, (user, response.text)
    output = gw.output()
    for user, reason in users.items():
        assert reason in output, (user, output)  # each failure is logged, with its reason
    assert leaks(output, password) == [], output
    assert "password=" not in output and "/portal/login" not in output


def check_connect(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", "--connect",
                           str(config)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "E2E_API_KEY": API_KEY})


def test_check_config_connect_reaches_the_portal_and_the_api(portal, tmp_path):
    """ready(): the login's ready_path is asked once; the API (no ready_path) is connected to."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(portal=portal.base_url).replace(
        "retries = 0\n", 'retries = 0\nready_path = "/api/users/alice/primary"\n', 1))
    result = check_connect(config)
    assert result.returncode == 0, result.stderr
    assert "[auth] ready" in result.stdout and "[source] ready" in result.stdout
    assert [(s.method, s.raw_path) for s in portal.seen] == [("GET", b"/api/users/alice/primary")]


def test_check_config_connect_names_a_closed_port(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(portal=f"http://127.0.0.1:{free_port()}"))
    result = check_connect(config)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "NOT READY" in line]
    assert len(lines) == 2 and all("ECONNREFUSED" in line for line in lines), result.stderr
    assert "website login 127.0.0.1" in lines[0] and "http source 127.0.0.1" in lines[1]

"""The embedded demo, end to end: `zoiper-bridge serve` under uvicorn, spoken to over HTTP."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import httpx
import pytest

from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway

PASSWORDS = ["wonderland", "not-the-password-1", "looking-glass", "Sip-Secret-1001"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with Gateway(None, tmp_path_factory.mktemp("demo")) as gw:
        yield gw


@pytest.fixture(scope="module")
def debug_demo(tmp_path_factory):
    """The demo configuration with debug logging, to prove secrets stay out of logs."""
    workdir = tmp_path_factory.mktemp("debug-demo")
    demo_dir = Path(str(resources.files("bridge") / "demo"))
    text = (demo_dir / "config.toml").read_text()
    text = text.replace('path = "users.toml"', f'path = "{demo_dir / "users.toml"}"')
    text = text.replace('path = "accounts.sqlite"', f'path = "{demo_dir / "accounts.sqlite"}"')
    config = workdir / "config.toml"
    config.write_text('[server]\nlog_level = "debug"\n\n' + text)
    with Gateway(config, workdir) as gw:
        yield gw


def get(gw: Gateway, **params: str) -> httpx.Response:
    return httpx.get(gw.base_url + "/provision", params=params, timeout=10)


def assert_common_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("version", ["1.14", None, "1.13", "2.0", "1.14.3"])
def test_alice_gets_a_valid_configuration(demo, version):
    params = {"user": "alice", "password": "wonderland"}
    if version is not None:
        params["version"] = version
    response = get(demo, **params)
    assert response.status_code == 200
    assert_common_headers(response)
    tree = parse_config(response.content)
    [account] = tree["accounts"]
    assert account["username"] == "1001"
    assert account["password"] == "Sip-Secret-1001"
    assert account["SIP_domain"] == "sip.example.com"
    assert account["SIP_transport_type"] == "tls"
    assert account["name"] == "Alice Liddell (1001)"
    assert [c["codec_id"] for c in account["codecs"]] == ["35", "7", "0", "6", "33"]
    assert tree["diagnostics"] == {"enable_debug_log": "false"}


def test_wrong_password_and_unknown_user_are_indistinguishable(demo):
    wrong = get(demo, user="alice", password="not-the-password-1", version="1.14")
    unknown = get(demo, user="nobody", password="not-the-password-1", version="1.14")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert {k: v for k, v in wrong.headers.items() if k not in ("date", "x-request-id")} == \
           {k: v for k, v in unknown.headers.items() if k not in ("date", "x-request-id")}
    assert parse_error(wrong.content) == "Wrong username or password."
    assert_common_headers(wrong)


@pytest.mark.parametrize("params", [
    {}, {"user": "alice"}, {"password": "wonderland"}, {"user": "", "password": "wonderland"},
    {"user": "alice", "password": ""}, {"user": "alice", "password": "wonderland",
                                        "version": "not-a-version"},
])
def test_bad_requests_are_4xx_error_documents(demo, params):
    response = get(demo, **params)
    assert response.status_code == 400
    assert_common_headers(response)
    assert parse_error(response.content)


def test_login_without_sip_account_is_404(demo):
    response = get(demo, user="hatter", password="looking-glass")
    assert response.status_code == 404
    assert "No phone account" in parse_error(response.content)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_error_documents(demo, method):
    response = httpx.request(method, demo.base_url + "/provision?user=alice&password=wonderland")
    assert response.status_code == 405
    assert_common_headers(response)
    assert response.headers["allow"] == "GET, HEAD"
    assert parse_error(response.content)


def test_head_has_headers_and_no_body(demo):
    response = httpx.head(demo.base_url + "/provision?user=alice&password=wonderland")
    assert response.status_code == 200
    assert_common_headers(response)
    assert response.content == b""
    full = get(demo, user="alice", password="wonderland")
    assert response.headers["content-length"] == str(len(full.content))


def test_unknown_path_is_an_error_document(demo):
    response = httpx.get(demo.base_url + "/nope")
    assert response.status_code == 404
    assert parse_error(response.content)


def test_passwords_never_reach_the_output(debug_demo):
    get(debug_demo, user="alice", password="wonderland")
    get(debug_demo, user="alice", password="not-the-password-1")
    get(debug_demo, user="hatter", password="looking-glass")
    get(debug_demo, user="alice", password="wonderland", version="bad")
    httpx.post(debug_demo.base_url + "/provision?user=alice&password=wonderland")
    debug_demo.stop()
    output = debug_demo.output()
    assert "/provision" in output  # the access log is there...
    assert "alice" in output
    for secret in PASSWORDS:       # ...but no password, in any form
        assert secret not in output


def test_trailing_slash_is_not_redirected_with_the_query(demo):
    response = httpx.get(demo.base_url + "/provision/?user=alice&password=wonderland")
    assert response.status_code == 404
    assert "location" not in response.headers
    assert parse_error(response.content)

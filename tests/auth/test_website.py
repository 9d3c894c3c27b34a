"""The website-login authenticator against a real portal on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from bridge.auth.website import WebsiteAuthenticator
from bridge.errors import UpstreamTimeout, UpstreamUnavailable
from bridge.models import Credentials, Identity
from tests.upstreams import (
    CUSTOMERS,
    INJECTION,
    PortalState,
    Server,
    make_authenticator,
    portal_app,
    problems,
    started,
)


@pytest.fixture(scope="module")
def portal():
    state = PortalState()
    with Server(portal_app(state)) as server:
        state.base_url = server.url
        yield state


@pytest.fixture(autouse=True)
def fresh(portal):
    portal.seen.clear()


def json_login(portal: PortalState, extra: str = "") -> WebsiteAuthenticator:
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/api/login"
read_timeout = 0.5
success_field = "success"
username_field = "data.user.login"
groups_field = "/data/user/roles"
token_field = "data.token"
session_cookies = ["PHPSESSID"]
{extra}
[json]
email = "{{login.username}}"
password = "{{login.password}}"
client = {{ app = "zoiper", version = 2 }}

[attributes]
displayName = "data.user.name"
customer_id = "/data/user/customer_id"
""")
    assert isinstance(auth, WebsiteAuthenticator)
    return auth


def login(auth: Any, username: str, password: str) -> Identity | None:
    async def run() -> Identity | None:
        async with started(auth):
            return await auth.authenticate(Credentials(username, password))
    return asyncio.run(run())


def test_json_login_returns_identity_attributes_and_session(portal):
    identity = login(json_login(portal), "alice", "wonderland-1")
    assert identity is not None
    assert identity.username == "alice"
    assert identity.attributes["displayName"] == "Alice Liddell"
    assert identity.attributes["customer_id"] == CUSTOMERS["alice"]  # a number stays a number
    assert identity.attributes["token"] == f"tok-{CUSTOMERS['alice']}"
    # Only the listed cookie is carried, never "tracking".
    assert identity.attributes["cookie"] == f"PHPSESSID=sess-{CUSTOMERS['alice']}"
    assert identity.groups == {"voip", "staff"}
    [seen] = portal.seen
    assert seen.method == "POST"
    assert seen.raw_path == b"/api/login" and seen.query == b""
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {"email": "alice", "password": "wonderland-1",
                                     "client": {"app": "zoiper", "version": 2}}


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong-password"), ("nobody-here", "wonderland-1"), ("alice", ""),
])
def test_wrong_credentials_are_none(portal, username, password):
    assert login(json_login(portal), username, password) is None
    assert len(portal.seen) == 1


@pytest.mark.parametrize(("username", "error"), [
    ("login-crash", UpstreamUnavailable),     # 500
    ("login-slow", UpstreamTimeout),          # read_timeout = 0.5 s
    ("login-garbage", UpstreamUnavailable),   # 200 with an HTML page
    ("login-no-token", UpstreamUnavailable),  # token_field configured but absent
])
def test_outages_are_never_wrong_passwords(portal, username, error):
    password = "Pa55-word-in-no-message"
    with pytest.raises(error) as info:
        login(json_login(portal), username, password)
    message = str(info.value)
    assert "website login 127.0.0.1" in message
    assert password not in message and username not in message
    assert type(info.value) is error


def test_the_shared_client_never_carries_one_users_cookie_to_the_next(portal):
    auth = json_login(portal)

    async def run() -> None:
        async with started(auth):
            assert await auth.authenticate(Credentials("alice", "wonderland-1"))
            assert await auth.authenticate(Credentials("bob", "builder-22"))

    asyncio.run(run())
    assert [("cookie" in s.headers) for s in portal.seen] == [False, False]


def test_injection_attempts_reach_the_portal_as_plain_data(portal):
    evil_password = '"}, "admin": true, "x": {"'
    assert login(json_login(portal), INJECTION, "secret-pw") is not None
    assert login(json_login(portal), "alice", evil_password) is None
    first, second = portal.seen
    assert first.raw_path == second.raw_path == b"/api/login"
    assert json.loads(first.body)["email"] == INJECTION
    assert json.loads(second.body) == {"email": "alice", "password": evil_password,
                                       "client": {"app": "zoiper", "version": 2}}


def form_login(portal: PortalState) -> WebsiteAuthenticator:
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/form/login"
success_field = "result"
success_value = "success"
session_cookies = ["WHMCSsession"]
[form]
username = "{{login.username}}"
password = "{{login.password}}"
[attributes]
client_id = "client_id"
""")
    assert isinstance(auth, WebsiteAuthenticator)
    return auth


def test_form_login_with_a_success_field(portal):
    identity = login(form_login(portal), "bob", "builder-22")
    assert identity is not None
    assert identity.username == "bob"  # no username_field: as typed
    assert identity.attributes == {"client_id": CUSTOMERS["bob"],
                                   "cookie": f"WHMCSsession=sess-{CUSTOMERS['bob']}"}
    [seen] = portal.seen
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen.body.decode()) == {"username": ["bob"], "password": ["builder-22"]}


def test_form_login_failure_rule_on_a_200(portal):
    assert login(form_login(portal), "bob", "a&b=c +%26") is None
    [seen] = portal.seen
    assert parse_qs(seen.body.decode()) == {"username": ["bob"], "password": ["a&b=c +%26"]}


def test_xml_answer_with_status_element_and_attribute(portal):
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/xml/login"
success_field = "status"
success_value = "ok"
[form]
username = "{{login.username}}"
password = "{{login.password}}"
[attributes]
customer_id = "user.@id"
""")
    identity = login(auth, "alice", "wonderland-1")
    assert identity is not None and identity.attributes["customer_id"] == str(CUSTOMERS["alice"])
    assert login(auth, "alice", "nope") is None


def basic_login(portal: PortalState) -> WebsiteAuthenticator:
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/basic/login"
method = "GET"
basic_auth = true
[attributes]
displayName = "user.name"
""")
    assert isinstance(auth, WebsiteAuthenticator)
    return auth


def test_http_basic_towards_the_portal(portal):
    identity = login(basic_login(portal), "alice", "wonderland-1")
    assert identity is not None and identity.attributes["displayName"] == "Alice Liddell"
    assert login(basic_login(portal), "alice", "wrong") is None
    assert portal.seen[0].headers["authorization"].startswith("Basic ")


def test_basic_auth_refuses_a_colon_in_the_name_without_asking(portal):
    assert login(basic_login(portal), "alice:wonderland-1", "x") is None
    assert portal.seen == []


def test_get_login_parameters_go_in_the_query_encoded(portal):
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/basic/login?format=json"
method = "GET"
failure_status = [401, 403, 404]
[query]
user = "{{login.username}}"
""")
    login(auth, INJECTION, "x")
    [seen] = portal.seen
    assert seen.raw_path == b"/basic/login"
    assert seen.params == {"format": ["json"], "user": [INJECTION]}


@pytest.mark.parametrize("username", ["..", ".", "bad\r\nX-Admin: 1"])
def test_values_that_cannot_be_placed_safely_are_not_sent(portal, username):
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/api/{{login.username}}/login"
[headers]
X-Login = "{{login.username}}"
""")
    assert login(auth, username, "x") is None
    assert portal.seen == []


def test_path_placeholders_are_one_encoded_segment(portal):
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/api/users/{{login.username}}/accounts"
method = "GET"
""")
    assert login(auth, INJECTION, "x") is not None  # 200 counts as success here
    assert portal.seen[0].raw_path == b"/api/users/a%2F..%2Fb%3Fx%3D1%26y%23z/accounts"
    assert portal.seen[0].query == b""


def test_same_host_redirect_is_followed_when_enabled(portal):
    base = portal.base_url
    text = f"""
type = "website"
url = "{base}/redirect?code=307&to=/api/login"
follow_redirects = FOLLOW
success_field = "success"
[json]
email = "{{login.username}}"
password = "{{login.password}}"
"""
    assert login(make_authenticator(text.replace("FOLLOW", "true")), "alice", "wonderland-1")
    assert [s.raw_path for s in portal.seen] == [b"/redirect", b"/api/login"]
    assert json.loads(portal.seen[1].body)["password"] == "wonderland-1"  # 307 keeps the body
    portal.seen.clear()
    with pytest.raises(UpstreamUnavailable, match="unexpected HTTP 307"):
        login(make_authenticator(text.replace("FOLLOW", "false")), "alice", "wonderland-1")
    assert len(portal.seen) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ('url = "https://{login.username}.example.com/login"', "literal host"),
    ('url = "https://portal.example.com/{identity.username}"', "not available here"),
    ('url = "https://portal.example.com/login?u={login.username}"', "[query] table"),
    ('url = "https://portal.example.com/{login.password}/x"', "must not be in the url path"),
    ('url = "http://portal.example.com/login"', "unencrypted"),
    ('url = "https://portal.example.com/login"\nmethod = "GET"\n[form]\nu = "x"', "no body"),
    ('url = "https://portal.example.com/login"\ntoken_field = "t"\n[attributes]\ntoken = "t"',
     "set by token_field"),
    ('url = "https://portal.example.com/login"\nfailure_status = [200]', "overlaps"),
    ('url = "https://portal.example.com/login"\nsuccess_value = 1', "needs success_field"),
    ('url = "https://portal.example.com/login"\nsuccess_field = "a..b"', "empty part"),
    ('url = "https://portal.example.com/login"\n[headers]\n"Bad Name" = "x"', "header name"),
    ('url = "https://portal.example.com/login"\nca_file = "missing.pem"', "file not found"),
    ('url = "https://portal.example.com/login"\nretries = 9', "at most 5"),
    ('url = "https://portal.example.com/login"\ntypo = 1', "unknown key"),
])
def test_configuration_problems_are_reported_with_their_key(text, expected):
    found = problems('type = "website"\n' + text)
    assert any(expected in p and p.startswith("Config value 'auth.") for p in found), found


def test_the_example_defaults_are_safe():
    auth = make_authenticator('type = "website"\nurl = "https://portal.example.com/login"')
    assert isinstance(auth, WebsiteAuthenticator)
    assert auth.request.method == "POST"
    assert auth.failure_status == {401, 403}
    s = auth.upstream.settings
    assert (s.follow_redirects, s.retries, s.max_bytes) == (False, 1, 1_048_576)
    assert s.ssl_context is not None and s.ssl_context.verify_mode.name == "CERT_REQUIRED"
    assert s.ssl_context.check_hostname

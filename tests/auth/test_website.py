"""The website-login authenticator against a real portal on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from typing import Any
from urllib.parse import parse_qs

import pytest

from bridge.auth.website import WebsiteAuthenticator
from bridge.breaker import CLOSED, OPEN, CircuitBreaker, CircuitOpen
from bridge.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.models import Credentials, Identity
from tests.gateway import free_port
from tests.upstreams import (
    CUSTOMERS,
    INJECTION,
    MISBEHAVIOUR,
    PortalState,
    leaks,
    make_authenticator,
    problems,
    started,
)

PASSWORDS = ("Müller2024x", "Zq7Kx9Wm!pw&x=1")  # non-ASCII, and ASCII with specials


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


@pytest.mark.parametrize("username", ["..", ".", "../admin", INJECTION, "bad\r\nX-Admin: 1"])
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
    login(auth, "a/b?x=1&y#z", "x")
    assert portal.seen[0].raw_path == b"/api/users/a%2Fb%3Fx%3D1%26y%23z/accounts"
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
    c = auth.upstream.config
    assert (c.follow_redirects, c.retries, c.max_bytes) == (False, 1, 1_048_576)
    context = auth.upstream.ssl_context()
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
    # No per-upstream breaker keys: the gateway's [breaker] settings apply.
    assert (auth.breaker_failures, auth.breaker_cooldown) == (None, None)


def logins(auth: Any, attempts: list[tuple[str, str]], breaker: CircuitBreaker
           ) -> list[Identity | Exception | None]:
    """Several logins through one started authenticator (one client), each under `breaker`
    the way the request flow calls it: the backend has no breaker of its own."""
    async def run() -> list[Identity | Exception | None]:
        results: list[Identity | Exception | None] = []
        async with started(auth):
            for username, password in attempts:
                try:
                    with breaker.guard():
                        results.append(await auth.authenticate(Credentials(username, password)))
                except UpstreamError as exc:
                    results.append(exc)
        return results
    return asyncio.run(run())


def flow_breaker() -> CircuitBreaker:
    return CircuitBreaker("authenticator", failure_threshold=2, cooldown=60)


def test_a_4xx_the_portal_gives_one_user_is_a_refused_login_not_an_outage(portal, caplog):
    """5 logins as a name the portal answers 400 for must not shut 'alice' out."""
    auth, breaker = json_login(portal), flow_breaker()
    with caplog.at_level(logging.INFO, logger="bridge.auth.website"):
        *rejected, alice = logins(auth, [("login-rejected", "x")] * 5
                                  + [("alice", "wonderland-1")], breaker)
    assert rejected == [None] * 5  # a wrong-password answer (401), never a 503
    assert isinstance(alice, Identity) and alice.username == "alice"
    assert breaker.state == CLOSED
    assert len(portal.seen) == 6  # every one was asked: no CircuitOpen
    logged = [r.getMessage() for r in caplog.records if "HTTP 400" in r.getMessage()]
    assert len(logged) == 5 and all(r.levelno == logging.INFO for r in caplog.records
                                    if "HTTP 400" in r.getMessage())
    assert "login-rejected" not in " ".join(logged)


def test_malformed_answers_for_one_user_do_not_open_the_breaker(portal):
    auth, breaker = json_login(portal), flow_breaker()
    *garbage, alice = logins(auth, [("login-garbage", "x")] * 4 + [("alice", "wonderland-1")],
                             breaker)
    assert all(type(g) is UpstreamUnavailable for g in garbage)  # a 503 each, not CircuitOpen
    assert isinstance(alice, Identity)
    assert breaker.state == CLOSED and breaker.failures == 0


def test_5xx_still_opens_the_breaker(portal):
    auth, breaker = json_login(portal), flow_breaker()
    crash, crash_again, alice = logins(auth, [("login-crash", "x")] * 2
                                       + [("alice", "wonderland-1")], breaker)
    assert type(crash) is type(crash_again) is UpstreamUnavailable
    assert isinstance(alice, CircuitOpen)
    assert breaker.state == OPEN
    assert len(portal.seen) == 2


def test_a_missing_success_field_is_an_outage_not_a_wrong_password(portal):
    """An API that changed shape must not tell every user "wrong password"."""
    with pytest.raises(UpstreamUnavailable, match="without success_field 'success'") as info:
        login(json_login(portal), "login-reshaped", "secret-pw")
    assert type(info.value) is UpstreamUnavailable
    assert login(json_login(portal), "alice", "wrong") is None  # present and false: wrong


def test_a_present_but_different_success_value_is_a_wrong_password(portal):
    auth = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/xml/login"
success_field = "status"
success_value = "ok"
[form]
username = "{{login.username}}"
password = "{{login.password}}"
""")
    assert login(auth, "alice", "nope") is None          # <status>denied</status>
    reshaped = make_authenticator(f"""
type = "website"
url = "{portal.base_url}/xml/login"
success_field = "result"
[form]
username = "{{login.username}}"
password = "{{login.password}}"
""")
    with pytest.raises(UpstreamUnavailable, match="without success_field"):
        login(reshaped, "alice", "wonderland-1")          # no <result> at all


def query_login(base_url: str, extra: str = "") -> WebsiteAuthenticator:
    auth = make_authenticator(f"""
type = "website"
url = "{base_url}/portal/login"
method = "GET"
allow_password_in_query = true
retries = 0
read_timeout = 0.5
{extra}
[query]
user = "{{login.username}}"
password = "{{login.password}}"
""")
    assert isinstance(auth, WebsiteAuthenticator)
    return auth


def assert_carries_nothing_of_the_request(exc: BaseException, password: str, url: str) -> None:
    # FailureLog logs the traceback of __cause__: nothing may hang there, or in __context__.
    assert exc.__cause__ is None and exc.__context__ is None, repr(exc.__cause__ or
                                                                     exc.__context__)
    text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)
    assert leaks(text, password) == [], text
    assert url not in text and "/portal/login" not in text and "password=" not in text


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(("user", "expected"), [
    ("malformed", "RemoteProtocolError"),
    ("bad-header", "RemoteProtocolError"),
    ("closer", "ReadError"),
    ("truncated", "ReadError"),
    ("silent", "ReadTimeout"),
])
def test_broken_http_errors_carry_no_url_or_password(raw_server, user, expected, password):
    assert user in MISBEHAVIOUR or user == "silent"
    with pytest.raises(UpstreamError, match=f"website login 127.0.0.1: {expected}") as info:
        login(query_login(raw_server.url), user, password)
    assert_carries_nothing_of_the_request(info.value, password, raw_server.url)
    assert raw_server.heads[-1].startswith(b"GET /portal/login?user=")  # it was sent


@pytest.mark.parametrize("password", PASSWORDS)
def test_tls_and_connection_errors_carry_no_url_but_say_why(tls_portal, tls, password):
    wrong_ca = query_login(tls_portal.url, f'ca_file = "{tls.other_ca}"')
    with pytest.raises(UpstreamUnavailable, match=r"ConnectError \(TLS CERTIFICATE_VERIFY_FAILED"
                       r"\)") as info:
        login(wrong_ca, "alice", password)
    assert_carries_nothing_of_the_request(info.value, password, tls_portal.url)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailable, match=r"ConnectError \(ECONNREFUSED\)") as info:
        login(query_login(dead), "alice", password)
    assert_carries_nothing_of_the_request(info.value, password, dead)


@pytest.mark.parametrize("kind", ["auth", "source"])
def test_a_password_in_the_query_is_refused_unless_allowed(kind):
    text = f"""type = "{'website' if kind == 'auth' else 'http'}"
url = "https://portal.example.com/login"
method = "GET"
[query]
user = "{{login.username}}"
pw = "x-{{login.password}}"
"""
    found = problems(text, kind)
    assert any(p.startswith(f"Config value '{kind}.query.pw'") and "access logs" in p
               and "allow_password_in_query = true" in p for p in found), found
    assert problems(text.replace("[query]", "allow_password_in_query = true\n[query]"),
                    kind) == []
    assert problems(text.replace('pw = "x-{login.password}"', 'pw = "{login.username}"'),
                    kind) == []


def test_every_problem_of_the_table_is_reported_at_once_with_its_key():
    found = problems("""type = "website"
url = "https://portal.example.com/{identity.username}"
method = "PUT"
retries = 9
read_timeout = "5"
ready_path = "health"
[headers]
"Bad Name" = "x"
X-Login = "{identity.username}"
[json]
user = { name = "{account.id}" }
""")
    assert sorted(found) == sorted([
        "Config value 'auth.retries': must be at most 5, received 9",
        "Config value 'auth.read_timeout': expected a number, received '5'",
        "Config value 'auth.ready_path': must be a literal path starting with '/' "
        "(an optional ?query, no placeholders)",
        "Config value 'auth.url': {identity.username} is not available here "
        "(only {login.*})",
        "Config value 'auth.method': expected one of 'GET' or 'POST', received 'PUT'",
        "Config value 'auth.headers.X-Login': {identity.username} is not available here "
        "(only {login.*})",
        "Config value 'auth.headers.Bad Name': is not a valid header name",
        "Config value 'auth.json.user.name': {account.id} is not available here "
        "(only {login.*})",
    ])


def test_every_cross_key_problem_is_reported_at_once():
    found = problems("""type = "website"
url = "http://portal.example.com/login"
method = "GET"
success_value = 1
failure_status = [200, 401]
token_field = "data.token"
[attributes]
token = "x"
username = "y"
[query]
pw = "{login.password}"
[form]
a = "b"
[json]
c = "d"
""")
    assert [p.partition(":")[0] for p in found] == [
        "Config value 'auth.url'", "Config value 'auth.query.pw'", "Config value 'auth.form'",
        "Config value 'auth.method'", "Config value 'auth.success_value'",
        "Config value 'auth.failure_status'", "Config value 'auth.attributes.token'",
        "Config value 'auth.attributes.username'"], found


@pytest.mark.parametrize(("key", "expected"), [
    ("sucess_field", "success_field"), ("retires", "retries"),
    ("breaker_failure", "breaker_failures"), ("alow_http", "allow_http"), ("jsn", "json"),
])
def test_a_misspelt_key_gets_a_did_you_mean(key, expected):
    found = problems(f'type = "website"\nurl = "https://portal.example.com/login"\n{key} = 1')
    assert found == [f"Config value 'auth.{key}': unknown key (did you mean {expected!r}?)"]


def test_the_old_per_upstream_breaker_keys_are_settings_for_the_backend_breaker():
    auth = make_authenticator('type = "website"\nurl = "https://portal.example.com/login"\n'
                              'breaker_failures = 0\nbreaker_cooldown = 12')
    assert isinstance(auth, WebsiteAuthenticator)
    assert (auth.breaker_failures, auth.breaker_cooldown) == (0, 12.0)
    assert not hasattr(auth.upstream, "breaker")  # one breaker per backend, in the request flow
    found = problems('type = "website"\nurl = "https://portal.example.com/login"\n'
                     'breaker_failures = -1\nbreaker_cooldown = 7200')
    assert found[0] == "Config value 'auth.breaker_failures': must be at least 0, received -1"
    assert found[1].startswith("Config value 'auth.breaker_cooldown': must be at most 3600")
    assert len(found) == 2


def ready(auth: Any) -> None:
    async def run() -> None:
        async with started(auth):
            await auth.ready()
    asyncio.run(run())


@pytest.mark.parametrize("extra", ["", 'ready_path = "/api/users/alice/primary"'])
def test_ready_against_the_running_portal(portal, extra):
    ready(json_login(portal, extra))
    assert len(portal.seen) == (1 if extra else 0)  # without ready_path: a connection only
    if extra:
        assert (portal.seen[0].method, portal.seen[0].raw_path) == (
            "GET", b"/api/users/alice/primary")


@pytest.mark.parametrize("extra", ["", 'ready_path = "/health"'])
def test_ready_raises_against_a_closed_port(extra):
    auth = query_login(f"http://127.0.0.1:{free_port()}", extra)
    with pytest.raises(UpstreamUnavailable, match=r"website login 127.0.0.1: .*ECONNREFUSED"):
        ready(auth)


def test_ready_raises_when_the_ready_path_is_not_served(portal):
    with pytest.raises(UpstreamUnavailable, match="ready_path answered HTTP 404"):
        ready(json_login(portal, 'ready_path = "/health"'))


@pytest.mark.parametrize("extra", ["", 'ready_path = "/api/users/alice/primary"'])
def test_ready_checks_tls_with_the_configured_ca(tls_portal, tls, extra):
    ready(query_login(tls_portal.url, f'ca_file = "{tls.ca}"\n{extra}'))
    wrong_ca = query_login(tls_portal.url, f'ca_file = "{tls.other_ca}"\n{extra}')
    with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        ready(wrong_ca)

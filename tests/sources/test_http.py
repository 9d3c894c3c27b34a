"""The HTTP account source against real APIs on loopback (plain, TLS, mutual TLS, OAuth2)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.breaker import CLOSED, OPEN, CircuitBreaker, CircuitOpen
from bridge.errors import InternalError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.models import Account, Credentials, Identity
from bridge.placeholders import UnsafeValue, Values
from bridge.sources.http import HTTPSource
from tests.gateway import free_port
from tests.upstreams import (
    API_KEY,
    CUSTOMERS,
    INJECTION,
    OAUTH_CLIENT,
    SERVICE_BASIC,
    STATIC_TOKEN,
    PortalState,
    RawServer,
    Server,
    TLSFiles,
    make_source,
    portal_app,
    problems,
    started,
)

FIELDS = """
[fields]
sip_user = "sip.username"
sip_password = "/sip/password"
domain = "domain"
"""
ALICE = [
    {"sip_user": "1001", "sip_password": "Sip-Secret-1001", "domain": "sip.example.com"},
    {"sip_user": "1002", "sip_password": "Sip-Secret-1002", "domain": "sip.example.com"},
]


@pytest.fixture(autouse=True)
def fresh(portal):
    portal.seen.clear()
    portal.tokens_issued = 0
    portal.token_lifetime = 3600


@pytest.fixture(scope="module")
def mtls_portal(tls):
    state = PortalState()
    with Server(portal_app(state), **tls.server_options(require_client_cert=True)) as server:
        state.base_url = server.url.replace("127.0.0.1", "localhost")
        yield state


def source(portal: PortalState, path: str = "/api/users/{identity.username}/accounts",
           extra: str = "", base_dir: Any = None, accounts_path: str = "data.accounts",
           read_timeout: float = 0.5) -> HTTPSource:
    src = make_source(f"""
type = "http"
url = "{portal.base_url}{path}"
accounts_path = "{accounts_path}"
read_timeout = {read_timeout}
{extra}
""", base_dir)
    assert isinstance(src, HTTPSource)
    return src


def flow_breaker(failures: int = 2, cooldown: float = 60) -> CircuitBreaker:
    """The request flow's one breaker for this backend (the source has none of its own)."""
    return CircuitBreaker("account source", failure_threshold=failures, cooldown=cooldown)


def fetch(src: Any, username: str, **attributes: Any) -> list[dict[str, Any]]:
    async def run() -> list[Account]:
        async with started(src):
            return await src.accounts(Identity(username, attributes),
                                      Credentials(username, "user-password-xyz"))
    return [dict(a.fields) for a in asyncio.run(run())]


def test_several_accounts_with_a_field_selection(portal):
    assert fetch(source(portal, extra=FIELDS), "alice") == ALICE
    [seen] = portal.seen
    assert (seen.method, seen.raw_path, seen.query) == ("GET", b"/api/users/alice/accounts", b"")


def test_without_a_selection_the_top_level_scalars_are_the_fields(portal):
    [first, _] = fetch(source(portal), "alice")
    assert first == {"domain": "sip.example.com", "label": "Alice office", "port": 5061}


def test_a_single_object_is_one_account(portal):
    src = source(portal, "/api/users/{identity.username}/primary", extra=FIELDS,
                 accounts_path="/data/account")
    assert fetch(src, "alice") == ALICE[:1]


@pytest.mark.parametrize("user", ["nobody", "ghost", "xml-empty"])  # [], 404, <accounts/>
def test_no_accounts_is_an_empty_list(portal, user):
    src = source(portal, accounts_path="account" if user.startswith("xml") else "data.accounts")
    assert fetch(src, user) == []
    assert len(portal.seen) == 1


def test_xml_accounts_map_like_json(portal):
    assert fetch(source(portal, extra=FIELDS, accounts_path="account"), "xml") == ALICE


@pytest.mark.parametrize(("user", "error", "reason"), [
    ("crash", UpstreamUnavailable, "HTTP 500"),
    ("sleepy", UpstreamTimeout, "ReadTimeout"),
    ("garbage", UpstreamUnavailable, "not valid JSON"),
    ("huge", UpstreamUnavailable, "max_bytes"),          # refused on its Content-Length
    ("huge-chunked", UpstreamUnavailable, "stopped reading"),
    ("doctype", UpstreamUnavailable, "DOCTYPE"),
])
def test_failures_are_outages_without_secrets_in_the_message(portal, user, error, reason):
    src = source(portal, extra='max_bytes = 65536\nretries = 3\n[headers]\n'
                               'X-Session = "{identity.token}"')
    with pytest.raises(error) as info:
        fetch(src, user, token="session-token-secret")
    message = str(info.value)
    assert type(info.value) is error
    assert reason in message and "http source 127.0.0.1" in message
    assert "session-token-secret" not in message and "user-password-xyz" not in message
    assert len(portal.seen) == 1  # retries = 3, but none of these is a connection failure


def test_a_slow_trickle_is_cut_by_the_request_deadline(portal):
    """Each byte comes within read_timeout: only the request's deadline ends it.

    The Provisioner wraps the whole request in asyncio.timeout(deadline); this
    does the same, so the source must give way to it mid-body (the e2e test
    checks the resulting 503 through the gateway).
    """
    src = source(portal, read_timeout=1.0)
    breaker = flow_breaker()

    async def run() -> None:
        async with started(src):
            with breaker.guard():
                async with asyncio.timeout(0.8):
                    await src.accounts(Identity("drip"), Credentials("drip", "pw"))

    start = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(run())
    assert 0.7 < time.monotonic() - start < 1.5
    assert breaker.failures == 0  # cut by our deadline: no verdict on the backend


def test_user_input_never_shapes_path_or_query(portal):
    src = source(portal, "/api/users/{identity.portal_name}/accounts", extra="""
method = "POST"
[query]
login = "{login.username}"
kind = "sip"
[json]
user = "{identity.username}"
customer = "{identity.customer_id}"
""")
    assert fetch(src, INJECTION, portal_name="alice", customer_id=7)  # it has an account
    [seen] = portal.seen
    assert seen.raw_path == b"/api/users/alice/accounts"
    assert seen.params == {"login": [INJECTION], "kind": ["sip"]}
    assert json.loads(seen.body) == {"user": INJECTION, "customer": 7}


def test_a_path_placeholder_is_one_encoded_segment(portal):
    fetch(source(portal), "a/b?x=1&y#z %\\")
    [seen] = portal.seen
    assert seen.raw_path == b"/api/users/a%2Fb%3Fx%3D1%26y%23z%20%25%5C/accounts"


@pytest.mark.parametrize("username", ["..", ".", INJECTION, "../x", "a\\..\\b"])
def test_dot_segments_are_a_backend_fault_not_no_account(portal, username):
    """Data that cannot be placed is a 500 naming the field (not the value), nothing sent."""
    with pytest.raises(UnsafeValue, match=r"\{identity\.username\} cannot be placed in a URL "
                                          r"path segment \(.*'\.\.' segment") as caught:
        fetch(source(portal), username)
    assert isinstance(caught.value, InternalError)
    assert portal.seen == []


@pytest.mark.parametrize(("value", "why"), [("\ud800 lone surrogate", "not valid Unicode"),
                                            ("evil\r\nX-Admin: 1", "a line break")])
def test_values_a_header_cannot_hold_are_a_backend_fault(portal, value, why):
    src = source(portal, extra='[headers]\nX-Name = "{identity.displayName}"')
    with pytest.raises(UnsafeValue, match=why) as caught:
        fetch(src, "alice", displayName=value)
    assert "displayName" in caught.value.detail and value not in caught.value.detail
    assert portal.seen == []


def test_an_unsafe_value_leaves_the_breaker_alone(portal):
    """One user's odd data is a 500 for that user: no verdict, so it never opens the circuit."""
    breaker = CircuitBreaker("http source", failure_threshold=1, cooldown=60)
    results = fetch_each(source(portal), ["..", "..", "alice"], breaker)
    assert [type(r).__name__ for r in results[:2]] == ["UnsafeValue", "UnsafeValue"]
    assert isinstance(results[2], list) and results[2]
    assert breaker.state == CLOSED


def test_a_placeholder_without_value_is_an_internal_error(portal):
    src = source(portal, "/api/users/{identity.customer_id}/accounts")
    with pytest.raises(InternalError, match=r"\{identity\.customer_id\}"):
        fetch(src, "alice")
    assert portal.seen == []


def test_the_login_session_is_carried_in_a_header(portal):
    src = source(portal, "/session/accounts", extra="""
[query]
customer = "{identity.customer_id}"
[headers]
Authorization = "Bearer {identity.token}"
""")
    customer = CUSTOMERS["alice"]
    assert len(fetch(src, "alice", customer_id=customer, token=f"tok-{customer}")) == 2
    # A refused session is this user's 500, not an outage (changed from UpstreamUnavailable).
    with pytest.raises(InternalError, match="HTTP 401"):
        fetch(src, "alice", customer_id=customer, token="tok-stolen")


@pytest.mark.parametrize("auth", ["bearer", "api_key", "basic", "none"])
def test_static_credentials_towards_the_api(portal, auth, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_API_TOKEN", STATIC_TOKEN)
    (tmp_path / "api.key").write_text(API_KEY + "\n")
    tables = {
        "bearer": '[auth]\ntype = "bearer"\ntoken_env = "TEST_API_TOKEN"',
        "api_key": '[auth]\ntype = "api_key"\nheader = "X-API-Key"\nkey_file = "api.key"',
        "basic": f'[auth]\ntype = "basic"\nusername = "{SERVICE_BASIC[0]}"\n'
                 f'password = "{SERVICE_BASIC[1]}"',
        "none": "",
    }
    src = source(portal, "/protected/users/{identity.username}/accounts",
                 extra=tables[auth], base_dir=tmp_path)
    if auth == "none":
        # Our credentials refused: a 4xx is a 500 now (was UpstreamUnavailable), not counted.
        with pytest.raises(InternalError, match="HTTP 401"):
            fetch(src, "alice")
    else:
        assert len(fetch(src, "alice")) == 2


def oauth_source(portal: PortalState, secret: str = OAUTH_CLIENT[1]) -> HTTPSource:
    return source(portal, "/protected/users/{identity.username}/accounts", extra=f"""
[auth]
type = "oauth2"
token_url = "{portal.base_url}/oauth/token"
client_id = "{OAUTH_CLIENT[0]}"
client_secret = "{secret}"
scope = ["accounts:read"]
""")


def fetch_many(src: Any, users: list[str]) -> list[int]:
    async def run() -> list[int]:
        async with started(src):
            results = []
            for user in users:
                accounts = await src.accounts(Identity(user), Credentials(user, "pw"))
                results.append(len(accounts))
            # and concurrently: still one token
            many = await asyncio.gather(*(src.accounts(Identity(u), Credentials(u, "pw"))
                                          for u in users))
            return results + [len(a) for a in many]
    return asyncio.run(run())


def test_oauth2_token_is_fetched_once_and_reused(portal):
    assert fetch_many(oauth_source(portal), ["alice", "bob", "alice"]) == [2, 1, 2, 2, 1, 2]
    assert portal.tokens_issued == 1
    api_calls = [s for s in portal.seen if s.raw_path.startswith(b"/protected/")]
    assert {s.headers["authorization"] for s in api_calls} == {"Bearer svc-token-1"}
    [token_call] = [s for s in portal.seen if s.raw_path == b"/oauth/token"]
    assert "grant_type=client_credentials" in token_call.body.decode()


def test_oauth2_token_is_fetched_again_when_it_expires(portal):
    portal.token_lifetime = 30  # inside authlib's 60 s leeway: expired at once
    fetch_many(oauth_source(portal), ["alice", "bob"])
    assert portal.tokens_issued >= 3


def test_oauth2_refused_client_is_an_outage(portal):
    with pytest.raises(UpstreamUnavailable, match="invalid_client") as info:
        fetch_many(oauth_source(portal, secret="wrong-secret-123"), ["alice"])
    assert "wrong-secret-123" not in str(info.value)
    assert not any(s.raw_path.startswith(b"/protected/") for s in portal.seen)


def tls_source(portal: PortalState, tls: TLSFiles, extra: str) -> HTTPSource:
    return source(portal, extra=extra + FIELDS, base_dir=tls.ca.parent)


def test_mutual_tls_with_a_client_certificate(mtls_portal, tls):
    src = tls_source(mtls_portal, tls, f'ca_file = "{tls.ca.name}"\n'
                     f'client_cert = "{tls.client_cert.name}"\n'
                     f'client_key = "{tls.client_key.name}"')
    assert fetch(src, "alice") == ALICE
    assert len(mtls_portal.seen) == 1


def test_tls_without_client_certificate_is_refused(mtls_portal, tls):
    mtls_portal.seen.clear()
    src = tls_source(mtls_portal, tls, f'ca_file = "{tls.ca.name}"\nretries = 0')
    with pytest.raises(UpstreamUnavailable):
        fetch(src, "alice")
    assert mtls_portal.seen == []


def test_tls_server_not_signed_by_the_configured_ca_is_refused(mtls_portal, tls):
    src = tls_source(mtls_portal, tls, f'ca_file = "{tls.other_ca.name}"\n'
                     f'client_cert = "{tls.client_cert.name}"\n'
                     f'client_key = "{tls.client_key.name}"\nretries = 0')
    with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(src, "alice")


def test_without_ca_file_the_system_trust_store_is_used(mtls_portal, tls, monkeypatch):
    """A root installed in the OS (here: OpenSSL's SSL_CERT_FILE) works, as for LDAP;
    the certifi bundle used before did not know it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    src = tls_source(mtls_portal, tls, f'client_cert = "{tls.client_cert.name}"\n'
                     f'client_key = "{tls.client_key.name}"\nretries = 0')
    assert fetch(src, "alice") == ALICE


def redirect_source(portal: PortalState, to: str, follow: bool = True) -> HTTPSource:
    return source(portal, "/redirect", extra=f"""
follow_redirects = {str(follow).lower()}
[query]
code = "302"
to = "{to}"
""" + FIELDS)


def test_redirect_to_the_same_host_is_followed(portal):
    assert fetch(redirect_source(portal, "/api/users/alice/accounts"), "alice") == ALICE
    assert portal.paths() == [b"/redirect", b"/api/users/alice/accounts"]


@pytest.mark.parametrize("host", ["localhost:PORT", "127.0.0.1:OTHER"])
def test_redirect_to_another_host_is_refused(portal, host):
    port = portal.base_url.rsplit(":", 1)[1]
    target = "http://" + host.replace("PORT", port).replace("OTHER", str(free_port()))
    with pytest.raises(UpstreamUnavailable, match="another host") as info:
        fetch(redirect_source(portal, target + "/api/users/alice/accounts?k=secret"), "alice")
    assert "secret" not in str(info.value)
    assert portal.paths() == [b"/redirect"]  # localhost:PORT is this very server: not asked


def test_redirects_are_not_followed_by_default(portal):
    with pytest.raises(UpstreamUnavailable, match="HTTP 302"):
        fetch(redirect_source(portal, "/api/users/alice/accounts", follow=False), "alice")
    assert portal.paths() == [b"/redirect"]


def test_breaker_opens_on_a_dead_port_and_closes_after_a_probe(caplog):
    port = free_port()  # nothing listens here yet
    state = PortalState(base_url=f"http://127.0.0.1:{port}")
    src = source(state, extra="retries = 1\n" + FIELDS)
    breaker = flow_breaker(2, 0.5)
    timings: dict[str, float] = {}

    async def one() -> list[Account]:
        with breaker.guard():
            return await src.accounts(Identity("alice"), Credentials("alice", "pw"))

    async def run() -> None:
        async with started(src):
            for _ in range(2):
                with pytest.raises(UpstreamUnavailable, match="ConnectError"):
                    await one()
            assert breaker.state == OPEN
            with Server(portal_app(state), port=port):
                start = time.perf_counter()
                with pytest.raises(CircuitOpen):
                    await one()
                timings["open"] = time.perf_counter() - start
                assert state.seen == []  # the upstream is back, but nobody asked it
                await asyncio.sleep(0.5)
                accounts = await one()
                assert [dict(a.fields) for a in accounts] == ALICE
                assert breaker.state == CLOSED
                assert len(state.seen) == 1

    with caplog.at_level(logging.INFO, logger="bridge"):
        asyncio.run(run())
    retries = [r for r in caplog.records if "retry 1 of 1" in r.getMessage()]
    assert len(retries) == 2  # one retry per failed call, logged by name and class only
    assert all("ConnectError" in r.getMessage() for r in retries)
    assert timings["open"] < 0.005
    print(f"open breaker answered in {timings['open'] * 1e6:.0f} µs")


@pytest.mark.parametrize(("text", "expected"), [
    ('url = "https://b.example.com/{account.id}"', "not available here"),
    ('url = "https://b.example.com/x"\n[auth]\ntype = "magic"', "expected one of"),
    ('url = "https://b.example.com/x"\n[auth]\ntype = "bearer"', "token_env"),
    ('url = "https://b.example.com/x"\n[auth]\ntype = "bearer"\ntoken_env = "NOPE_UNSET_1"',
     "is not set"),
    ('url = "https://b.example.com/x"\n[auth]\ntype = "oauth2"\n'
     'token_url = "http://idp.example.com/token"\nclient_id = "c"\nclient_secret = "s"',
     "unencrypted"),
    ('url = "https://b.example.com/x"\nnot_found_status = [200]', "3xx or 4xx"),
    (f'url = "https://b.example.com/x"\nclient_key = "{__file__}"', "needs client_cert"),
    ('url = "https://b.example.com/x"\n[fields]\nuser = "/a/~2"', "'~'"),
])
def test_source_configuration_problems(text, expected):
    found = problems('type = "http"\n' + text, "source")
    assert any(expected in p and p.startswith("Config value 'source.") for p in found), found


def fetch_each(src: Any, users: list[str], breaker: CircuitBreaker
               ) -> list[list[Account] | Exception]:
    """One started source (one client), one user after the other, each under `breaker`."""
    async def run() -> list[list[Account] | Exception]:
        results: list[list[Account] | Exception] = []
        async with started(src):
            for user in users:
                try:
                    with breaker.guard():
                        results.append(await src.accounts(Identity(user),
                                                          Credentials(user, "pw")))
                except (UpstreamError, InternalError) as exc:
                    results.append(exc)
        return results
    return asyncio.run(run())


def test_a_4xx_for_one_user_is_a_500_and_never_opens_the_breaker(portal):
    src, breaker = source(portal, extra=FIELDS), flow_breaker()
    *refused, alice = fetch_each(src, ["refused"] * 4 + ["alice"], breaker)
    assert all(type(r) is InternalError for r in refused)  # 500 for that user
    assert all("HTTP 400" in str(r) and "'refused'" in str(r) for r in refused)
    assert [dict(a.fields) for a in alice] == ALICE  # type: ignore[union-attr]
    assert breaker.state == CLOSED and breaker.failures == 0
    assert len(portal.seen) == 5


def test_a_malformed_answer_for_one_user_does_not_open_the_breaker(portal):
    src, breaker = source(portal, extra="max_bytes = 65536\n" + FIELDS), flow_breaker()
    *garbage, alice = fetch_each(src, ["garbage", "doctype", "garbage", "huge", "alice"],
                                 breaker)
    assert all(type(g) is UpstreamUnavailable for g in garbage)  # 503 each, not CircuitOpen
    assert [dict(a.fields) for a in alice] == ALICE  # type: ignore[union-attr]
    assert breaker.state == CLOSED and breaker.failures == 0


def test_5xx_and_timeouts_still_open_the_breaker(portal):
    src, breaker = source(portal, extra=FIELDS), flow_breaker()
    crash, sleepy, alice = fetch_each(src, ["crash", "sleepy", "alice"], breaker)
    assert type(crash) is UpstreamUnavailable and type(sleepy) is UpstreamTimeout
    assert isinstance(alice, CircuitOpen) and breaker.state == OPEN
    assert len(portal.seen) == 2


def oauth_source_at(base_url: str, token_url: str, extra: str = "") -> HTTPSource:
    return source(PortalState(base_url=base_url), "/protected/users/{identity.username}/accounts",
                  extra=f"""{extra}
[auth]
type = "oauth2"
token_url = "{token_url}"
client_id = "{OAUTH_CLIENT[0]}"
client_secret = "{OAUTH_CLIENT[1]}"
""")


def test_a_dead_token_endpoint_opens_the_breaker_and_recovers_through_a_probe():
    port = free_port()  # the API and its token endpoint, not listening yet
    state = PortalState(base_url=f"http://127.0.0.1:{port}")
    src = oauth_source_at(state.base_url, f"{state.base_url}/oauth/token")
    breaker = flow_breaker(2, 0.5)

    async def one() -> list[Account]:
        with breaker.guard():
            return await src.accounts(Identity("alice"), Credentials("alice", "pw"))

    async def run() -> float:
        async with started(src):
            for _ in range(2):
                with pytest.raises(UpstreamUnavailable,
                                   match=r"token endpoint: ConnectError \(ECONNREFUSED\)"):
                    await one()
            assert breaker.state == OPEN
            with Server(portal_app(state), port=port):
                start = time.perf_counter()
                with pytest.raises(CircuitOpen):
                    await one()
                elapsed = time.perf_counter() - start
                assert state.seen == []  # neither the token endpoint nor the API was asked
                await asyncio.sleep(0.5)
                assert len(await one()) == 2  # the token fetch was the probe
                assert breaker.state == CLOSED
                assert state.paths() == [b"/oauth/token", b"/protected/users/alice/accounts"]
            return elapsed

    assert asyncio.run(run()) < 0.005


def test_requests_queued_behind_a_failed_token_fetch_share_its_failure(portal):
    """A token endpoint that never answers: one fetch, not one per waiting request."""
    with RawServer(lambda head: None) as silent:
        src = oauth_source_at(portal.base_url, f"{silent.url}/oauth/token",
                              "retries = 0")

        async def run() -> list[BaseException | list[Account]]:
            async with started(src):
                return await asyncio.gather(
                    *(src.accounts(Identity("alice"), Credentials("alice", "pw"))
                      for _ in range(8)), return_exceptions=True)

        start = time.monotonic()
        results = asyncio.run(run())
        elapsed = time.monotonic() - start
        assert all(type(r) is UpstreamTimeout and "token endpoint: ReadTimeout" in str(r)
                   for r in results), results
        assert len(silent.heads) == 1  # one fetch for all eight
        assert elapsed < 1.5  # read_timeout = 0.5: one wait, not eight in turn
        assert portal.seen == []


def test_every_problem_of_the_table_is_reported_at_once_with_its_key():
    found = problems("""type = "http"
url = "https://b.example.com/{account.id}"
accounts_path = "a..b"
not_found_status = [200]
max_bytes = 10
[fields]
user = "/a/~2"
[query]
n = 1.5
[auth]
type = "api_key"
header = "Bad Header"
""", "source")
    assert sorted(p.partition(":")[0] for p in found) == sorted([
        "Config value 'source.url'", "Config value 'source.accounts_path'",
        "Config value 'source.not_found_status'", "Config value 'source.max_bytes'",
        "Config value 'source.fields.user'", "Config value 'source.query.n'",
        "Config value 'source.auth.header'"]), found


@pytest.mark.parametrize(("table", "key", "expected"), [
    ("", "acounts_path", "accounts_path"),
    ("", "not_found_statuses", "not_found_status"),
    ('[auth]\ntype = "bearer"\n', "tokn", "token"),
    ('[auth]\ntype = "oauth2"\ntoken_url = "https://idp.example.com/t"\nclient_id = "c"\n'
     'client_secret = "s"\n', "client_secret_evn", "client_secret_env"),
])
def test_a_misspelt_key_gets_a_did_you_mean(table, key, expected):
    where = "source.auth" if table else "source"
    text = f'type = "http"\nurl = "https://b.example.com/x"\n{table}{key} = "x"\n'
    found = [p for p in problems(text, "source") if "unknown key" in p]
    assert found == [f"Config value '{where}.{key}': unknown key (did you mean {expected!r}?)"]


@pytest.mark.parametrize("table", [
    '[auth]\ntype = "oauth2"\ntoken_url = "https://idp.example.com/t"\nclient_id = "c"\n'
    'client_secret = 918273645',
    '[auth]\ntype = "api_key"\nkey = 918273645',
    '[auth]\ntype = "bearer"\ntoken = 918273645.5',
    '[auth]\ntype = "basic"\nusername = "svc"\npassword = [918273645]',
])
def test_a_secret_given_as_a_number_is_never_echoed(table):
    found = problems(f'type = "http"\nurl = "https://b.example.com/x"\n{table}', "source")
    assert len(found) == 1 and found[0].startswith("Config value 'source.auth."), found
    assert "expected a string (the value is not shown)" in found[0]
    assert "918273645" not in found[0]
    src = make_source('type = "http"\nurl = "https://b.example.com/x"\n[auth]\n'
                      'type = "api_key"\nkey = "k-918273645"')
    assert "918273645" not in repr(src.config) + str(src.config)


def test_a_token_given_instead_of_the_auth_table_is_not_echoed():
    found = problems('type = "http"\nurl = "https://b.example.com/x"\nauth = "tok-918273645"',
                     "source")
    assert found == ["Config value 'source.auth': expected a table with a type "
                     "(the value is not shown)"]


def test_the_old_per_upstream_breaker_keys_are_settings_for_the_backend_breaker():
    src = source(PortalState(base_url="https://b.example.com"),
                 extra="breaker_failures = 50\nbreaker_cooldown = 0.5")
    assert (src.breaker_failures, src.breaker_cooldown) == (50, 0.5)
    assert not hasattr(src.upstream, "breaker")
    plain = source(PortalState(base_url="https://b.example.com"))
    assert (plain.breaker_failures, plain.breaker_cooldown) == (None, None)


def ready(src: Any) -> None:
    async def run() -> None:
        async with started(src):
            await src.ready()
    asyncio.run(run())


@pytest.mark.parametrize("extra", ["", 'ready_path = "/api/users/alice/primary?probe=1"'])
def test_ready_against_the_running_api(portal, extra):
    ready(oauth_source(portal) if not extra else source(portal, extra=extra))
    assert portal.tokens_issued == 0  # a reachability check, not a login
    if extra:
        [seen] = portal.seen
        assert (seen.raw_path, seen.query) == (b"/api/users/alice/primary", b"probe=1")
    else:
        assert portal.seen == []


@pytest.mark.parametrize("extra", ["", 'ready_path = "/health"'])
def test_ready_raises_against_a_closed_port(extra):
    src = source(PortalState(base_url=f"http://127.0.0.1:{free_port()}"), extra=extra)
    with pytest.raises(UpstreamUnavailable, match=r"http source 127.0.0.1: .*ECONNREFUSED"):
        ready(src)


def test_ready_times_out_quickly_on_a_silent_upstream():
    with RawServer(lambda head: None) as silent:
        src = source(PortalState(base_url=silent.url), extra='ready_path = "/health"',
                     read_timeout=0.3)
        with pytest.raises(UpstreamTimeout, match="ReadTimeout"):
            ready(src)
        assert len(silent.heads) == 1  # asked once, never retried


class _PassThrough:
    """An httpx auth flow that changes nothing: forces a call through httpx."""

    requires_request_body = False
    requires_response_body = False

    def auth_flow(self, request: Any) -> Any:
        yield request

    async def async_auth_flow(self, request: Any) -> Any:
        yield request

    def sync_auth_flow(self, request: Any) -> Any:
        yield request


@pytest.mark.parametrize("body", ["", '\n[json]\nuser = "{identity.username}"\nn = 1\n'])
def test_a_plain_call_sends_what_httpx_would(portal, body):
    """Plain calls skip httpx (issue 16): the upstream must receive the same bytes either way."""
    import httpx

    from bridge.upstream.templates import Values

    extra = ('method = "POST"\n' if body else "") + """
[query]
login = "{identity.username}"
[headers]
X-Customer = "{identity.username} &=?"
""" + body
    src = source(portal, extra=extra)
    identity = Identity("al ice+&=?ü/x", {})

    async def both() -> list[Any]:
        async with started(src):
            assert src.upstream._direct  # the plain path is the one taken below
            prepared = src.request.prepare(Values(Credentials("u", "p"), identity))
            direct = await src.upstream.call(prepared, lambda r: r)
            flow = type("Flow", (_PassThrough, httpx.Auth), {})()
            through_httpx = await src.upstream.call(prepared, lambda r: r, flow)
            return [direct, through_httpx]

    direct, through_httpx = asyncio.run(both())
    a, b = portal.seen
    assert (a.method, a.raw_path, a.query, a.body) == (b.method, b.raw_path, b.query, b.body)
    assert a.headers == b.headers
    assert b"al%20ice%2B%26%3D%3F%C3%BC%2Fx" in a.raw_path
    assert a.headers["x-customer"].endswith(" &=?")
    assert (direct.status, direct.content) == (through_httpx.status, through_httpx.content)
    assert direct.headers.get("content-type") == through_httpx.headers.get("content-type")


# -- the request URL, built as a string (issue 16) ----------------------------------------

URL_SHAPES = [  # (url, [query]): plain ones are sent as built, the others through httpx.URL
    ("http://127.0.0.1:8080/accounts/{identity.username}", {}),
    ("https://billing.example.com/v1/c/{identity.username}/lines?format=json&x=1",
     {"login": "{identity.username}", "n": "pre-{identity.username}-post", "k y": "1"}),
    ("http://[::1]:9000/{identity.username}x{identity.username}", {"a": "{identity.username}"}),
    ("https://Billing.Example.COM:443/a b/ü/{identity.username}", {}),   # httpx rewrites these
    ("http://h.example/%7e/{identity.username}?q=%zz", {"p": "100%{identity.username}"}),
    ("http://h.example/a/./b/../{identity.username}", {}),
    ("http://h.example", {}),
    ("http://h.example/", {"only": "{identity.username}"}),
]


@pytest.mark.parametrize(("url", "query"), URL_SHAPES)
@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in (".", "..")))
@settings(max_examples=60, deadline=None)
def test_the_url_string_is_what_httpx_would_send(url: str, query: dict[str, str],
                                                 name: str) -> None:
    """Whatever the typed name, the URL is what the same parts gave through httpx.URL before
    (str of it is what the direct path sends); only the URL object per request is gone."""
    import httpx

    from bridge.placeholders import QUERY, path_segment
    from bridge.upstream.templates import RequestTemplate, URLTemplate, compile_table

    scopes = ("login", "identity")
    compiled, errors = compile_table(dict(query), scopes)
    assert not errors
    template = RequestTemplate("GET", URLTemplate.parse(url, scopes), compiled)
    lookup = Values(Credentials("u", "p"), Identity(name, {})).lookup
    prepared = template.prepare(Values(Credentials("u", "p"), Identity(name, {})))
    built = template.url._join(
        "/".join(path_segment(s, lookup) for s in template.url.segments),
        "&".join(f"{quote(k, safe='')}={t.render(lookup, QUERY)}" for k, t in compiled))
    assert prepared.url == str(httpx.URL(built))
    assert httpx.URL(prepared.url) == httpx.URL(built)  # the httpx path: the same request


def test_which_url_templates_are_sent_as_built() -> None:
    from bridge.upstream.templates import RequestTemplate, URLTemplate, compile_table

    scopes = ("login", "identity")
    plain = []
    for url, query in URL_SHAPES:
        compiled, _ = compile_table(dict(query), scopes)
        plain.append(RequestTemplate("GET", URLTemplate.parse(url, scopes), compiled).url.plain)
    assert plain == [True, True, True, False, False, False, True, True]


@pytest.mark.parametrize("raw", [
    [], [(b"Content-Type", b"application/json")], [(b"x-other", b"y")],
    [(b"content-type", b"a"), (b"CONTENT-TYPE", b"b")],                # joined, as httpx does
    [(b"content-type", "text/xml; charset=\u00fc".encode())],          # utf-8
    [(b"content-type", b"x\xe9")],                                     # latin-1
    [(b"content-type", b" spaced ")],
])
def test_a_direct_reply_reads_headers_as_httpx_would(raw: list[tuple[bytes, bytes]]) -> None:
    """The direct path keeps the received header pairs and makes no httpx.Headers unless
    asked: the content type (and the headers when asked) are httpx's all the same."""
    import httpx

    from bridge.upstream.client import Reply

    reply = Reply("portal", 200, tuple(raw), b"")
    assert "headers" not in reply.__dict__  # nothing built yet
    assert reply.content_type == httpx.Headers(raw).get("content-type", "")
    assert reply.headers == httpx.Headers(raw)
    assert reply.headers.get_list("content-type") == httpx.Headers(raw).get_list("content-type")

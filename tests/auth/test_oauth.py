"""The oauth2 authenticator against a real OpenID Connect provider on loopback (tests/idp.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from bridge.auth.oauth import OAuthAuthenticator
from bridge.breaker import CLOSED, OPEN, CircuitBreaker, CircuitOpen, is_answered
from bridge.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.models import Credentials
from bridge.upstream.oidc import lifetime
from tests.gateway import free_port
from tests.idp import (
    CLIENT,
    NAME,
    PASSWORD,
    POST_CLIENT,
    PUBLIC_CLIENT,
    IdPState,
    idp_app,
    impostor,
    new_key,
)
from tests.upstreams import RawServer, Server, leaks, make_authenticator, misbehave, problems

SECRETS = (PASSWORD, CLIENT[1], POST_CLIENT[1])


@pytest.fixture(scope="module")
def idp() -> Iterator[IdPState]:
    state = IdPState()
    with Server(idp_app(state)) as server:
        state.issuer = server.url
        yield state


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "idp" in request.fixturenames:
        state: IdPState = request.getfixturevalue("idp")
        state.behaviour = "ok"
        state.seen.clear()


def oauth(issuer: str, extra: str = "", client: tuple[str, str] = CLIENT) -> OAuthAuthenticator:
    auth = make_authenticator(f"""
type = "oauth2"
issuer = "{issuer}"
client_id = "{client[0]}"
client_secret = "{client[1]}"
read_timeout = 0.5
retries = 0
groups_claims = ["groups", "realm_access.roles"]
{extra}
[attributes]
displayName = "name"
ext = "ext"
""")
    assert isinstance(auth, OAuthAuthenticator)
    return auth


async def login(auth: OAuthAuthenticator, user: str, password: str = PASSWORD) -> Any:
    await auth.start()
    try:
        return await auth.authenticate(Credentials(user, password))
    finally:
        await auth.close()


def assert_no_secrets(*texts: str, extra: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in filter(None, (*SECRETS, *extra)):
            assert not leaks(text, secret), (secret, text)


# -- the password grant ----------------------------------------------------------------------


async def test_password_grant_with_id_token(idp: IdPState) -> None:
    identity = await login(oauth(idp.issuer), "alice")
    assert identity.username == "alice"
    assert dict(identity.attributes) == {"displayName": "Alice Liddell", "ext": "1001"}
    assert identity.groups == {"voip", "staff", "phone-users"}  # groups + realm_access.roles
    _, headers, form = next(s for s in idp.seen if s[0] == "/token")
    assert form == {"grant_type": "password", "username": "alice", "password": PASSWORD,
                    "scope": "openid"}
    assert headers["authorization"] == httpx.BasicAuth(*CLIENT)._auth_header


async def test_client_secret_post_and_token_params(idp: IdPState) -> None:
    auth = oauth(idp.issuer, 'token_auth_method = "client_secret_post"\nscope = ["openid", '
                 '"profile"]\n[token_params]\naudience = "https://sip.example.com"',
                 client=POST_CLIENT)
    assert (await login(auth, "alice")).username == "alice"
    _, headers, form = next(s for s in idp.seen if s[0] == "/token")
    assert "authorization" not in headers
    assert form["client_id"] == POST_CLIENT[0] and form["client_secret"] == POST_CLIENT[1]
    assert form["scope"] == "openid profile"
    assert form["audience"] == "https://sip.example.com"


async def test_a_public_client_sends_only_its_id(idp: IdPState) -> None:
    auth = make_authenticator(f"""
type = "oauth2"
issuer = "{idp.issuer}"
client_id = "{PUBLIC_CLIENT}"
token_auth_method = "none"
""")
    assert (await login(auth, "alice")).username == "alice"
    _, headers, form = next(s for s in idp.seen if s[0] == "/token")
    assert "authorization" not in headers and "client_secret" not in form
    assert form["client_id"] == PUBLIC_CLIENT


async def test_non_ascii_and_xml_specials_reach_the_identity_intact(idp: IdPState) -> None:
    identity = await login(oauth(idp.issuer), "émile")
    assert identity.username == "émile"
    assert identity.attributes["displayName"] == NAME
    assert "<admins> & co" in identity.groups
    _, _, form = next(s for s in idp.seen if s[0] == "/token")
    assert form["username"] == "émile"


@pytest.mark.parametrize("user,password", [("alice", "not-her-Pw-Qz81"),
                                           ("mallory", PASSWORD), ("alice", "pässwörd&x=1")])
async def test_wrong_password_or_unknown_user_is_invalid_credentials(idp: IdPState, user: str,
                                                                     password: str) -> None:
    assert await login(oauth(idp.issuer), user, password) is None


@pytest.mark.parametrize("client", [("nobody", "Zq81-xy7Kp"), (CLIENT[0], "Wr0ng-Kd93pq")])
async def test_unknown_client_is_a_loud_counted_outage(idp: IdPState, client: tuple[str, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "bridge"), pytest.raises(UpstreamUnavailable) as info:
        await login(oauth(idp.issuer, client=client), "alice")
    assert "invalid_client" in info.value.detail and "configuration fault" in info.value.detail
    assert not is_answered(info.value)  # the breaker counts it: it is true for every user
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "client_secret" in errors[0].getMessage()
    assert_no_secrets(caplog.text, info.value.detail, extra=(client[1],))


@pytest.mark.parametrize("user,reason", [
    ("expired", "expired"), ("future", "not yet valid"), ("wrong-iss", "iss"),
    ("wrong-aud", "aud"), ("alg-none", "alg"), ("bad-sig", "signature"),
    ("unknown-kid", "does not publish"),
])
async def test_an_id_token_that_does_not_verify_is_a_503_for_this_request(
        idp: IdPState, user: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "bridge"), pytest.raises(UpstreamUnavailable) as info:
        await login(oauth(idp.issuer), user)
    assert "ID token refused" in info.value.detail and reason in info.value.detail
    assert is_answered(info.value)  # the provider answered: no breaker trips on one token
    assert_no_secrets(caplog.text, info.value.detail)


async def test_hs256_id_tokens_only_when_configured(idp: IdPState) -> None:
    """An HS256 token made with the client secret (what OIDC specifies for HS*)."""
    from joserfc.jwk import OctKey

    key = OctKey.import_key(CLIENT[1])
    token = idp.mint({"aud": CLIENT[0], "sub": "sub-alice", "preferred_username": "alice"},
                     key, "HS256")
    auth = oauth(idp.issuer)
    await auth.start()
    try:
        with pytest.raises(Exception, match="alg"):
            await auth.provider.verify(token, algorithms=auth.settings.algorithms,
                                       audiences=[CLIENT[0]], leeway=0)
        claims = await auth.provider.verify(token, algorithms=["HS256"], audiences=[CLIENT[0]],
                                            leeway=0, hmac_key=CLIENT[1])
        assert claims["preferred_username"] == "alice"
    finally:
        await auth.close()


async def test_userinfo_instead_of_the_id_token(idp: IdPState) -> None:
    identity = await login(oauth(idp.issuer, "id_token = false\nuserinfo = true"), "émile")
    assert identity.username == "émile" and identity.attributes["displayName"] == NAME
    paths = [s[0] for s in idp.seen]
    assert "/userinfo" in paths and "/jwks" not in paths
    _, headers, _ = next(s for s in idp.seen if s[0] == "/userinfo")
    assert headers["authorization"].startswith("Bearer ")


async def test_id_token_and_userinfo_together(idp: IdPState) -> None:
    identity = await login(oauth(idp.issuer, "userinfo = true\nid_token = true"), "alice")
    assert identity.groups == {"voip", "staff", "phone-users"}
    assert {s[0] for s in idp.seen} >= {"/token", "/userinfo"}


async def test_a_missing_username_claim_is_the_name_typed_in_password_mode(idp: IdPState
                                                                           ) -> None:
    assert (await login(oauth(idp.issuer), "no-username")).username == "no-username"


# -- token as password -----------------------------------------------------------------------


def introspection(idp: IdPState, extra: str = "") -> OAuthAuthenticator:
    return oauth(idp.issuer, 'mode = "introspection"\n' + extra)


async def test_introspection_active_token(idp: IdPState) -> None:
    token = idp.issue("émile")
    identity = await login(introspection(idp, 'required_scope = ["phone"]\n'
                                         f'allowed_clients = ["{CLIENT[0]}"]'), "émile", token)
    assert identity.username == "émile" and identity.attributes["displayName"] == NAME
    _, headers, form = next(s for s in idp.seen if s[0] == "/introspect")
    assert form["token"] == token and "authorization" in headers


@pytest.mark.parametrize("case", ["unknown", "expired", "sloppy-expired", "other-client",
                                  "no-scope", "other-user"])
async def test_introspection_refuses(idp: IdPState, case: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    token = {"unknown": "nvr-1ss-Tk-4471",
             "expired": idp.issue("alice", age=600),
             "sloppy-expired": idp.issue("alice", age=600, sloppy=True),  # says active
             "other-client": idp.issue("alice", client=POST_CLIENT[0]),
             "no-scope": idp.issue("alice", scope="openid"),
             "other-user": idp.issue("émile")}[case]
    auth = introspection(idp, f'required_scope = ["phone"]\nallowed_clients = ["{CLIENT[0]}"]')
    with caplog.at_level(logging.DEBUG, "bridge"):
        assert await login(auth, "alice", token) is None
    assert_no_secrets(caplog.text, extra=(token,))


async def test_introspection_with_a_wrong_client_secret_is_a_loud_outage(
        idp: IdPState, caplog: pytest.LogCaptureFixture) -> None:
    token = idp.issue("alice")
    auth = oauth(idp.issuer, 'mode = "introspection"', client=(CLIENT[0], "Wr0ng-Kd93pq"))
    with caplog.at_level(logging.INFO, "bridge"), pytest.raises(UpstreamUnavailable) as info:
        await login(auth, "alice", token)
    assert not is_answered(info.value) and "configuration fault" in info.value.detail
    assert_no_secrets(caplog.text, info.value.detail, extra=(token,))


def jwt_mode(idp: IdPState, extra: str = "") -> OAuthAuthenticator:
    return oauth(idp.issuer, 'mode = "jwt"\naudience = ["sip-api"]\n' + extra)


def access_token(idp: IdPState, user: str = "alice", **claims: Any) -> str:
    return idp.mint({"aud": "sip-api", "sub": f"sub-{user}", "preferred_username": user,
                     "name": "Alice Liddell", "groups": ["voip"], "scp": ["phone", "openid"],
                     "azp": CLIENT[0], **claims})


async def test_jwt_token_verified_locally(idp: IdPState) -> None:
    token = access_token(idp)
    auth = jwt_mode(idp, f'required_scope = ["phone"]\nallowed_clients = ["{CLIENT[0]}"]')
    identity = await login(auth, "alice", token)
    assert identity.username == "alice" and identity.groups == {"voip"}
    assert [s[0] for s in idp.seen] == []  # nothing but discovery and JWKS (not recorded)


def forged(idp: IdPState, case: str) -> str:
    import time

    now = int(time.time())
    if case == "expired":
        return access_token(idp, iat=now - 7200, exp=now - 3600)
    if case == "not-yet-valid":
        return access_token(idp, nbf=now + 3600)
    if case == "wrong-issuer":
        return access_token(idp, iss="https://evil.example.org")
    if case == "wrong-audience":
        return access_token(idp, aud="another-api")
    if case == "alg-none":
        return idp.mint({"aud": "sip-api", "preferred_username": "alice"}, alg="none")
    if case == "wrongly-signed":
        return idp.mint({"aud": "sip-api", "preferred_username": "alice"},
                        impostor(idp.signing, "RS256"))
    if case == "hs256-with-the-public-key":  # the classic algorithm confusion
        return idp.forge_hs256({"aud": "sip-api", "preferred_username": "alice"},
                               idp.signing.as_pem(private=False))
    if case == "no-scope":
        return access_token(idp, scp=["openid"])
    if case == "other-user":
        return access_token(idp, user="émile")
    return "n0t-a-Jwt-Pw9z"


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "wrong-issuer", "wrong-audience",
                                  "alg-none", "wrongly-signed", "hs256-with-the-public-key",
                                  "no-scope", "other-user", "garbage"])
async def test_jwt_refuses(idp: IdPState, case: str, caplog: pytest.LogCaptureFixture) -> None:
    token = forged(idp, case)
    with caplog.at_level(logging.DEBUG, "bridge"):
        assert await login(jwt_mode(idp, 'required_scope = ["phone"]'), "alice", token) is None
    assert "refused" in caplog.text
    assert_no_secrets(caplog.text, extra=(token, token.split(".")[-1]))


# -- discovery and JWKS: caching, rotation, rate limit ----------------------------------------


def test_cache_lifetimes_are_bounded() -> None:
    def of(value: str | None) -> float:
        return lifetime(httpx.Headers({"Cache-Control": value} if value is not None else {}))

    assert of(None) == 3600 and of("public") == 3600 and of("max-age=abc") == 3600
    assert of("max-age=7200") == 7200 and of('public, max-age="900"') == 900
    assert of("max-age=5") == 300 and of("no-store") == 300 and of("no-cache") == 300
    assert of("max-age=9999999") == 86400


async def test_concurrent_first_logins_fetch_each_document_once(idp: IdPState) -> None:
    before = dict(idp.fetches)
    auth = oauth(idp.issuer)
    await auth.start()
    try:
        results = await asyncio.gather(*(auth.authenticate(Credentials("alice", PASSWORD))
                                         for _ in range(8)))
    finally:
        await auth.close()
    assert all(r is not None and r.username == "alice" for r in results)
    assert idp.fetches["discovery"] - before["discovery"] == 1
    assert idp.fetches["jwks"] - before["jwks"] == 1


async def test_documents_expire_with_their_max_age_and_survive_a_failed_refresh(
        idp: IdPState, caplog: pytest.LogCaptureFixture) -> None:
    idp.max_age = 600
    now = [1000.0]
    auth = jwt_mode(idp)
    for document in (auth.provider.discovery, auth.provider.jwks):
        document.clock = lambda: now[0]
    await auth.start()
    try:
        async def ok() -> bool:
            return await auth.authenticate(Credentials("alice", access_token(idp))) is not None

        before = idp.fetches["jwks"]
        assert await ok() and await ok()
        assert idp.fetches["jwks"] == before + 1
        now[0] += 599
        assert await ok() and idp.fetches["jwks"] == before + 1
        now[0] += 2  # past max-age: fetched again
        assert await ok() and idp.fetches["jwks"] == before + 2
        now[0] += 601
        idp.behaviour = "error"  # the refresh fails: the copy serves a while longer
        with caplog.at_level(logging.WARNING, "bridge"):
            assert await ok()
        assert "keeping the copy" in caplog.text
    finally:
        idp.max_age = 3600
        await auth.close()


async def test_rotated_key_is_picked_up_once_and_refreshes_are_rate_limited() -> None:
    state = IdPState()
    with Server(idp_app(state)) as server:
        state.issuer = server.url
        auth = oauth(server.url, 'mode = "jwt"\naudience = ["sip-api"]\nrefresh_interval = 1')
        await auth.start()
        try:
            async def verify(token: str) -> bool:
                return await auth.authenticate(Credentials("alice", token)) is not None

            assert await verify(access_token(state))
            assert state.fetches["jwks"] == 1
            await asyncio.sleep(1.05)  # a refresh is allowed again
            state.rotate("ES256")  # a new key, ES256, and a new kid
            assert await verify(access_token(state))
            assert state.fetches["jwks"] == 2  # picked up with one fetch
            assert await verify(access_token(state)) and state.fetches["jwks"] == 2

            def made_up() -> str:
                return state.mint({"aud": "sip-api", "preferred_username": "alice"},
                                  new_key(f"attacker-{free_port()}", "ES256"))

            results = await asyncio.gather(*(verify(made_up()) for _ in range(10)))
            assert results == [False] * 10
            assert state.fetches["jwks"] == 2  # within refresh_interval: no fetch at all
            await asyncio.sleep(1.05)
            results = await asyncio.gather(*(verify(made_up()) for _ in range(10)))
            assert results == [False] * 10
            assert state.fetches["jwks"] == 3  # one fetch for ten unknown kids
        finally:
            await auth.close()


# -- outages: 5xx path, breaker, recovery ------------------------------------------------------


async def test_provider_down_then_back_without_a_restart() -> None:
    port = free_port()
    now = [0.0]
    breaker = CircuitBreaker("oauth2", failure_threshold=2, cooldown=5, clock=lambda: now[0])
    auth = oauth(f"http://127.0.0.1:{port}")
    await auth.start()
    try:
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable), breaker.guard():
                await auth.authenticate(Credentials("alice", PASSWORD))
        assert breaker.state == OPEN
        with pytest.raises(CircuitOpen), breaker.guard():
            pass
        state = IdPState()
        with Server(idp_app(state), port=port) as server:
            state.issuer = server.url
            now[0] += 6  # the cool-down ends: one probe goes to the provider, now back
            with breaker.guard():
                identity = await auth.authenticate(Credentials("alice", PASSWORD))
            assert identity is not None and breaker.state == CLOSED
    finally:
        await auth.close()


@pytest.mark.parametrize("behaviour,error,counted", [
    ("error", UpstreamUnavailable, True), ("slow", UpstreamTimeout, True),
    ("garbage", UpstreamUnavailable, False),
])
async def test_provider_misbehaving_is_a_503(idp: IdPState, behaviour: str,
                                             error: type[UpstreamError], counted: bool) -> None:
    auth = oauth(idp.issuer)
    await auth.start()
    try:
        assert await auth.authenticate(Credentials("alice", PASSWORD)) is not None  # cached
        idp.behaviour = behaviour
        breaker = CircuitBreaker("oauth2", failure_threshold=1)
        with pytest.raises(error) as info, breaker.guard():
            await auth.authenticate(Credentials("alice", PASSWORD))
        assert (breaker.state == OPEN) is counted
        assert_no_secrets(info.value.detail)
        idp.behaviour = "ok"  # and it recovers by itself
        assert await auth.authenticate(Credentials("alice", PASSWORD)) is not None
    finally:
        await auth.close()


async def test_requests_waiting_for_a_failing_fetch_share_its_failure(idp: IdPState) -> None:
    idp.behaviour = "slow"
    idp.paths.clear()
    auth = oauth(idp.issuer)
    await auth.start()
    try:
        results = await asyncio.gather(*(auth.authenticate(Credentials("alice", PASSWORD))
                                         for _ in range(6)), return_exceptions=True)
    finally:
        await auth.close()
    assert all(isinstance(r, UpstreamTimeout) for r in results), results
    assert idp.paths == ["/.well-known/openid-configuration"]  # one fetch for all six


async def test_an_oversized_answer_is_a_503_for_this_request(idp: IdPState) -> None:
    auth = oauth(idp.issuer, "max_bytes = 1024")  # big's ID token alone is over 2 KiB
    assert await login(auth, "alice") is not None
    with pytest.raises(UpstreamUnavailable, match="max_bytes") as info:
        await login(auth, "big")
    assert is_answered(info.value)


async def test_garbage_below_http_opens_the_breaker() -> None:
    with RawServer(misbehave) as raw:
        auth = make_authenticator(f"""
type = "oauth2"
token_endpoint = "{raw.url}/token?user=malformed"
client_id = "{CLIENT[0]}"
client_secret = "{CLIENT[1]}"
userinfo_endpoint = "{raw.url}/userinfo"
id_token = false
userinfo = true
retries = 0
""")
        breaker = CircuitBreaker("oauth2", failure_threshold=2)
        await auth.start()
        try:
            for _ in range(2):
                with pytest.raises(UpstreamUnavailable) as info, breaker.guard():
                    await auth.authenticate(Credentials("alice", PASSWORD))
                assert_no_secrets(info.value.detail)
        finally:
            await auth.close()
        assert breaker.state == OPEN
        assert all(quote(PASSWORD) not in h.decode("latin-1") for h in raw.heads)


async def test_ready_asks_for_discovery(idp: IdPState) -> None:
    auth = oauth(idp.issuer)
    await auth.start()
    try:
        await auth.ready()
    finally:
        await auth.close()
    down = oauth(f"http://127.0.0.1:{free_port()}")
    await down.start()
    try:
        with pytest.raises(UpstreamError):
            await down.ready()
    finally:
        await down.close()


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("table,expected", [
    ('mode = "jwt"\nissuer = "https://idp.example.com/x"\nalgorithms = ["RS256", "none"]\n'
     'client_secret = 42',
     ["auth.algorithms[1]': expected one of", "auth.client_secret': expected a string "
      "(the value is not shown)"]),
    ('mode = "jwt"\nissuer = "http://idp.example.com/x"\nalgorithms = ["HS256"]\n'
     'userinfo = true',
     ["auth.issuer': plain http:// to idp.example.com", "auth.audience': is required",
      "auth.hmac_secret': HS* algorithms need", "auth.userinfo': is only used with mode = "
      "\"password\""]),
    ('token_endpoint = "https://idp.example.com/token"\nclient_id = "gw"\nscope = "profile"\n'
     '[token_params]\npassword = "x"',
     ["auth.client_secret': is required", "auth.jwks_uri': is required (or issuer",
      "auth.issuer': is required to check", "auth.token_params.password': is set by the "
      "gateway", "auth.scope': must include \"openid\""]),
    ('issuer = "https://idp.example.com/x"\nclient_id = "gw"\nclient_secret = "s"\n'
     'token_parms = {}', ["auth.token_parms': unknown key (did you mean 'token_params'?)"]),
    ('mode = "introspection"\nissuer = "https://idp.example.com/x"\nclient_id = "gw"\n'
     'token_auth_method = "none"', ["auth.token_auth_method': introspection needs"]),
])
def test_configuration_problems_are_reported_with_their_keys(table: str,
                                                              expected: list[str]) -> None:
    text = "\n".join(problems('type = "oauth2"\n' + table))
    for message in expected:
        assert f"Config value '{message}" in text, text
    assert "42" not in text

"""OAuth2 / OpenID Connect end to end: the real gateway in a subprocess (log_level = "debug"),
a real authlib provider on loopback (tests/idp.py), and the phone's view. One profile per
mode: password grant + ID token (/provision), + userinfo (/userinfo), introspection
(/introspect), local JWT (/jwt); /badclient has a wrong client secret, /down no provider."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway, free_port
from tests.idp import CLIENT, NAME, PASSWORD, POST_CLIENT, IdPState, idp_app
from tests.upstreams import Server, leaks

WRONG = "Wrong username or password."
UNAVAILABLE = "The service is temporarily unavailable. Please try again later."
NOT_PERMITTED = "This account is not allowed to use the app. Contact your administrator."

CONFIG = """
[server]
log_level = "debug"
deadline = 3.0

[limits]
username_failures = 0
address_failures = 0
lockout_window = 1

[policy]
required_groups = ["voip"]

[auth]
type = "oauth2"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_env = "E2E_OIDC_SECRET"
groups_claims = ["groups", "realm_access.roles"]
read_timeout = 0.7
retries = 0
[auth.attributes]
displayName = "name"
ext = "ext"

[source]
type = "static"
[[source.accounts]]
domain = "sip.example.com"
sip_password = "Sip-Static-Secret"

[mapping.account]
name = "{{identity.displayName}}"
username = "{{identity.ext}}"
password = "{{account.sip_password}}"
SIP_domain = "{{account.domain}}"

[tenants.acme]                  # a tenant with a provider (here: a client) of its own
domains = ["acme.example"]
[tenants.acme.auth]
type = "oauth2"
issuer = "{issuer}"
client_id = "{post_id}"
client_secret_env = "E2E_OIDC_POST_SECRET"
token_auth_method = "client_secret_post"
groups_claims = ["groups"]
[tenants.acme.auth.attributes]
displayName = "name"
ext = "ext"
[tenants.acme.source]
type = "static"
[[tenants.acme.source.accounts]]
domain = "acme.example"
sip_password = "Sip-Acme-Secret"

[profiles.userinfo]
path = "/userinfo"
[profiles.userinfo.auth]
type = "oauth2"
issuer = "{issuer}"
client_id = "{post_id}"
client_secret_env = "E2E_OIDC_POST_SECRET"
token_auth_method = "client_secret_post"
id_token = false
userinfo = true
groups_claims = ["groups"]
[profiles.userinfo.auth.attributes]
displayName = "name"
ext = "ext"

[profiles.introspect]
path = "/introspect"
[profiles.introspect.auth]
type = "oauth2"
mode = "introspection"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_env = "E2E_OIDC_SECRET"
required_scope = ["phone"]
groups_claims = ["groups"]
[profiles.introspect.auth.attributes]
displayName = "name"
ext = "ext"

[profiles.jwt]
path = "/jwt"
[profiles.jwt.auth]
type = "oauth2"
mode = "jwt"
issuer = "{issuer}"
audience = ["sip-api"]
algorithms = ["RS256"]
groups_claims = ["groups"]
[profiles.jwt.auth.attributes]
displayName = "name"
ext = "ext"

[profiles.badclient]
path = "/badclient"
[profiles.badclient.auth]
type = "oauth2"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "wr0ng-Kc1-9x7d"
retries = 0

[profiles.down]
path = "/down"
[profiles.down.auth]
type = "oauth2"
token_endpoint = "http://127.0.0.1:{closed}/token"
userinfo_endpoint = "http://127.0.0.1:{closed}/userinfo"
id_token = false
userinfo = true
client_id = "{client_id}"
client_secret_env = "E2E_OIDC_SECRET"
retries = 0
"""


@pytest.fixture(scope="module")
def idp() -> Iterator[IdPState]:
    state = IdPState()
    with Server(idp_app(state)) as server:
        state.issuer = server.url
        yield state


@pytest.fixture(scope="module")
def gateway(idp: IdPState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("e2e-oauth")
    config = workdir / "config.toml"
    config.write_text(CONFIG.format(issuer=idp.issuer, client_id=CLIENT[0],
                                    post_id=POST_CLIENT[0], closed=free_port()))
    env = {"E2E_OIDC_SECRET": CLIENT[1], "E2E_OIDC_POST_SECRET": POST_CLIENT[1]}
    with Gateway(config, workdir, env=env) as gw:
        yield gw


def provision(gw: Gateway, user: str, password: str, path: str = "/provision"
              ) -> httpx.Response:
    return httpx.get(gw.base_url + path, params={"user": user, "password": password},
                     timeout=10)


def jwt_for(idp: IdPState, user: str, **claims: object) -> str:
    return idp.mint({"aud": "sip-api", "sub": f"sub-{user}", "preferred_username": user,
                     **idp.claims_of(user), **claims})


def provisioned(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200, response.text
    account = parse_config(response.content)["accounts"][0]
    return account["name"], account["username"]


@pytest.mark.parametrize("path", ["/provision", "/userinfo"])
def test_password_grant(gateway: Gateway, path: str) -> None:
    assert provisioned(provision(gateway, "alice", PASSWORD, path)) == ("Alice Liddell",
                                                                        "1001")
    # Non-ASCII and XML specials, from the claims to the document, intact.
    assert provisioned(provision(gateway, "émile", PASSWORD, path)) == (NAME, "1002")


def test_a_tenant_has_its_own_provider(gateway: Gateway, idp: IdPState) -> None:
    idp.seen.clear()
    response = provision(gateway, "alice@acme.example", PASSWORD)
    assert provisioned(response) == ("Alice Liddell", "1001")
    assert parse_config(response.content)["accounts"][0]["SIP_domain"] == "acme.example"
    _, _, form = next(s for s in idp.seen if s[0] == "/token")
    assert form["client_id"] == POST_CLIENT[0] and form["username"] == "alice"


def test_introspection(gateway: Gateway, idp: IdPState) -> None:
    token = idp.issue("émile")
    assert provisioned(provision(gateway, "émile", token, "/introspect")) == (NAME, "1002")


def test_local_jwt(gateway: Gateway, idp: IdPState) -> None:
    token = jwt_for(idp, "alice")
    assert provisioned(provision(gateway, "alice", token, "/jwt")) == ("Alice Liddell", "1001")


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert parse_error(response.content) == message
    if status == 503:
        assert response.headers["retry-after"]


@pytest.mark.parametrize("path", ["/provision", "/userinfo"])
def test_wrong_password_is_401(gateway: Gateway, path: str) -> None:
    assert_error(provision(gateway, "alice", "not-her-Pw-Qz81", path), 401, WRONG)


def test_invalid_tokens_are_401(gateway: Gateway, idp: IdPState) -> None:
    now = int(time.time())
    for token in (idp.issue("alice", age=600), "nvr-1ss-Tk-77", idp.issue("alice",
                                                                                scope="openid")):
        assert_error(provision(gateway, "alice", token, "/introspect"), 401, WRONG)
    for token in (jwt_for(idp, "alice", exp=now - 3600, iat=now - 7200),
                  jwt_for(idp, "alice", aud="another-api"),
                  idp.mint({"aud": "sip-api", "preferred_username": "alice"}, alg="none"),
                  "a-plain-Pw9-zz"):
        assert_error(provision(gateway, "alice", token, "/jwt"), 401, WRONG)


@pytest.mark.parametrize("user", ["expired", "wrong-aud", "alg-none"])
def test_an_id_token_that_does_not_verify_is_503(gateway: Gateway, user: str) -> None:
    assert_error(provision(gateway, user, PASSWORD), 503, UNAVAILABLE)


def test_unknown_client_and_provider_down_are_503(gateway: Gateway) -> None:
    assert_error(provision(gateway, "alice", PASSWORD, "/badclient"), 503, UNAVAILABLE)
    assert "configuration fault" in gateway.output()
    assert_error(provision(gateway, "alice", PASSWORD, "/down"), 503, UNAVAILABLE)


def test_required_groups_apply_to_claims(gateway: Gateway, idp: IdPState) -> None:
    token = jwt_for(idp, "alice", groups=["sales"])
    assert_error(provision(gateway, "alice", token, "/jwt"), 403, NOT_PERMITTED)


def test_no_secret_in_the_debug_log(gateway: Gateway, idp: IdPState) -> None:
    """Every flow once more, then the whole output: no password, token or client secret."""
    tokens = [idp.issue("alice"), jwt_for(idp, "alice"), idp.issue("alice", age=600),
              jwt_for(idp, "alice", aud="another-api")]
    provision(gateway, "alice", PASSWORD)
    provision(gateway, "alice", "not-her-Pw-Qz81")
    provision(gateway, "alice", PASSWORD, "/badclient")
    for token, path in zip(tokens, ["/introspect", "/jwt"] * 2, strict=True):
        provision(gateway, "alice", token, path)
    output = gateway.output()
    assert "request for 'alice'" in output  # it is the debug log
    secrets = [PASSWORD, "not-her-Pw-Qz81", CLIENT[1], POST_CLIENT[1],
               "wr0ng-Kc1-9x7d", *tokens, *(t.split(".")[-1] for t in tokens[1::2])]
    for secret in secrets:
        assert not leaks(output, secret), secret
    for token in idp.tokens:  # the access tokens the gateway got in the password grants
        assert token not in output

"""The OIDC sign-in's failures, in process: a provider that is down, or whose discovery
names another issuer (a mix-up), is a 503 page; the start redirects with PKCE and a nonce."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.settings import from_dict
from tests.gateway import free_port
from tests.idp import CODE_CLIENT, IdPState, idp_app
from tests.onboarding.test_config import config
from tests.upstreams import Server

UNAVAILABLE = "The service is temporarily unavailable. Please try again later."


def sso_client(tmp_path: Path, issuer: str) -> TestClient:
    oidc = {"issuer": issuer, "client_id": CODE_CLIENT[0], "client_secret": CODE_CLIENT[1]}
    return TestClient(create_app(from_dict(config(tmp_path, {"path": "/onboard",
                                                             "oidc": oidc}), tmp_path)))


def test_a_provider_that_is_down_is_a_503_page(tmp_path):
    with sso_client(tmp_path, f"http://127.0.0.1:{free_port()}") as client:
        page = client.get("/onboard/sso", follow_redirects=False)
    assert page.status_code == 503 and UNAVAILABLE in page.text
    assert page.headers["retry-after"] == "30"
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.fixture(scope="module")
def idp():
    state = IdPState()
    with Server(idp_app(state)) as server:
        state.issuer = server.url
        yield state


def test_the_start_sends_a_pkce_challenge_a_nonce_and_a_state(tmp_path, idp):
    with sso_client(tmp_path, idp.issuer) as client:
        start = client.get("/onboard/sso", follow_redirects=False)
    assert start.status_code == 302
    url = urlsplit(start.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == idp.issuer + "/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["nonce"] and query["state"] and query["response_type"] == "code"
    assert query["redirect_uri"] == "http://testserver/onboard/callback"
    assert "code_verifier" not in query  # the verifier stays in the encrypted cookie
    assert query["client_id"] == CODE_CLIENT[0]


def test_a_discovery_document_for_another_issuer_is_refused(tmp_path, idp, caplog):
    real = idp.issuer
    idp.issuer = real + "/elsewhere"  # what its discovery document now claims to be
    try:
        with sso_client(tmp_path, real) as client:
            page = client.get("/onboard/sso", follow_redirects=False)
    finally:
        idp.issuer = real
    assert page.status_code == 503 and UNAVAILABLE in page.text
    assert "names another issuer" in caplog.text

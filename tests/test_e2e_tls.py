"""The gateway serving HTTPS itself: answers carry Strict-Transport-Security."""

from __future__ import annotations

import ssl

import httpx
import trustme

from bridge.zoiper.document import parse_config
from tests.gateway import Gateway
from tests.test_e2e_abuse import PASSWORDS, SIP_PASSWORDS, write_site


def test_https_answers_carry_hsts(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    config = write_site(tmp_path, "")
    config.write_text('[server]\ntls_certificate = "server.pem"\ntls_key = "server.pem"\n'
                      + config.read_text().replace('[server]\nlog_level = "debug"\n', ""))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with Gateway(config, tmp_path) as gw:
        url = f"https://127.0.0.1:{gw.port}/provision"
        response = httpx.get(url, params={"user": "alice", "password": PASSWORDS["alice"]},
                             verify=context)
        assert response.status_code == 200
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        assert parse_config(response.content)["accounts"][0]["password"] == SIP_PASSWORDS[0]
        wrong = httpx.get(url, params={"user": "alice", "password": "nope"}, verify=context)
        assert wrong.status_code == 401
        assert "strict-transport-security" in wrong.headers


def test_plain_http_has_no_hsts(tmp_path):
    with Gateway(write_site(tmp_path, ""), tmp_path) as gw:
        response = httpx.get(gw.base_url + "/provision",
                             params={"user": "alice", "password": PASSWORDS["alice"]})
        assert response.status_code == 200
        assert "strict-transport-security" not in response.headers

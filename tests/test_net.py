import ssl

import pytest
import trustme

from bridge.net import client_tls_context, is_loopback


@pytest.mark.parametrize(("host", "expected"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True),
    ("::1", True), ("[::1]", True), ("10.0.0.1", False), ("ldap.example.org", False),
    ("localhost.evil.example", False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_client_tls_context(tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("client.example")
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    context = client_tls_context(str(ca_file), client_cert=str(cert), client_key=str(key))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    loose = client_tls_context(verify=False)
    assert loose.verify_mode is ssl.CERT_NONE
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        client_tls_context(str(tmp_path / "junk.pem"))

import pytest

from bridge.clientaddr import client_address, parse_networks

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"])


XFF = "x-forwarded-for"
FWD = "forwarded"


@pytest.mark.parametrize(("peer", "header", "value", "expected"), [
    ("203.0.113.5", XFF, "198.51.100.1", "203.0.113.5"),            # untrusted peer: ignore
    ("127.0.0.1", XFF, "198.51.100.1", "198.51.100.1"),
    ("127.0.0.1", XFF, "6.6.6.6, 198.51.100.1, 10.1.1.1", "198.51.100.1"),  # rightmost untrusted
    ("127.0.0.1", XFF, "", "127.0.0.1"),
    ("127.0.0.1", XFF, "not-an-ip", "127.0.0.1"),
    ("127.0.0.1", FWD, "for=198.51.100.9;proto=https", "198.51.100.9"),
    ("127.0.0.1", FWD, 'for="[2001:db8::1]:4711"', "2001:db8::1"),
    ("127.0.0.1", FWD, 'for="192.0.2.1:4711"', "192.0.2.1"),
    ("127.0.0.1", FWD, "for=6.6.6.6, for=10.2.2.2", "6.6.6.6"),
    ("127.0.0.1", FWD, "for=unknown", "127.0.0.1"),
    (None, XFF, "198.51.100.1", None),
])
def test_client_address(peer, header, value, expected):
    assert client_address(peer, header, value, PROXIES) == expected


def test_no_trusted_proxies_means_peer():
    assert client_address("127.0.0.1", XFF, "198.51.100.1", []) == "127.0.0.1"

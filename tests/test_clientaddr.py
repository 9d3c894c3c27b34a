import pytest

from bridge.clientaddr import client_address, parse_networks

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(("peer", "fwd", "xff", "expected"), [
    ("203.0.113.5", "", "198.51.100.1", "203.0.113.5"),            # untrusted peer: ignore
    ("127.0.0.1", "", "198.51.100.1", "198.51.100.1"),
    ("127.0.0.1", "", "6.6.6.6, 198.51.100.1, 10.1.1.1", "198.51.100.1"),  # rightmost untrusted
    ("127.0.0.1", "", "", "127.0.0.1"),
    ("127.0.0.1", "", "not-an-ip", "127.0.0.1"),
    ("127.0.0.1", 'for=198.51.100.9;proto=https', "", "198.51.100.9"),
    ("127.0.0.1", 'for="[2001:db8::1]:4711"', "", "2001:db8::1"),
    ("127.0.0.1", 'for=6.6.6.6, for=10.2.2.2', "1.1.1.1", "6.6.6.6"),  # Forwarded wins
    (None, "", "198.51.100.1", None),
])
def test_client_address(peer, fwd, xff, expected):
    assert client_address(peer, fwd, xff, PROXIES) == expected


def test_no_trusted_proxies_means_peer():
    assert client_address("127.0.0.1", "", "198.51.100.1", []) == "127.0.0.1"

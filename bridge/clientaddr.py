"""Which address a request comes from, believing forwarding headers only from our proxies.

X-Forwarded-For and Forwarded are read only when the TCP peer is a configured
trusted proxy; then the chain is walked from the right and the first address
that is not itself a trusted proxy is the client. Anything unparsable means
"use the peer", never "use what the header claims".
"""

from __future__ import annotations

import ipaddress
import re

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)\]?(?::\d+)?"?', re.IGNORECASE)


def parse_networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _trusted(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def client_address(
    peer: str | None, forwarded: str, x_forwarded_for: str, proxies: list[Network]
) -> str | None:
    """`forwarded` and `x_forwarded_for`: all header lines of that name joined by ", "."""
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    chain: list[str] = []
    if forwarded:
        chain = _FORWARDED_FOR.findall(forwarded)
    elif x_forwarded_for:
        chain = [part.strip() for part in x_forwarded_for.split(",")]
    for address in reversed(chain):
        if not _valid(address):
            return peer
        if not _trusted(address, proxies):
            return address
    return peer

"""Which address a request comes from, believing forwarding headers only from our proxies.

One configured header (X-Forwarded-For by default, or Forwarded) is read, and
only when the TCP peer is a configured trusted proxy; the other header is
ignored, since a proxy that sets one usually passes the client's copy of the
other straight through. The chain is walked from the right and the first
address that is not itself a trusted proxy is the client. Anything
unparsable means "use the peer", never "use what the header claims".
"""

from __future__ import annotations

import ipaddress
import re

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = re.compile(r'for=(?:"\[([^\]"]+)\](?::\d+)?"|"([^":;,]+)(?::\d+)?"|([^";,\s]+))',
                            re.IGNORECASE)


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
    peer: str | None, header: str, value: str, proxies: list[Network]
) -> str | None:
    """`header`: "forwarded" or "x-forwarded-for"; `value`: its lines joined by ", "."""
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    if header == "forwarded":
        chain = ["".join(groups) for groups in _FORWARDED_FOR.findall(value)]
    else:
        chain = [part.strip() for part in value.split(",")] if value else []
    for address in reversed(chain):
        if not _valid(address):
            return peer
        if not _trusted(address, proxies):
            return address
    return peer

"""Network helpers every backend shares: what counts as local, and how TLS is checked.

One TLS policy for LDAP and HTTP alike: verification on, the system's trust
store unless a `ca_file` replaces it (so a corporate root installed in the OS
works for every backend), and an optional client certificate.
"""

from __future__ import annotations

import ipaddress
import ssl


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: where clear text may be allowed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_tls_context(
    ca_file: str | None = None,
    *,
    verify: bool = True,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """A client context; raises OSError/ssl.SSLError for unreadable files (config time)."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context

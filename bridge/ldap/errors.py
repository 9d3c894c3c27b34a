"""From an LDAP failure to the gateway's error classes: one mapping for auth and source alike.

A directory that cannot answer (down, slow, busy, TLS failure, a service
account it refuses) is an outage: 503, the phone keeps its configuration.
Result codes that only a wrong configuration produces (no such base, bad DN
syntax, a server that wants TLS) are a 500, so that they are not retried as
an outage. The detail goes to the log only.
"""

from __future__ import annotations

from bridge.errors import BridgeError, InternalError, UpstreamTimeout, UpstreamUnavailable
from bridge.ldap.client import LdapError, LdapOperationError, LdapTimeout

# Result codes only a wrong configuration produces: 500, not "the directory is down".
CONFIG_CODES = {
    8: "strongerAuthRequired (the server wants TLS or signing)",
    13: "confidentialityRequired (the server wants TLS)",
    17: "undefinedAttributeType",
    10: "referral (the base DN is not held by this server)",
    32: "noSuchObject (is the base DN right?)",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    50: "insufficientAccessRights (can the service account read this?)",
    87: "filterError",
}


def translate(exc: LdapError) -> BridgeError:
    """LDAP failure -> the gateway's error classes (the detail goes to the log only)."""
    if isinstance(exc, LdapTimeout):
        return UpstreamTimeout(f"LDAP: {exc}")
    if isinstance(exc, LdapOperationError):
        code = exc.result.code
        if code in CONFIG_CODES:
            return InternalError(f"LDAP configuration: {exc} [{CONFIG_CODES[code]}]")
        return UpstreamUnavailable(f"LDAP: {exc} (result {code})")
    # LdapUnavailable, including a rejected service account: the operator's outage, a 503
    return UpstreamUnavailable(f"LDAP: {exc}")

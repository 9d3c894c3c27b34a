"""Authenticators: credentials in, identity (or "invalid credentials") out.

The contract, after dex's PasswordConnector:

* return an `Identity` when the password is right;
* return `None` when it is wrong or the user is unknown (a result, not an error,
  and the two cases must be indistinguishable to the caller);
* raise `NotPermitted` when the login is valid but policy refuses it
  (missing group, disabled or expired account);
* raise an `UpstreamError` (unavailable / timeout) when the backend cannot
  answer. Never report an outage as a wrong password.

Adding a backend = one module here + one line in REGISTRY.
"""

from __future__ import annotations

from bridge.config import Section
from bridge.models import Credentials, Identity
from bridge.plugins import Backend, build


class Authenticator(Backend):
    async def authenticate(self, credentials: Credentials) -> Identity | None:
        raise NotImplementedError


REGISTRY: dict[str, str] = {
    "file": "bridge.auth.file:FileAuthenticator",
    "ldap": "bridge.auth.ldap:LdapAuthenticator",
    "oauth2": "bridge.auth.oauth:OAuthAuthenticator",
    "website": "bridge.auth.website:WebsiteAuthenticator",
    "sql": "bridge.auth.sql:SQLAuthenticator",
}


def build_authenticator(cfg: Section) -> Authenticator | None:
    backend = build(REGISTRY, cfg)
    assert backend is None or isinstance(backend, Authenticator)
    return backend

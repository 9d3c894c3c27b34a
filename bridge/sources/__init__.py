"""Account sources: an authenticated identity in, zero or more SIP accounts out.

An empty list means "no account for this user" (mapped to AccountNotFound by
the request flow); an outage raises an `UpstreamError`. The credentials are
passed along for sources that must log in as the user (website sessions) or
whose SIP server checks the provisioning login itself.

Adding a backend = one module here + one line in REGISTRY.
"""

from __future__ import annotations

from bridge.config import Section
from bridge.models import Account, Credentials, Identity
from bridge.plugins import Backend, build


class AccountSource(Backend):
    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        raise NotImplementedError


REGISTRY: dict[str, str] = {
    "static": "bridge.sources.static:StaticSource",
    "sqlite": "bridge.sources.sqlite:SQLiteSource",
    "sql": "bridge.sources.sql:SQLSource",
    "ldap": "bridge.sources.ldap:LdapSource",
    "http": "bridge.sources.http:HTTPSource",
}


def build_source(cfg: Section) -> AccountSource | None:
    backend = build(REGISTRY, cfg)
    assert backend is None or isinstance(backend, AccountSource)
    return backend

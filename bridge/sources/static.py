"""Fixed account data from the configuration itself.

For providers whose SIP server checks the provisioning login: every user gets
the same server settings, and the mapping fills in `{login.username}` and
`{login.password}`.

    [source]
    type = "static"
    [[source.accounts]]
    domain = "sip.example.com"
"""

from __future__ import annotations

from bridge.config import Section
from bridge.models import Account, Credentials, Identity
from bridge.sources import AccountSource


class StaticSource(AccountSource):
    def __init__(self, accounts: list[Account]) -> None:
        self._accounts = accounts

    @classmethod
    def from_config(cls, cfg: Section) -> StaticSource:
        accounts = []
        tables = cfg.tables("accounts", required=True)
        if "accounts" in cfg and not tables:
            cfg.problem("accounts", "needs at least one account table")
        for table in tables:
            fields = table.scalars()
            table.done()
            accounts.append(Account(fields))
        return cls(accounts)

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        return list(self._accounts)

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

from pydantic import Field

from bridge.config import Model, Scalar
from bridge.models import Account, Credentials, Identity
from bridge.sources import AccountSource


class StaticConfig(Model):
    accounts: list[dict[str, Scalar]] = Field(min_length=1)
    """Each table is one account; its keys are the `{account.*}` fields."""


class StaticSource(AccountSource):
    Config = StaticConfig

    def __init__(self, config: StaticConfig) -> None:
        super().__init__(config)
        self._accounts = [Account(fields) for fields in config.accounts]

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        return list(self._accounts)

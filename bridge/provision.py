"""One provisioning request, top to bottom: authenticate, fetch accounts, map, render.

Every failure leaves this module as a BridgeError (or an unexpected exception
that the caller treats as internal); nothing here builds a response, so the
same flow can serve another endpoint later (one-time tokens, other dialects).
"""

from __future__ import annotations

import asyncio
import logging

from bridge.auth import Authenticator
from bridge.errors import AccountNotFound, AuthenticationFailed, InternalError, UpstreamTimeout
from bridge.mapping import ConfigMapping
from bridge.models import Credentials
from bridge.sources import AccountSource
from bridge.zoiper.document import render_config
from bridge.zoiper.schema import SchemaError

logger = logging.getLogger("bridge.provision")


class Provisioner:
    def __init__(
        self,
        authenticator: Authenticator,
        source: AccountSource,
        mapping: ConfigMapping,
        deadline: float,
    ) -> None:
        self.authenticator = authenticator
        self.source = source
        self.mapping = mapping
        self.deadline = deadline

    async def provision(self, credentials: Credentials) -> bytes:
        try:
            async with asyncio.timeout(self.deadline):
                identity = await self.authenticator.authenticate(credentials)
                if identity is None:
                    raise AuthenticationFailed(
                        f"user {credentials.username!r}: invalid credentials")
                accounts = await self.source.accounts(identity, credentials)
        except TimeoutError:
            raise UpstreamTimeout(f"request deadline of {self.deadline}s exceeded") from None
        if not accounts:
            raise AccountNotFound(f"user {identity.username!r}: no SIP account")
        tree = self.mapping.build(identity, accounts, credentials)
        try:
            document = render_config(tree)
        except SchemaError as exc:
            # Bad data from a backend must never reach the phone as a 200.
            raise InternalError(f"configuration for {identity.username!r} is invalid: "
                                f"{exc}") from None
        logger.info("provisioned %r with %d account(s)", identity.username, len(accounts))
        return document

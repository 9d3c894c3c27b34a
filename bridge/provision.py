"""One provisioning request, top to bottom.

    a backend's circuit open (it kept failing)? -> 503 at once
    recently failed with this very password?   -> 401, no backend call
    answered a moment ago (positive cache)?    -> that document
    the same request already in flight?        -> share its outcome
    over a rate limit or in backoff?           -> 429, no backend call
    authenticate -> fetch accounts -> map -> render (validated)

Every failure leaves this module as a BridgeError (or an unexpected exception
that the caller treats as internal); nothing here builds a response, so the
same flow can serve another endpoint later (one-time tokens, other dialects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bridge.auth import Authenticator
from bridge.breaker import CircuitBreaker
from bridge.cache import Coalescer, ResponseCache
from bridge.errors import (
    AccountNotFound,
    AuthenticationFailed,
    InternalError,
    NotPermitted,
    UpstreamTimeout,
)
from bridge.guard import Attempt, Guard
from bridge.mapping import ConfigMapping
from bridge.metrics import METRICS
from bridge.models import Credentials
from bridge.settings import BreakerSettings
from bridge.sources import AccountSource
from bridge.zoiper.document import render_config
from bridge.zoiper.schema import SchemaError

if TYPE_CHECKING:
    from bridge.settings import Settings

logger = logging.getLogger("bridge.provision")


class Provisioner:
    def __init__(
        self,
        authenticator: Authenticator,
        source: AccountSource,
        mapping: ConfigMapping,
        deadline: float,
        guard: Guard,
        cache: ResponseCache,
        breakers: BreakerSettings | None = None,
        required_groups: frozenset[str] = frozenset(),
    ) -> None:
        self.authenticator = authenticator
        self.source = source
        self.mapping = mapping
        self.deadline = deadline
        self.guard = guard
        self.cache = cache
        self.flights = Coalescer()
        self.required_groups = required_groups
        # One breaker per backend, whatever its kind: a dead directory or billing
        # system is answered from here in microseconds, without touching limits,
        # caches or the backend's own connection handling.
        b = breakers or BreakerSettings()
        self.auth_breaker = CircuitBreaker("authenticator", b.failures, b.cooldown)
        self.source_breaker = CircuitBreaker("account source", b.failures, b.cooldown)

    @classmethod
    def from_settings(cls, settings: Settings) -> Provisioner:
        store = settings.state.build()
        guard = Guard(store, settings.limits, settings.state.hash_key())
        # In memory, documents get their own bounded store so that cached answers and
        # attempt counters never evict each other.
        cache_store = store if settings.state.backend == "redis" else settings.state.build()
        return cls(settings.authenticator, settings.source, settings.mapping,
                   settings.server.deadline, guard, ResponseCache(cache_store, settings.cache),
                   settings.breakers, settings.policy.required_groups)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Provisioner]:
        """Open the backends' pools and clients for the lifetime of the block."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.guard.store.close)
            if self.cache.store is not self.guard.store:
                stack.push_async_callback(self.cache.store.close)
            for backend in (self.authenticator, self.source):
                await backend.start()
                stack.push_async_callback(backend.close)
            yield self

    async def provision(self, credentials: Credentials) -> bytes:
        for breaker in (self.auth_breaker, self.source_breaker):
            if breaker.refusing:  # a peek: the half-open probe is claimed in the fetch below
                METRICS.inc("bridge_breaker_refusals_total")
                breaker.check()
        attempt = self.guard.attempt(credentials)
        if await self.guard.recently_failed(attempt):
            raise AuthenticationFailed(f"user {credentials.username!r}: same password failed "
                                       "recently (answered without asking the backend)")
        if (document := await self.cache.get(attempt.key)) is not None:
            return document
        return await self.flights.run(attempt.key, lambda: self._attempt(credentials, attempt))

    async def _attempt(self, credentials: Credentials, attempt: Attempt) -> bytes:
        await self.guard.admit(attempt)
        outcome = "other"
        try:
            document = await self._fetch_and_render(credentials)
            outcome = "ok"
        except AuthenticationFailed:
            outcome = "failed"
            raise
        finally:
            await self.guard.settle(attempt, outcome)
        await self.cache.put(attempt.key, document)
        return document

    async def _fetch_and_render(self, credentials: Credentials) -> bytes:
        try:
            async with asyncio.timeout(self.deadline):
                with self.auth_breaker.guard():
                    identity = await self.authenticator.authenticate(credentials)
                if identity is None:
                    raise AuthenticationFailed(
                        f"user {credentials.username!r}: invalid credentials")
                if self.required_groups and not self.required_groups & identity.groups:
                    raise NotPermitted(f"user {identity.username!r} is in none of the "
                                       f"required groups")
                with self.source_breaker.guard():
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

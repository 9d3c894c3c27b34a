"""One provisioning request, top to bottom.

    (the application has chosen the profile and the pipeline: tenant, backends, mapping)
    a backend's circuit open (it kept failing)? -> 503 at once
    recently failed with this very password?   -> 401, no backend call
    answered a moment ago (positive cache)?    -> that document
    the same request already in flight?        -> share its outcome
    over a rate limit or in backoff?           -> 429, no backend call
    authenticate -> fetch accounts -> map -> render for the dialect (validated)
    the deadline passes while a backend is asked?  -> that backend's failure, 503

The token endpoint (`provision_token`) is the same flow without the password:
the one-time token is the authentication, so no authenticator is asked and the
identity is the token's username; limits count wrong tokens per address.

Every failure leaves this module as a BridgeError (or an unexpected exception
that the caller treats as internal); nothing here builds a response, so the
same flow serves both endpoints (and can serve others later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

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
from bridge.models import Credentials, Identity
from bridge.settings import BreakerSettings
from bridge.sources import AccountSource
from bridge.zoiper.dialects import ANDROID, Dialect
from bridge.zoiper.document import render_config
from bridge.zoiper.schema import SchemaError

if TYPE_CHECKING:
    from bridge.settings import Settings

logger = logging.getLogger("bridge.provision")


@dataclass(eq=False)
class Pipeline:
    """One tenant's (or a profile's own) way through: its backends, mapping and breakers."""

    name: str
    authenticator: Authenticator
    source: AccountSource
    mapping: ConfigMapping
    dialect: Dialect = ANDROID
    required_groups: frozenset[str] = frozenset()
    # One breaker per backend, whatever its kind: a dead directory or billing system is
    # answered from here in microseconds. Pipelines sharing a backend share its breaker.
    auth_breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker("authenticator"))
    source_breaker: CircuitBreaker = field(
        default_factory=lambda: CircuitBreaker("account source"))


@dataclass(frozen=True)
class Grant:
    """What a redeemed one-time token stands for: a user of one pipeline, no password."""

    username: str
    pipeline: Pipeline
    give_back: Callable[[], Awaitable[None]]  # undoes the use: nothing was delivered


class TokenDesk(Protocol):
    """A profile's token endpoint as this flow sees it (bridge/tokens/service.py)."""

    def fingerprint(self, token: str) -> str:
        """A short keyed hash of the token: the only form of it that is logged."""
        ...

    async def admit(self, client: str | None) -> None:
        """Raise RateLimited when this address has sent too many wrong tokens."""
        ...

    async def redeem(self, token: str, client: str | None) -> Grant | None:
        """Spend one use atomically; None for an unknown, expired, spent or revoked token."""
        ...


class Provisioner:
    """The request flow of one profile: its limits, with the shared cache and flights."""

    def __init__(
        self,
        authenticator: Authenticator | None,
        source: AccountSource | None,
        mapping: ConfigMapping | None,
        deadline: float,
        guard: Guard,
        cache: ResponseCache,
        breakers: BreakerSettings | None = None,
        required_groups: frozenset[str] = frozenset(),
        *,
        pipeline: Pipeline | None = None,
        flights: Coalescer | None = None,
        profile: str = "default",
    ) -> None:
        self.deadline = deadline
        self.stages = METRICS.profile(profile)  # the stage histograms, resolved once
        self.guard = guard
        self.cache = cache
        self.flights = flights or Coalescer()
        if pipeline is None and authenticator and source and mapping:
            b = breakers or BreakerSettings()
            pipeline = Pipeline("default", authenticator, source, mapping,
                                required_groups=required_groups,
                                auth_breaker=CircuitBreaker("authenticator", b.failures,
                                                            b.cooldown),
                                source_breaker=CircuitBreaker("account source", b.failures,
                                                              b.cooldown))
        self.pipeline = pipeline  # the default for provision() without one

    @classmethod
    def from_settings(cls, settings: Settings) -> Provisioner:
        """The default profile's flow with freshly built backends (tests, `render`)."""
        from bridge.runtime import Runtime

        return Runtime(settings).provisioners[settings.default.name]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Provisioner]:
        """Open this flow's stores and its default pipeline's backends for the block."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.guard.store.close)
            if self.cache.store is not self.guard.store:
                stack.push_async_callback(self.cache.store.close)
            if self.pipeline is not None:
                for backend in (self.pipeline.authenticator, self.pipeline.source):
                    await backend.start()
                    stack.push_async_callback(backend.close)
            yield self

    async def provision(self, credentials: Credentials, pipeline: Pipeline | None = None
                        ) -> bytes:
        pipe = pipeline or self.pipeline
        assert pipe is not None, "no pipeline to provision with"
        for breaker in (pipe.auth_breaker, pipe.source_breaker):
            if breaker.refusing:  # a peek: the half-open probe is claimed in the fetch below
                METRICS.inc("bridge_breaker_refusals_total")
                breaker.check()
        # Tenants count apart; a profile's own users keep the keys they always had.
        attempt = self.guard.attempt(credentials, "" if pipe is self.pipeline else pipe.name)
        if await self.guard.recently_failed(attempt):
            raise AuthenticationFailed(f"user {credentials.username!r}: same password failed "
                                       "recently (answered without asking the backend)")
        # The same login gets another document from another pipeline (dialect, tenant).
        key = f"{pipe.name}:{attempt.key}"
        if (document := await self.cache.get(key)) is not None:
            return document
        return await self.flights.run(key, lambda: self._attempt(credentials, attempt, pipe,
                                                                 key))

    async def provision_token(self, token: str, desk: TokenDesk, client: str | None) -> bytes:
        """The token endpoint: the token is the authentication, and it is spent atomically.

            this address sent too many wrong tokens?   -> 429, the store is not asked
            unknown, expired, spent or revoked?        -> 401, one answer for all four
            the account source's circuit open?         -> 503
            fetch accounts for the token's user -> map -> render (deadline as above)
            no document delivered (503, 404, 500, ...)  -> the use is given back
        """
        await desk.admit(client)
        grant = await desk.redeem(token, client)
        if grant is None:
            raise AuthenticationFailed(f"token {desk.fingerprint(token)}: unknown, expired, "
                                       "spent or revoked")
        pipe = grant.pipeline
        try:
            if pipe.source_breaker.refusing:
                METRICS.inc("bridge_breaker_refusals_total")
                pipe.source_breaker.check()
            credentials = Credentials(grant.username, "", client=client)
            return await self._fetch_and_render(credentials, pipe, Identity(grant.username))
        except BaseException:
            await asyncio.shield(grant.give_back())
            raise

    async def _attempt(self, credentials: Credentials, attempt: Attempt, pipe: Pipeline,
                       key: str) -> bytes:
        await self.guard.admit(attempt)
        outcome = "other"
        try:
            document = await self._fetch_and_render(credentials, pipe)
            outcome = "ok"
        except AuthenticationFailed:
            outcome = "failed"
            raise
        finally:
            await self.guard.settle(attempt, outcome)
        await self.cache.put(key, document)
        return document

    async def _fetch_and_render(self, credentials: Credentials, pipe: Pipeline,
                                token_identity: Identity | None = None) -> bytes:
        asking: CircuitBreaker | None = None
        identity = token_identity
        try:
            async with asyncio.timeout(self.deadline):
                if identity is None:
                    asking = pipe.auth_breaker
                    started = time.perf_counter()
                    with asking.guard():
                        identity = await pipe.authenticator.authenticate(credentials)
                    self.stages.authenticate.observe(time.perf_counter() - started)
                    asking = None
                    if identity is None:
                        raise AuthenticationFailed(
                            f"user {credentials.username!r}: invalid credentials")
                # A token's identity has no groups: whoever issued it made that decision.
                if (token_identity is None and pipe.required_groups
                        and not pipe.required_groups & identity.groups):
                    raise NotPermitted(f"user {identity.username!r} is in none of the "
                                       f"required groups")
                asking = pipe.source_breaker
                started = time.perf_counter()
                with asking.guard():
                    accounts = await pipe.source.accounts(identity, credentials)
                self.stages.accounts.observe(time.perf_counter() - started)
                asking = None
        except TimeoutError:
            # A backend still thinking when the deadline passed is as good as dead: without
            # this a hung backend never opens its breaker, and every request waits it out.
            if asking is not None:
                asking.count("timeout")
                asking.failure()
            raise UpstreamTimeout(f"request deadline of {self.deadline}s exceeded"
                                  + (f" asking the {asking.name}" if asking else "")) from None
        if not accounts:
            raise AccountNotFound(f"user {identity.username!r}: no SIP account")
        started = time.perf_counter()
        tree = pipe.mapping.build(identity, accounts, credentials)
        try:
            document = render_config(tree, pipe.dialect)
        except SchemaError as exc:
            # Bad data from a backend must never reach the phone as a 200.
            raise InternalError(f"configuration for {identity.username!r} is invalid: "
                                f"{exc}") from None
        self.stages.render.observe(time.perf_counter() - started)
        logger.info("provisioned %r with %d account(s) (%s)", identity.username, len(accounts),
                    pipe.name)
        return document

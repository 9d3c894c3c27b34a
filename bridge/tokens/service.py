"""Issuing, redeeming, listing and revoking one-time tokens.

A token is `secrets.token_urlsafe(18)`: 144 random bits in 24 URL-safe
characters. Only its keyed hash is stored (HMAC-SHA256 under `[tokens]
secret`, else `[state] secret`), so a copy of the store cannot be turned back
into working tokens; its first 8 hex digits are the *fingerprint* that logs,
listings and revocations use. A token is bound to one username, one profile
(only that profile's token endpoint accepts it) and one pipeline (the
profile's own backends or one tenant's), with an expiry and a number of uses.

`TokenDesk` is what the request flow (bridge/provision.py) sees of all this:
an address limit for guessing, and `redeem`, which spends one use atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.errors import RateLimited
from bridge.guard import address_key
from bridge.metrics import METRICS
from bridge.provision import Grant, Pipeline
from bridge.state import Store
from bridge.tokens.store import RETENTION, Ticket, TokenStore

if TYPE_CHECKING:
    from bridge.settings import Profile, Settings
    from bridge.tokens.config import TokenSettings

logger = logging.getLogger("bridge.tokens")

TOKEN_BYTES = 18
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_FINGERPRINT = re.compile(r"[0-9a-f]{4,64}")


class TokenError(Exception):
    """A request to issue or revoke that cannot be done (said to the operator as it is)."""


@dataclass(frozen=True)
class Issued:
    token: str = field(repr=False)
    link: str = field(repr=False)  # "" when no link is configured
    ticket: Ticket


def build_store(tokens: TokenSettings, redis_url: str) -> TokenStore:
    if tokens.backend == "redis":
        from bridge.tokens.redisstore import RedisTokenStore

        return RedisTokenStore(tokens.url or redis_url, tokens.prefix)
    from bridge.tokens.sql import SQLTokenStore

    if tokens.backend == "postgresql":
        return SQLTokenStore(url=tokens.url, table=tokens.table)
    return SQLTokenStore(database=tokens.database, table=tokens.table)


class TokenService:
    """The tokens of one configuration; no I/O until `start()`."""

    def __init__(self, settings: Settings, store: TokenStore | None = None) -> None:
        assert settings.tokens is not None, "the configuration has no [tokens]"
        self.settings = settings
        self.config = settings.tokens
        # The loader refuses [tokens] without one of the two secrets.
        key = (self.config.secret or settings.state.secret).encode()
        self._key = key
        self.store = store or build_store(self.config, settings.state.redis_url)
        self.profiles = {p.name: p for p in settings.profiles}

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TokenService]:
        await self.start()
        try:
            yield self
        finally:
            await self.close()

    def desk(self, profile: str, pipelines: Mapping[str, Pipeline], state: Store) -> TokenDesk:
        """`profile`'s token endpoint, counting wrong tokens in the shared `state` store."""
        limit = GuessLimit(state, self.config.address_failures, self.config.address_window,
                           self._key)
        return TokenDesk(self, profile, pipelines, limit)

    def digest(self, token: str) -> str:
        return hmac.new(self._key, b"zoiper-bridge token\x00" + token.encode(),
                        hashlib.sha256).hexdigest()

    def fingerprint(self, token: str) -> str:
        return self.digest(token)[:8]

    def link(self, profile: Profile, token: str) -> str:
        template = profile.token_link or self.config.link
        return template.replace("{token}", token) if template else ""

    # -- issuing ------------------------------------------------------------------------

    def target(self, profile_name: str, username: str,
               tenant: str | None = None) -> tuple[Profile, str, str]:
        """(profile, pipeline name, username for its backends), chosen as a request would
        be by the username's @domain; tenants chosen by host or path need `tenant`."""
        profile = self.profiles.get(profile_name)
        if profile is None:
            raise TokenError(f"no profile {profile_name!r}; the configuration has: "
                             f"{', '.join(self.profiles)}")
        if profile.token_path is None:
            where = "[tokens] path" if profile.name == "default" else \
                f"[profiles.{profile.name}.tokens] path"
            raise TokenError(f"profile {profile.name!r} has no token endpoint (set {where})")
        if (not username or len(username) > 256 or username != username.strip()
                or any(unicodedata.category(c).startswith("C") for c in username)):
            raise TokenError("the username must be 1-256 printable characters, without "
                             "leading or trailing spaces")
        name, at, domain = username.rpartition("@")
        domain = domain.lower().rstrip(".")
        for t in profile.tenants:
            short = t.name.rpartition("/")[2]
            if (tenant == short) or (tenant is None and at and domain in t.domains):
                strip = at and t.strip_domain and domain in t.domains
                return profile, t.name, name if strip else username
        if tenant is not None:
            raise TokenError(f"profile {profile.name!r} has no tenant {tenant!r}; it has: "
                             f"{', '.join(t.name.rpartition('/')[2] for t in profile.tenants)}")
        if profile.own is None:
            raise TokenError(f"no tenant of profile {profile.name!r} claims {username!r} by "
                             f"its domain: name the tenant")
        return profile, profile.own.name, username

    async def issue(self, username: str, profile: str = "default", *,
                    tenant: str | None = None, ttl: float | None = None,
                    uses: int | None = None) -> Issued:
        chosen, pipeline, user = self.target(profile, username, tenant)
        ttl = self.config.ttl if ttl is None else ttl
        uses = self.config.uses if uses is None else uses
        if not 0 < ttl <= self.config.max_ttl:
            raise TokenError(f"the lifetime must be positive and at most [tokens] max_ttl "
                             f"({self.config.max_ttl:.0f} s)")
        if not 1 <= uses <= 1000:
            raise TokenError("uses must be between 1 and 1000")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = time.time()
        ticket = Ticket(self.digest(token), user, chosen.name, pipeline, now, now + ttl, uses)
        await self.store.purge(now - RETENTION)
        await self.store.add(ticket)
        METRICS.inc("bridge_tokens_issued_total")
        logger.info("issued token %s for %r (%s, %d use(s), %.0f s)", ticket.fingerprint, user,
                    pipeline, uses, ttl)
        return Issued(token, self.link(chosen, token), ticket)

    # -- listing and revoking ------------------------------------------------------------

    async def tickets(self, username: str | None = None) -> list[Ticket]:
        found = await self.store.tickets()
        return [t for t in found if username is None or t.username == username]

    async def revoke(self, fingerprint: str | None = None,
                     username: str | None = None) -> list[Ticket]:
        """Revoke one token by its fingerprint (or a longer prefix of its hash), or all of a
        user's live tokens; TokenError when that names none, or several tokens."""
        if fingerprint is not None:
            fingerprint = fingerprint.lower()
            if not _FINGERPRINT.fullmatch(fingerprint):
                raise TokenError("a fingerprint is 4-64 hex digits (as `token list` shows)")
            chosen = [t for t in await self.store.tickets()
                      if t.digest.startswith(fingerprint)]
            if len(chosen) > 1:
                raise TokenError(f"fingerprint {fingerprint} names {len(chosen)} tokens; "
                                 f"give more digits of their hash")
        else:
            chosen = [t for t in await self.tickets(username) if t.status() == "live"]
        if not chosen:
            raise TokenError("no such token" if fingerprint else
                             f"no live token for {username!r}")
        await self.store.revoke([t.digest for t in chosen])
        for t in chosen:
            logger.info("revoked token %s of %r", t.fingerprint, t.username)
        return chosen

    # -- redeeming ------------------------------------------------------------------------

    async def redeem(self, token: str, profile: str) -> Ticket | None:
        """Spend one use of `token` at `profile`'s endpoint; None if it cannot be used."""
        if not _TOKEN.fullmatch(token):
            return None
        return await self.store.spend(self.digest(token), profile, time.time())


class GuessLimit:
    """Wrong tokens per client address (IPv6: per /64), like wrong passwords in bridge/guard.

    Counted after the fact in the shared state store (Redis with several
    instances), under a keyed hash of the address; at `failures` in a window
    the address gets 429 without the token store being asked. A few guesses
    arriving at once may pass the limit by their number: against 144-bit
    tokens that is harmless.
    """

    def __init__(self, store: Store, failures: int, window: float, key: bytes) -> None:
        self.store, self.failures, self.window = store, failures, window
        self._key = hashlib.blake2b(key).digest()

    def _counter(self, client: str | None) -> str | None:
        if not client:
            return None
        message = ("token-addr\x00" + address_key(client)).encode()
        return "tok:" + hashlib.blake2b(message, key=self._key, digest_size=16).hexdigest()

    async def admit(self, client: str | None) -> None:
        counter = self._counter(client)
        if counter and await self.store.count(counter) >= self.failures:
            METRICS.inc("bridge_rate_limited_token_address_total")
            METRICS.limit_refusals["token_address"].inc()
            wait = await self.store.ttl(counter)
            raise RateLimited("token guessing limit reached for this address",
                              retry_after=max(1, math.ceil(wait)))

    async def failed(self, client: str | None) -> None:
        if counter := self._counter(client):
            await self.store.hit(counter, self.window)


class TokenDesk:
    """One profile's token endpoint, as the request flow sees it."""

    def __init__(self, service: TokenService, profile: str,
                 pipelines: Mapping[str, Pipeline], limit: GuessLimit) -> None:
        self.service, self.profile, self.pipelines, self.limit = (service, profile, pipelines,
                                                                  limit)

    def fingerprint(self, token: str) -> str:
        return self.service.fingerprint(token)

    async def admit(self, client: str | None) -> None:
        await self.limit.admit(client)

    async def redeem(self, token: str, client: str | None) -> Grant | None:
        logger.debug("token %s asked for at profile %r from %s", self.fingerprint(token),
                     self.profile, client)
        ticket = await self.service.redeem(token, self.profile)
        pipeline = self.pipelines.get(ticket.pipeline) if ticket else None
        if ticket is None or pipeline is None:
            if ticket is not None:  # issued for a tenant the configuration no longer has
                logger.warning("token %s: pipeline %r is not configured any more",
                               ticket.fingerprint, ticket.pipeline)
                await self.service.store.give_back(ticket.digest)
            METRICS.inc("bridge_tokens_refused_total")
            await self.limit.failed(client)
            return None
        METRICS.inc("bridge_tokens_redeemed_total")
        logger.info("token %s: use %d of %d by %r", ticket.fingerprint, ticket.used,
                    ticket.uses, ticket.username)

        async def give_back() -> None:
            try:
                await self.service.store.give_back(ticket.digest)
            except Exception as exc:  # the request's own failure is the one to report
                logger.warning("token %s: the use could not be given back (%s)",
                               ticket.fingerprint, getattr(exc, "detail", type(exc).__name__))
            else:
                logger.info("token %s: use given back (nothing was delivered)",
                            ticket.fingerprint)

        return Grant(ticket.username, pipeline, give_back)

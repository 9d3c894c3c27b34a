"""Protecting the directory behind the gateway: rate limits, backoff, lockout memory.

* Attempts on one username are counted *before* the backend is asked, so
  however many guesses arrive at once, the backend sees at most
  `username_failures` per window for it. A success clears the count.
  Usernames are compared case- and space-insensitively here, as directories do.
* Failures from one client address are counted after the fact: a thousand
  phones behind one office NAT may all ask at 9:00 (identical requests share
  one upstream call anyway); only `address_failures` wrong passwords from the
  address within the window close it.
* After the n-th failure (n >= 2; a single typo costs nothing) the username
  waits `backoff_base * 2**(n-2)` seconds, capped at `backoff_max`, before the
  next attempt is even considered.
* A failed (username, password) pair is remembered for `lockout_window`: a
  phone retrying a stale password at every start gets the same 401 without a
  new bind, so it does not spend the user's Active Directory lockout budget.

Everything is keyed by a MAC (keyed BLAKE2b) under a server secret: neither usernames
nor passwords are stored, and the keys are useless without the secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import unicodedata
from dataclasses import dataclass

from bridge.config import Section
from bridge.errors import RateLimited
from bridge.metrics import METRICS
from bridge.models import Credentials
from bridge.state import Store


@dataclass(frozen=True)
class LimitSettings:
    username_failures: int = 5
    username_window: float = 900.0
    address_failures: int = 50
    address_window: float = 900.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    lockout_window: float = 900.0

    @classmethod
    def from_config(cls, cfg: Section) -> LimitSettings:
        d = cls()
        settings = cls(
            username_failures=cfg.int("username_failures", d.username_failures, min=0),
            username_window=cfg.float("username_window", d.username_window, min=1),
            address_failures=cfg.int("address_failures", d.address_failures, min=0),
            address_window=cfg.float("address_window", d.address_window, min=1),
            backoff_base=cfg.float("backoff_base", d.backoff_base, min=0),
            backoff_max=cfg.float("backoff_max", d.backoff_max, min=0),
            lockout_window=cfg.float("lockout_window", d.lockout_window, min=0),
        )
        cfg.done()
        return settings


def _address_key(address: str) -> str:
    """IPv6 clients are counted per /64: one subscriber gets a whole /64 to rotate through."""
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            pass
    return address


@dataclass(frozen=True, slots=True)
class Attempt:
    key: str          # this (username, password) pair: lockout memory, cache, coalescing
    user: str         # the username, normalised: attempt counter and backoff
    addr: str | None  # the client address, when address limits are on


class Guard:
    def __init__(self, store: Store, settings: LimitSettings, secret: bytes) -> None:
        self.store = store
        self.settings = settings
        # BLAKE2b takes keys of up to 64 bytes; a longer configured secret is condensed.
        self._secret = secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()

    def digest(self, *parts: str) -> str:
        # Keyed BLAKE2b is a MAC in its own right and a few times cheaper than HMAC here.
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(message, key=self._secret, digest_size=16).hexdigest()

    def attempt(self, credentials: Credentials) -> Attempt:
        """The keys one request is known by, computed once."""
        name = unicodedata.normalize("NFKC", credentials.username).strip().casefold()
        addr = None
        if self.settings.address_failures and credentials.client:
            addr = "a:" + self.digest("addr", _address_key(credentials.client))
        return Attempt(self.digest("login", credentials.username, credentials.password),
                       "u:" + self.digest("user", name), addr)

    async def recently_failed(self, attempt: Attempt) -> bool:
        if not self.settings.lockout_window:
            return False
        return await self.store.get("neg:" + attempt.key) is not None

    async def admit(self, attempt: Attempt) -> None:
        """Raise RateLimited, or count this attempt against the limits."""
        s = self.settings
        user, addr = attempt.user, attempt.addr
        # Refusals write nothing: a flood of refused requests must not evict the
        # counters of others from a bounded store.
        if (wait := await self.store.ttl(f"lock:{user}")) > 0:
            self._refuse("backoff", wait)
        if addr and await self.store.count(f"fail:{addr}") >= s.address_failures:
            self._refuse("address", await self.store.ttl(f"fail:{addr}"))
        if s.username_failures:
            if await self.store.count(f"fail:{user}") >= s.username_failures:
                self._refuse("username", await self.store.ttl(f"fail:{user}"))
            # Reserve the attempt; concurrent reservations past the limit give theirs back.
            if await self.store.hit(f"fail:{user}", s.username_window) > s.username_failures:
                await self.store.hit(f"fail:{user}", s.username_window, -1)
                self._refuse("username", await self.store.ttl(f"fail:{user}"))

    def _refuse(self, which: str, wait: float) -> None:
        METRICS.inc(f"bridge_rate_limited_{which}_total")
        raise RateLimited(f"{which} limit reached", retry_after=max(1, math.ceil(wait)))

    async def settle(self, attempt: Attempt, outcome: str) -> None:
        """Book the attempt admitted earlier: "ok", "failed" (wrong password) or "other".

        Only wrong passwords keep their place in the counters: an outage or a
        policy refusal must not push a user's phone towards a 429.
        """
        s = self.settings
        user, addr = attempt.user, attempt.addr
        if outcome == "failed":
            if s.lockout_window:
                await self.store.put("neg:" + attempt.key, b"1", s.lockout_window)
            if addr:
                await self.store.hit(f"fail:{addr}", s.address_window)
            if s.backoff_base and s.username_failures:
                failures = await self.store.hit(f"fail:{user}", s.username_window, 0)
                if failures >= 2:
                    delay = min(s.backoff_max, s.backoff_base * 2 ** (failures - 2))
                    await self.store.put(f"lock:{user}", b"1", delay)
        elif s.username_failures:
            if outcome == "ok":
                await self.store.delete(f"fail:{user}")
            else:
                await self.store.hit(f"fail:{user}", s.username_window, -1)

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

A username closed by the two rules above would let any stranger lock anyone
out: guess five times, and the real user's right password gets 429 for the
whole window. So failures are also counted per (username, address) pair, and a
closed username still admits, each with a budget of `bypass_failures` wrong
passwords per window:

* an address that logged in as this user within `trusted_window` (the user's
  own phone; remembered as a keyed hash of the pair): its own budget, which
  its next success refills;
* an address that has not failed for this user: one attempt at a time, all
  such addresses together sharing one budget per username.

An address that has failed for the user and is not trusted gets 429 as
before. The trade-off, stated for the directory's own lockout policy: per
window the backend sees at most `username_failures + bypass_failures` guesses
on one username from strangers, however many addresses they have, plus
`bypass_failures` per address the user logged in from (a stranger behind the
same address as the user shares that budget). Keep `username_failures + 2 *
bypass_failures` below the directory's lockout threshold. A stranger with many
addresses can still spend the shared budget of new addresses (then only the
user's known addresses get through), and a success through the bypass does not
reopen the username for everyone. `bypass_failures = 0` is the old behaviour:
one closed gate for all. Successes never count against a budget.

Everything is keyed by a MAC (keyed BLAKE2b) under a server secret: neither usernames
nor passwords are stored, and the keys are useless without the secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import unicodedata
from dataclasses import dataclass

from pydantic import Field

from bridge.config import Model
from bridge.errors import RateLimited
from bridge.metrics import METRICS
from bridge.models import Credentials
from bridge.state import Store


class LimitSettings(Model):
    """`[limits]`"""

    username_failures: int = Field(5, ge=0)
    username_window: float = Field(900.0, ge=1)
    address_failures: int = Field(50, ge=0)
    address_window: float = Field(900.0, ge=1)
    backoff_base: float = Field(1.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)
    lockout_window: float = Field(900.0, ge=0)
    bypass_failures: int = Field(2, ge=0)
    trusted_window: float = Field(30 * 86400.0, ge=0)


def address_key(address: str) -> str:
    """IPv6 clients are counted per /64: one subscriber gets a whole /64 to rotate through."""
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            pass
    return address


@dataclass(slots=True)
class Attempt:
    key: str          # this (username, password) pair: lockout memory, cache, coalescing
    user: str         # the username, normalised: attempt counter and backoff
    addr: str | None  # the client address, when address limits are on
    pair: str | None = None  # (username, client address): its failures; "logged in from here"
    via: str = "open"  # what admit() charged: "username", "trusted", "new", or "open" (nothing)


class Guard:
    def __init__(self, store: Store, settings: LimitSettings, secret: bytes) -> None:
        self.store = store
        self.settings = settings
        # BLAKE2b takes keys of up to 64 bytes; a longer configured secret is condensed.
        self._secret = secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()
        # bridge_cache_hits_total{cache="negative"}: a known-bad password answered from memory
        self._known_bad = METRICS.cache_hits["negative"]

    def digest(self, *parts: str) -> str:
        # Keyed BLAKE2b is a MAC in its own right and a few times cheaper than HMAC here.
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(message, key=self._secret, digest_size=16).hexdigest()

    def attempt(self, credentials: Credentials, scope: str = "") -> Attempt:
        """The keys one request is known by, computed once.

        `scope` keeps users of different tenants apart: the same name in two
        directories is two people, with two counters.
        """
        s = self.settings
        name = unicodedata.normalize("NFKC", credentials.username).strip().casefold()
        if scope:
            name = f"{scope}\x00{name}"
        addr = pair = None
        if credentials.client:
            where = address_key(credentials.client)
            if s.address_failures:
                addr = "a:" + self.digest("addr", where)
            if s.bypass_failures and s.username_failures:
                pair = "p:" + self.digest("pair", name, where)
        login = (scope, credentials.username) if scope else (credentials.username,)
        return Attempt(self.digest("login", *login, credentials.password),
                       "u:" + self.digest("user", name), addr, pair)

    async def recently_failed(self, attempt: Attempt) -> bool:
        if not self.settings.lockout_window:
            return False
        if await self.store.get("neg:" + attempt.key) is None:
            return False
        self._known_bad.inc()
        return True

    async def admit(self, attempt: Attempt) -> None:
        """Raise RateLimited, or count this attempt against the limits."""
        s = self.settings
        store, user, addr, pair = self.store, attempt.user, attempt.addr, attempt.pair
        attempt.via = "open"
        # Refusals write nothing: a flood of refused requests must not evict the
        # counters of others from a bounded store.
        if addr and await store.count(f"fail:{addr}") >= s.address_failures:
            self._refuse("address", await store.ttl(f"fail:{addr}"))
        if not s.username_failures:
            return
        closed: tuple[str, float] | None = None
        if (wait := await store.ttl(f"lock:{user}")) > 0:
            closed = ("backoff", wait)
        elif await store.count(f"fail:{user}") >= s.username_failures:
            closed = ("username", await store.ttl(f"fail:{user}"))
        # Reserve the attempt; concurrent reservations past the limit give theirs back.
        elif await store.hit(f"fail:{user}", s.username_window) > s.username_failures:
            await store.hit(f"fail:{user}", s.username_window, -1)
            closed = ("username", await store.ttl(f"fail:{user}"))
        if closed is None:
            attempt.via = "username"
            if pair:  # so that concurrent guesses from here cannot pass as a "new" address
                await store.hit(f"fail:{pair}", s.username_window)
            return
        if pair is None or not await self._bypass(attempt):
            self._refuse(*closed)

    async def _bypass(self, attempt: Attempt) -> bool:
        """Let a closed username's own known address, or a new one, through on its budget."""
        s, store, pair = self.settings, self.store, attempt.pair
        window = s.username_window
        if s.trusted_window and await store.get(f"ok:{pair}") is not None:
            if await store.count(f"fail:{pair}") >= s.bypass_failures:
                return False
            if await store.hit(f"fail:{pair}", window) > s.bypass_failures:
                await store.hit(f"fail:{pair}", window, -1)
                return False
            attempt.via = "trusted"
            METRICS.inc("bridge_limit_bypass_trusted_total")
            return True
        shared = f"new:{attempt.user}"
        if (await store.count(f"fail:{pair}") > 0
                or await store.count(shared) >= s.bypass_failures):
            return False
        if await store.hit(f"fail:{pair}", window) > 1:  # one at a time from a new address
            await store.hit(f"fail:{pair}", window, -1)
            return False
        if await store.hit(shared, window) > s.bypass_failures:
            await store.hit(shared, window, -1)
            await store.hit(f"fail:{pair}", window, -1)
            return False
        attempt.via = "new"
        METRICS.inc("bridge_limit_bypass_new_address_total")
        return True

    def _refuse(self, which: str, wait: float) -> None:
        METRICS.inc(f"bridge_rate_limited_{which}_total")
        METRICS.limit_refusals[which].inc()
        raise RateLimited(f"{which} limit reached", retry_after=max(1, math.ceil(wait)))

    async def settle(self, attempt: Attempt, outcome: str) -> None:
        """Book the attempt admitted earlier: "ok", "failed" (wrong password) or "other".

        Only wrong passwords keep their place in the counters: an outage or a
        policy refusal must not push a user's phone towards a 429.
        """
        s, store = self.settings, self.store
        user, addr, pair, via = attempt.user, attempt.addr, attempt.pair, attempt.via
        window = s.username_window
        if outcome == "failed":
            if s.lockout_window:
                await store.put("neg:" + attempt.key, b"1", s.lockout_window)
            if addr:
                await store.hit(f"fail:{addr}", s.address_window)
            if via == "username" and s.backoff_base:
                failures = await store.hit(f"fail:{user}", window, 0)
                if failures >= 2:
                    delay = min(s.backoff_max, s.backoff_base * 2 ** (failures - 2))
                    await store.put(f"lock:{user}", b"1", delay)
            return
        if via == "username":
            if outcome == "ok":
                # Only a success through the open gate clears it: one through the bypass
                # must not hand the stranger who closed it a fresh budget.
                await store.delete(f"fail:{user}")
            else:
                await store.hit(f"fail:{user}", window, -1)
        elif via == "new":
            await store.hit(f"new:{user}", window, -1)
        if pair and via != "open":
            if outcome == "ok":
                await store.delete(f"fail:{pair}")
                if s.trusted_window:
                    await store.put(f"ok:{pair}", b"1", s.trusted_window)
            else:
                await store.hit(f"fail:{pair}", window, -1)

"""Rate limits, backoff, lockout memory, coalescing and the positive cache, through the
real request flow (Provisioner) with an authenticator that counts what reaches it.

The tests of who may pass a closed username (the user's own addresses, new addresses on a
small budget) run against both real state stores: in memory and the machine's Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from bridge.auth import Authenticator
from bridge.cache import CacheSettings, ResponseCache
from bridge.config import Section
from bridge.errors import AuthenticationFailed, RateLimited, UpstreamUnavailable
from bridge.guard import Guard, LimitSettings
from bridge.mapping import ConfigMapping
from bridge.models import Account, Credentials, Identity
from bridge.provision import Provisioner
from bridge.settings import BreakerSettings
from bridge.sources import AccountSource
from bridge.state import MemoryStore, RedisStore, Store

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")

MAPPING = ConfigMapping.from_config(Section({"account": {
    "username": "{identity.username}", "password": "{login.password}",
    "SIP_domain": "sip.example.com"}}))


class CountingAuthenticator(Authenticator):
    """A backend stand-in whose only job is to count how often it is asked."""

    def __init__(self, passwords: dict[str, str], delay: float = 0.0,
                 down: bool = False) -> None:
        self.passwords = passwords
        self.calls = 0
        self.delay = delay
        self.down = down

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.down:
            raise UpstreamUnavailable("directory down")
        if self.passwords.get(credentials.username) == credentials.password:
            return Identity(credentials.username)
        return None


class OneAccount(AccountSource):
    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        return [Account({})]


def provisioner(auth: Authenticator, cache: bool = False, breaker: BreakerSettings | None = None,
                store: Store | None = None, **limits: float) -> Provisioner:
    store = store or MemoryStore()
    guard = Guard(store, LimitSettings(**limits), b"k" * 32)
    return Provisioner(auth, OneAccount(), MAPPING, 5.0, guard,
                       ResponseCache(store, CacheSettings(enabled=cache, ttl=60)),
                       breaker or BreakerSettings(failures=0))


def creds(user: str, password: str, client: str = "192.0.2.1") -> Credentials:
    return Credentials(user, password, client=client)


async def outcome(p: Provisioner, c: Credentials) -> str:
    try:
        await p.provision(c)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def test_guessing_loop_is_throttled_and_backend_sees_at_most_the_limit():
    auth = CountingAuthenticator({"alice": "right"})
    p = provisioner(auth, username_failures=5, backoff_base=0)
    results = [await outcome(p, creds("alice", f"guess-{i}")) for i in range(30)]
    assert results[:5] == ["AuthenticationFailed"] * 5
    assert set(results[5:]) == {"RateLimited"}
    assert auth.calls == 5


async def test_concurrent_guesses_cannot_overrun_the_limit():
    auth = CountingAuthenticator({"alice": "right"}, delay=0.05)
    p = provisioner(auth, username_failures=3, backoff_base=0)
    results = await asyncio.gather(*(outcome(p, creds("alice", f"g{i}")) for i in range(20)))
    assert auth.calls == 3
    assert results.count("RateLimited") == 17


async def test_many_phones_behind_one_address_are_not_limited():
    auth = CountingAuthenticator({f"u{i}": "pw" for i in range(300)}, delay=0.01)
    p = provisioner(auth, address_failures=5)
    results = await asyncio.gather(*(outcome(p, creds(f"u{i}", "pw")) for i in range(300)))
    assert results == ["ok"] * 300


async def test_username_limit_ignores_case_and_spaces():
    auth = CountingAuthenticator({})
    p = provisioner(auth, username_failures=3, backoff_base=0)
    fullwidth = "\uff41\uff4c\uff49\uff43\uff45"
    names = ["alice", "ALICE", " alice", "Alice ", fullwidth, "alice"]
    results = [await outcome(p, creds(n, f"g{i}")) for i, n in enumerate(names)]
    assert results == ["AuthenticationFailed"] * 3 + ["RateLimited"] * 3
    assert auth.calls == 3


async def test_address_limit_spans_usernames():
    auth = CountingAuthenticator({})
    p = provisioner(auth, address_failures=4, username_failures=100, backoff_base=0)
    results = [await outcome(p, creds(f"user{i}", "x")) for i in range(10)]
    assert results.count("RateLimited") == 6
    assert auth.calls == 4
    # another address is not affected
    assert await outcome(p, creds("user0", "y", client="198.51.100.7")) == "AuthenticationFailed"


async def test_rate_limited_carries_retry_after():
    p = provisioner(CountingAuthenticator({}), username_failures=1, username_window=120,
                    backoff_base=0)
    await outcome(p, creds("alice", "a"))
    with pytest.raises(RateLimited) as info:
        await p.provision(creds("alice", "b"))
    assert 1 <= info.value.retry_after <= 120


async def test_backoff_grows_after_the_second_failure():
    auth = CountingAuthenticator({"alice": "right"})
    p = provisioner(auth, username_failures=100, backoff_base=0.2, backoff_max=10)
    assert await outcome(p, creds("alice", "a")) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "b")) == "AuthenticationFailed"   # 2nd: lock 0.2 s
    assert await outcome(p, creds("alice", "right")) == "RateLimited"       # even the right one
    await asyncio.sleep(0.25)
    assert await outcome(p, creds("alice", "c")) == "AuthenticationFailed"   # 3rd: lock 0.4 s
    await asyncio.sleep(0.25)
    assert await outcome(p, creds("alice", "right")) == "RateLimited"
    await asyncio.sleep(0.2)
    assert await outcome(p, creds("alice", "right")) == "ok"
    assert auth.calls == 4


async def test_stale_password_restarts_cost_one_backend_call():
    auth = CountingAuthenticator({"alice": "new-password"})
    p = provisioner(auth, lockout_window=60)
    results = [await outcome(p, creds("alice", "old-password")) for _ in range(50)]
    assert results == ["AuthenticationFailed"] * 50
    assert auth.calls == 1
    # the right password is not blocked by the remembered wrong one
    assert await outcome(p, creds("alice", "new-password")) == "ok"


async def test_success_resets_and_outages_do_not_count():
    auth = CountingAuthenticator({"alice": "right"}, down=True)
    p = provisioner(auth, username_failures=2, backoff_base=0)
    for _ in range(5):
        assert await outcome(p, creds("alice", "right")) == "UpstreamUnavailable"
    auth.down = False
    assert await outcome(p, creds("alice", "right")) == "ok"


async def test_positive_cache_one_upstream_call_per_user():
    auth = CountingAuthenticator({f"u{i}": f"p{i}" for i in range(100)})
    p = provisioner(auth, cache=True)
    for _ in range(10):
        for i in range(100):
            assert await outcome(p, creds(f"u{i}", f"p{i}")) == "ok"
    assert auth.calls == 100


async def test_positive_cache_is_keyed_by_password():
    auth = CountingAuthenticator({"alice": "one"})
    p = provisioner(auth, cache=True)
    assert await outcome(p, creds("alice", "one")) == "ok"
    auth.passwords["alice"] = "two"
    assert await outcome(p, creds("alice", "two")) == "ok"
    assert auth.calls == 2


async def test_identical_concurrent_requests_share_one_call():
    auth = CountingAuthenticator({"alice": "right"}, delay=0.05)
    p = provisioner(auth)
    results = await asyncio.gather(*(outcome(p, creds("alice", "right")) for _ in range(50)))
    assert results == ["ok"] * 50
    assert auth.calls == 1


async def test_cache_off_by_default():
    auth = CountingAuthenticator({"alice": "right"})
    p = provisioner(auth)
    for _ in range(3):
        assert await outcome(p, creds("alice", "right")) == "ok"
    assert auth.calls == 3


def test_keys_never_contain_the_password():
    guard = Guard(MemoryStore(), LimitSettings(), b"k" * 32)
    attempt = guard.attempt(creds("alice", "hunter2-secret"))
    for key in (attempt.key, attempt.user, attempt.addr):
        assert "hunter2" not in key and "alice" not in key
    other = Guard(MemoryStore(), LimitSettings(), b"j" * 32)
    assert other.attempt(creds("alice", "hunter2-secret")).key != attempt.key


async def test_failed_lookup_is_not_cached_as_success():
    auth = CountingAuthenticator({"alice": "right"})
    p = provisioner(auth, cache=True, lockout_window=0)
    with pytest.raises(AuthenticationFailed):
        await p.provision(creds("alice", "wrong"))
    with pytest.raises(AuthenticationFailed):
        await p.provision(creds("alice", "wrong"))
    assert auth.calls == 2


async def test_waiters_get_an_error_when_the_shared_call_is_cancelled():
    auth = CountingAuthenticator({"alice": "right"}, delay=0.5)
    p = provisioner(auth)
    leader = asyncio.create_task(p.provision(creds("alice", "right")))
    await asyncio.sleep(0.05)
    follower = asyncio.create_task(outcome(p, creds("alice", "right")))
    await asyncio.sleep(0.05)
    leader.cancel()
    assert await follower == "UpstreamUnavailable"
    assert auth.calls == 1


async def test_refused_requests_do_not_evict_other_counters():
    store = MemoryStore(max_entries=50)
    guard = Guard(store, LimitSettings(username_failures=3, address_failures=2,
                                       backoff_base=0), b"k" * 32)
    p = Provisioner(CountingAuthenticator({}), OneAccount(), MAPPING, 5.0, guard,
                    ResponseCache(MemoryStore(), CacheSettings()))
    victim = creds("victim", "x", client="198.51.100.1")
    for i in range(2):
        assert await outcome(p, creds("victim", f"guess{i}", client="198.51.100.1")) \
            == "AuthenticationFailed"
    attacker = "203.0.113.66"
    assert await outcome(p, creds("junk", "x", client=attacker)) == "AuthenticationFailed"
    assert await outcome(p, creds("junk2", "y", client=attacker)) == "AuthenticationFailed"
    for i in range(500):   # the attacker's address is closed: nothing more is written
        assert await outcome(p, creds(f"junk-{i}", "x", client=attacker)) == "RateLimited"
    assert await store.count("fail:" + guard.attempt(victim).user) == 2


def test_ipv6_clients_are_counted_per_64():
    guard = Guard(MemoryStore(), LimitSettings(), b"k" * 32)
    a = guard.attempt(creds("u", "p", client="2001:db8:1:2::1"))
    b = guard.attempt(creds("u", "p", client="2001:db8:1:2:ffff::9"))
    c = guard.attempt(creds("u", "p", client="2001:db8:1:3::1"))
    assert a.addr == b.addr != c.addr


async def test_dead_backend_is_answered_by_the_gateway_breaker():
    auth = CountingAuthenticator({"alice": "right"}, down=True)
    p = provisioner(auth, breaker=BreakerSettings(failures=3, cooldown=0.2))
    results = [await outcome(p, creds(f"u{i}", "pw")) for i in range(20)]
    assert results[:3] == ["UpstreamUnavailable"] * 3
    assert results[3:] == ["CircuitOpen"] * 17      # a 503 too, without a backend call
    assert auth.calls == 3
    auth.down = False
    await asyncio.sleep(0.25)                        # cool-down over: one probe goes through
    assert await outcome(p, creds("alice", "right")) == "ok"
    assert await outcome(p, creds("alice", "right")) == "ok"
    assert auth.calls == 5


async def test_wrong_passwords_do_not_open_the_breaker():
    auth = CountingAuthenticator({"alice": "right"})
    p = provisioner(auth, breaker=BreakerSettings(failures=2, cooldown=60),
                    username_failures=100, backoff_base=0)
    for i in range(10):
        assert await outcome(p, creds("alice", f"wrong{i}")) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "right")) == "ok"


# -- a closed username and the real user: who still gets through --------------------------

STRANGER = "203.0.113.66"
HOME = "198.51.100.10"     # where alice's phone logged in before
TRAVEL = "192.0.2.200"     # an address alice has never used


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"test-guard-{uuid.uuid4().hex}:"
    redis_store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        await redis_store.client.ping()
    except Exception as exc:
        await redis_store.close()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield redis_store
    keys = [k async for k in redis_store.client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_store.client.delete(*keys)
    await redis_store.close()


async def stored_keys(store: Store) -> list[str]:
    if isinstance(store, MemoryStore):
        return list(store._data)
    assert isinstance(store, RedisStore)
    return [k.decode() async for k in store.client.scan_iter(match=store.prefix + "*")]


def guarded(auth: Authenticator, store: Store, **limits: float) -> Provisioner:
    settings = {"username_failures": 5, "backoff_base": 0, "bypass_failures": 2, **limits}
    return provisioner(auth, store=store, **settings)


async def hammer(p: Provisioner, client: str, times: int, round: int = 0) -> list[str]:
    """Wrong passwords for alice, each new (a repeated one is answered from lockout memory)."""
    return [await outcome(p, creds("alice", f"guess-{client}-{round}-{i}", client=client))
            for i in range(times)]


async def test_a_stranger_cannot_lock_the_user_out(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    results = await hammer(p, STRANGER, 20)
    assert results == ["AuthenticationFailed"] * 5 + ["RateLimited"] * 15
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "ok"
    # the stranger is still refused, with any password, and the backend was asked 5 + 1 times
    assert await hammer(p, STRANGER, 5, round=1) == ["RateLimited"] * 5
    assert await outcome(p, creds("alice", "right", client=STRANGER)) == "RateLimited"
    assert auth.calls == 6


async def test_backoff_does_not_lock_the_user_out_either(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store, username_failures=100, backoff_base=30, backoff_max=60)
    assert await hammer(p, STRANGER, 4) == ["AuthenticationFailed"] * 2 + ["RateLimited"] * 2
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "ok"
    assert auth.calls == 3


async def test_new_addresses_share_one_small_budget(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    await outcome(p, creds("alice", "right", client=HOME))           # her phone, at home
    await hammer(p, STRANGER, 5)                                     # closes the username
    botnet = [f"203.0.113.{i}" for i in range(100, 120)]
    results = [await outcome(p, creds("alice", f"bot-{a}", client=a)) for a in botnet]
    assert results == ["AuthenticationFailed"] * 2 + ["RateLimited"] * 18
    # the budget of new addresses is spent: the documented price ...
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "RateLimited"
    # ... but the address she logged in from is hers and still gets through
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    assert auth.calls == 1 + 5 + 2 + 1


async def test_concurrent_guesses_from_new_addresses_stay_within_the_budget(store):
    auth = CountingAuthenticator({"alice": "right"}, delay=0.05)
    p = guarded(auth, store, username_failures=3)
    await hammer(p, STRANGER, 3)
    one_address = [creds("alice", f"same-{i}", client=TRAVEL) for i in range(10)]
    many = [creds("alice", f"many-{i}", client=f"192.0.2.{i}") for i in range(1, 40)]
    results = await asyncio.gather(*(outcome(p, c) for c in one_address + many))
    assert results.count("AuthenticationFailed") == 2
    assert auth.calls == 3 + 2


async def test_a_known_address_has_its_own_budget_that_a_success_refills(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    await hammer(p, STRANGER, 5)
    for a in ("203.0.113.1", "203.0.113.2"):                     # the new-address budget too
        assert await outcome(p, creds("alice", f"bot-{a}", client=a)) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "typo-1", client=HOME)) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    assert await outcome(p, creds("alice", "typo-2", client=HOME)) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "typo-3", client=HOME)) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "right", client=HOME)) == "RateLimited"
    assert auth.calls == 1 + 5 + 2 + 4


async def test_a_success_through_the_bypass_does_not_reopen_the_username(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    await hammer(p, STRANGER, 5)
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "ok"
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "ok"
    # the stranger's next address gets the new-address budget, not a fresh username budget
    results = [await outcome(p, creds("alice", f"g{i}", client=f"198.18.0.{i}"))
               for i in range(1, 10)]
    assert results.count("AuthenticationFailed") == 2
    assert auth.calls == 5 + 2 + 2


async def test_trust_expires_after_trusted_window(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store, trusted_window=0.3)
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    await hammer(p, STRANGER, 5)
    for a in ("203.0.113.1", "203.0.113.2"):
        assert await outcome(p, creds("alice", f"bot-{a}", client=a)) == "AuthenticationFailed"
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    await asyncio.sleep(0.4)
    assert await outcome(p, creds("alice", "right", client=HOME)) == "RateLimited"


async def test_an_ipv6_stranger_cannot_pass_as_new_within_its_64(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    results = [await outcome(p, creds("alice", f"g{i}", client=f"2001:db8:6:6::{i:x}"))
               for i in range(1, 12)]
    assert results == ["AuthenticationFailed"] * 5 + ["RateLimited"] * 6
    assert await outcome(p, creds("alice", "right", client="2001:db8:7::1")) == "ok"


async def test_without_bypass_one_closed_gate_holds_for_everyone(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store, bypass_failures=0)
    await outcome(p, creds("alice", "right", client=HOME))
    await hammer(p, STRANGER, 5)
    for client in (HOME, TRAVEL):
        assert await outcome(p, creds("alice", "right", client=client)) == "RateLimited"
    assert auth.calls == 6


async def test_outages_give_the_bypass_budgets_back(store):
    auth = CountingAuthenticator({"alice": "right"})
    p = guarded(auth, store)
    await hammer(p, STRANGER, 5)
    auth.down = True
    for _ in range(5):
        assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "UpstreamUnavailable"
    auth.down = False
    assert await outcome(p, creds("alice", "right", client=TRAVEL)) == "ok"


async def test_trusted_addresses_are_stored_as_keyed_hashes_only(store):
    p = guarded(CountingAuthenticator({"alice": "right"}), store)
    assert await outcome(p, creds("alice", "right", client=HOME)) == "ok"
    await hammer(p, STRANGER, 6)
    keys = await stored_keys(store)
    assert any(":ok:p:" in k or k.startswith("ok:p:") for k in keys)
    for key in keys:
        assert "alice" not in key and HOME not in key and STRANGER not in key


def test_bypass_settings_are_read_from_the_limits_table():
    from pathlib import Path

    from bridge.config import ConfigError, validate

    settings = validate(LimitSettings, {"bypass_failures": 3, "trusted_window": 3600}, "limits")
    assert (settings.bypass_failures, settings.trusted_window) == (3, 3600)
    with pytest.raises(ConfigError) as info:
        validate(LimitSettings, {"bypass_failures": -1, "trusted_window": "forever"}, "limits",
                 Path("."))
    assert len(info.value.problems) == 2
    assert any("limits.bypass_failures" in p for p in info.value.problems)

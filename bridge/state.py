"""Short-lived shared state: attempt counters, lockout marks, cached documents.

`MemoryStore` keeps it in this process (the default: nothing to run, but each
worker counts on its own). `RedisStore` shares it between workers and gateway
instances. `ResilientStore` puts the two together: when Redis cannot be
reached the gateway goes on with its local store ("local", fail open) or
answers 503 ("closed", fail closed), logs the change once and counts it.

Keys are built by the caller from keyed hashes, never from raw passwords.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from bridge.config import Model, Secret, problem
from bridge.errors import UpstreamUnavailable
from bridge.metrics import METRICS

logger = logging.getLogger("bridge.state")


class Store:
    async def hit(self, key: str, window: float, amount: int = 1) -> int:
        """Add `amount` to a counter that expires `window` s after its first hit; new value."""
        raise NotImplementedError

    async def count(self, key: str) -> int:
        """A counter's value without touching it; 0 when it does not exist."""
        raise NotImplementedError

    async def ttl(self, key: str) -> float:
        """Seconds until `key` expires; 0 when it does not exist."""
        raise NotImplementedError

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def ready(self) -> None:
        """Raise if the store cannot be reached (check-config --connect, /readyz)."""

    @property
    def required(self) -> bool:
        """Whether requests fail while the store is unreachable (then /readyz checks it)."""
        return False

    async def close(self) -> None:
        """Release connections."""


class MemoryStore(Store):
    """A bounded dict with expiry; the oldest entries go first when it is full.

    The bound matters: an attacker can make every request use a new username.
    """

    def __init__(self, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._now = clock
        self._data: OrderedDict[str, tuple[float, int | bytes]] = OrderedDict()

    def _live(self, key: str) -> tuple[float, int | bytes] | None:
        item = self._data.get(key)
        if item is not None and item[0] <= self._now():
            del self._data[key]
            return None
        return item

    def _set(self, key: str, expires: float, value: int | bytes) -> None:
        self._data[key] = (expires, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def hit(self, key: str, window: float, amount: int = 1) -> int:
        item = self._live(key)
        expires, count = item if item else (self._now() + window, 0)
        count = int(count) + amount
        self._set(key, expires, count)
        return count

    async def count(self, key: str) -> int:
        item = self._live(key)
        return int(item[1]) if item and isinstance(item[1], int) else 0

    async def ttl(self, key: str) -> float:
        item = self._live(key)
        return max(0.0, item[0] - self._now()) if item else 0.0

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[1] if item and isinstance(item[1], bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        self._set(key, self._now() + ttl, value)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)


class RedisStore(Store):
    def __init__(self, url: str, prefix: str = "zb:", timeout: float = 0.5) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30,
        )

    async def hit(self, key: str, window: float, amount: int = 1) -> int:
        k = self.prefix + key
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(k, 0, px=max(1, int(window * 1000)), nx=True)
            pipe.incrby(k, amount)
            _, count = await pipe.execute()
        return int(count)

    async def count(self, key: str) -> int:
        value = await self.client.get(self.prefix + key)
        return int(value) if value is not None else 0

    async def ttl(self, key: str) -> float:
        ms = await self.client.pttl(self.prefix + key)
        return ms / 1000 if ms and ms > 0 else 0.0

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        return value.encode() if isinstance(value, str) else value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def ready(self) -> None:
        await self.client.ping()

    @property
    def required(self) -> bool:
        return True

    async def close(self) -> None:
        await self.client.aclose()


class ResilientStore(Store):
    """Redis first; on failure the local store, or a 503, as configured.

    After a failure Redis is left alone for `retry_interval` seconds, so a dead
    Redis costs one timeout per interval, not one per request.
    """

    def __init__(
        self,
        primary: Store,
        fallback: Store,
        mode: Literal["local", "closed"] = "local",
        retry_interval: float = 5.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.mode = mode
        self.retry_interval = retry_interval
        self._down_until = 0.0

    async def ready(self) -> None:
        await self.primary.ready()

    @property
    def required(self) -> bool:
        """With on_failure = "local" the gateway serves without Redis (degraded)."""
        return self.mode == "closed"

    def _choose(self) -> Store | None:
        if time.monotonic() >= self._down_until:
            return self.primary
        if self.mode == "closed":
            raise UpstreamUnavailable("shared state store (Redis) is unreachable")
        return None

    def _failed(self, exc: Exception) -> None:
        if self._down_until == 0.0 or time.monotonic() >= self._down_until:
            logger.warning("shared state store unreachable (%s); %s for %.0fs",
                           type(exc).__name__,
                           "refusing requests" if self.mode == "closed" else "using local limits",
                           self.retry_interval)
        METRICS.inc("bridge_state_store_failures_total")
        METRICS.set("bridge_state_store_degraded", 1)
        self._down_until = time.monotonic() + self.retry_interval

    async def _call(self, method: str, *args: object) -> Any:
        store = self._choose()
        if store is not None:
            try:
                result = await getattr(store, method)(*args)
            except Exception as exc:
                if not _is_store_failure(exc):
                    raise
                self._failed(exc)
                if self.mode == "closed":
                    raise UpstreamUnavailable("shared state store (Redis) failed") from None
            else:
                if self._down_until:
                    logger.warning("shared state store is reachable again")
                    self._down_until = 0.0
                    METRICS.set("bridge_state_store_degraded", 0)
                return result
        return await getattr(self.fallback, method)(*args)

    async def hit(self, key: str, window: float, amount: int = 1) -> int:
        hits: int = await self._call("hit", key, window, amount)
        return hits

    async def count(self, key: str) -> int:
        count: int = await self._call("count", key)
        return count

    async def ttl(self, key: str) -> float:
        return float(await self._call("ttl", key))

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", key)
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self._call("put", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def close(self) -> None:
        await self.primary.close()


def _is_store_failure(exc: Exception) -> bool:
    if isinstance(exc, OSError | TimeoutError):
        return True
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RedisError)


class StateSettings(Model):
    """`[state]`: where counters, lockout marks and cached answers live."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: Secret = "redis://127.0.0.1:6379/0"  # may hold a password
    redis_prefix: str = "zoiper-bridge:"
    on_failure: Literal["local", "closed"] = "local"
    max_entries: int = Field(100_000, ge=100)
    secret: Secret = ""  # key for credential hashes; random if empty
    allow_cleartext: bool = False

    @model_validator(mode="after")
    def _check(self) -> StateSettings:
        from urllib.parse import urlsplit

        from bridge.net import is_loopback

        if self.backend == "redis" and not self.secret:
            raise problem("is required with backend = \"redis\" (every instance must hash "
                          "credentials with the same key)", "secret")
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise problem("expected a redis://, rediss:// or unix:// URL", "redis_url")
        if (parts.scheme == "redis" and not is_loopback(parts.hostname or "")
                and not self.allow_cleartext):
            raise problem(f"redis:// to {parts.hostname} is clear text; use rediss://, or set "
                          "allow_cleartext = true", "redis_url")
        return self

    def build(self) -> Store:
        local = MemoryStore(self.max_entries)
        if self.backend != "redis":
            return local
        primary = RedisStore(self.redis_url, self.redis_prefix)
        return ResilientStore(primary, local, "closed" if self.on_failure == "closed" else "local")

    def hash_key(self) -> bytes:
        """The configured key, or a random one (then each worker/restart has its own)."""
        return self.secret.encode() or os.urandom(32)

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from bridge.errors import UpstreamUnavailable
from bridge.metrics import METRICS
from bridge.state import MemoryStore, RedisStore, ResilientStore
from tests.gateway import free_port

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")


async def exercise(store) -> None:
    assert await store.hit("c", 0.3) == 1
    assert await store.hit("c", 0.3) == 2
    assert await store.hit("c", 0.3, -1) == 1
    assert await store.count("c") == 1
    assert await store.count("missing") == 0
    assert 0 < await store.ttl("c") <= 0.3
    await store.put("v", b"doc", 0.3)
    assert await store.get("v") == b"doc"
    await store.delete("v")
    assert await store.get("v") is None
    await store.put("v", b"doc", 0.2)
    await asyncio.sleep(0.35)
    assert await store.get("v") is None
    assert await store.ttl("c") == 0
    assert await store.hit("c", 0.3) == 1  # a new window


async def test_memory_store():
    await exercise(MemoryStore())


async def test_memory_store_is_bounded():
    store = MemoryStore(max_entries=100)
    for i in range(1000):
        await store.hit(f"user{i}", 60)
    assert len(store._data) == 100
    assert await store.ttl("user999") > 0
    assert await store.ttl("user0") == 0


@pytest.fixture
async def redis_store():
    store = RedisStore(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}:")
    try:
        await store.client.ping()
    except Exception as exc:
        await store.close()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield store
    await store.close()


async def test_redis_store(redis_store):
    await exercise(redis_store)


async def test_redis_store_counts_atomically(redis_store):
    results = await asyncio.gather(*(redis_store.hit("n", 5) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))


async def test_dead_redis_falls_back_to_local_limits(caplog):
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    store = ResilientStore(dead, MemoryStore(), "local", retry_interval=60)
    before = METRICS.values.get("bridge_state_store_failures_total", 0)
    assert await store.hit("x", 10) == 1
    assert await store.hit("x", 10) == 2   # the local store, without another Redis timeout
    assert METRICS.values["bridge_state_store_failures_total"] == before + 1
    assert METRICS.values["bridge_state_store_degraded"] == 1
    assert "using local limits" in caplog.text
    await store.close()


async def test_dead_redis_fail_closed():
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    store = ResilientStore(dead, MemoryStore(), "closed", retry_interval=60)
    with pytest.raises(UpstreamUnavailable):
        await store.hit("x", 10)
    with pytest.raises(UpstreamUnavailable):
        await store.get("x")
    await store.close()


async def test_redis_recovers_after_retry_interval(redis_store):
    store = ResilientStore(redis_store, MemoryStore(), "local", retry_interval=0.1)
    store._failed(ConnectionError("simulated"))
    assert await store.hit("r", 10) == 1          # local
    await asyncio.sleep(0.15)
    assert await store.hit("r", 10) == 1          # Redis again: its own counter
    assert await redis_store.hit("r", 10, 0) == 1
    assert METRICS.values["bridge_state_store_degraded"] == 0

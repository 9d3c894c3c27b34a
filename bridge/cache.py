"""Answer a restart storm with one upstream lookup per user.

`Coalescer`: identical requests in flight at the same moment share one call.
`ResponseCache` (off by default): a successful document is kept for a short
TTL under the keyed hash of (username, password). A password change makes a
new key, so the old entry simply stops being used. Documents contain SIP
passwords: they stay in this process unless the shared store (Redis) is
configured, and are never written to disk by the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from pydantic import Field

from bridge.config import Model
from bridge.errors import UpstreamUnavailable
from bridge.metrics import METRICS
from bridge.state import Store

T = TypeVar("T")


class Coalescer:
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[object]] = {}
        # bridge_cache_hits_total{cache="coalesced"}: requests that joined a call in flight
        self._joined = METRICS.cache_hits["coalesced"]

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        if (flight := self._flights.get(key)) is not None:
            self._joined.inc()
            # shield: one waiter giving up must not cancel the call for the others
            try:
                return cast(T, await asyncio.shield(flight))
            except asyncio.CancelledError:
                if flight.cancelled() and not _cancelling():
                    # the request that made the call went away, not this one
                    raise UpstreamUnavailable("shared upstream call was cancelled") from None
                raise
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            result = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._flights[key]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class CacheSettings(Model):
    """`[cache]`"""

    enabled: bool = False
    ttl: float = Field(60.0, ge=1, le=86400)


class ResponseCache:
    def __init__(self, store: Store, settings: CacheSettings) -> None:
        self.store = store
        self.settings = settings
        self._hit = METRICS.cache_hits["document"]
        self._miss = METRICS.document_misses

    async def get(self, key: str) -> bytes | None:
        if not self.settings.enabled:
            return None
        document = await self.store.get("doc:" + key)
        (self._miss if document is None else self._hit).inc()
        return document

    async def put(self, key: str, document: bytes) -> None:
        if self.settings.enabled:
            await self.store.put("doc:" + key, document, self.settings.ttl)

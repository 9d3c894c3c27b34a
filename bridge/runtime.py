"""The live gateway built from Settings: backends, breakers, stores, one flow per profile.

Settings are plain data; this is where they become objects with pools and
sockets, so that a reload (or a test) can build a second Runtime from another
configuration. A backend table that several profiles share is built once, so
they share its pools and its breaker; each tenant's own tables give it its
own backends, pools, timeouts and breakers, so a dead directory of one tenant
never slows another.

A reload builds the next Runtime beside this one; requests count themselves in
`in_flight` (`serving()`), so the old one's backends are closed only once the
requests it took have finished (`drain()`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol

from bridge.breaker import CircuitBreaker
from bridge.cache import Coalescer, ResponseCache
from bridge.errors import AuthenticationFailed
from bridge.guard import Guard
from bridge.metrics import METRICS
from bridge.plugins import Backend, BackendSpec
from bridge.provision import Pipeline, Provisioner
from bridge.settings import PipelineSettings, Profile, Settings
from bridge.state import Store


class Ready(Protocol):
    async def ready(self) -> None: ...


async def readiness(thing: Ready, timeout: float) -> str | None:
    """Why `thing` is not ready (its `ready()` failed or took over `timeout`), or None."""
    try:
        async with asyncio.timeout(timeout):
            await thing.ready()
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as exc:  # any failure makes it unready; the detail is logged
        return getattr(exc, "detail", "") or type(exc).__name__
    return None


@dataclass(frozen=True)
class Route:
    """What one request is served by, and the username its backends see."""

    profile: Profile
    provisioner: Provisioner
    pipeline: Pipeline
    username: str


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # keyed by the spec itself (compared by identity): one backend per table
        self._backends: dict[BackendSpec, tuple[Backend, CircuitBreaker]] = {}
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        store = settings.state.build()
        # In memory, documents get their own bounded store so that cached answers and
        # attempt counters never evict each other.
        cache_store = store if settings.state.backend == "redis" else settings.state.build()
        self.stores: tuple[Store, ...] = (store,) if cache_store is store else (store,
                                                                                cache_store)
        cache = ResponseCache(cache_store, settings.cache)
        key = settings.state.hash_key()
        flights = Coalescer()
        self.provisioners: dict[str, Provisioner] = {}
        self.pipelines: dict[str, Pipeline] = {}
        for profile in settings.profiles:
            for spec in profile.pipelines:
                self.pipelines[spec.name] = self._pipeline(spec, profile)
            own = self.pipelines[profile.own.name] if profile.own else None
            self.provisioners[profile.name] = Provisioner(
                None, None, None, settings.server.deadline, Guard(store, profile.limits, key),
                cache, pipeline=own, flights=flights, profile=profile.name)

    def _pipeline(self, spec: PipelineSettings, profile: Profile) -> Pipeline:
        auth, auth_breaker = self._backend(spec.auth, spec, "authenticator")
        source, source_breaker = self._backend(spec.source, spec, "account source")
        return Pipeline(spec.name, auth, source, spec.mapping,  # type: ignore[arg-type]
                        profile.dialect, spec.required_groups, auth_breaker, source_breaker)

    def _backend(self, spec: BackendSpec, pipeline: PipelineSettings,
                 role: str) -> tuple[Backend, CircuitBreaker]:
        if spec not in self._backends:
            b = pipeline.breaker
            name = f"{role} [{spec.kind}]"
            backend = spec.build()
            failures, cooldown = backend.breaker_failures, backend.breaker_cooldown
            self._backends[spec] = (backend, CircuitBreaker(
                name, b.failures if failures is None else failures,
                b.cooldown if cooldown is None else cooldown,
                metrics=METRICS.backend(spec.kind, "auth" if role == "authenticator"
                                        else "source", spec.type)))
        return self._backends[spec]

    def described_backends(self) -> list[tuple[str, Backend]]:
        """Each backend once, with the configuration table it was built from."""
        return [(spec.kind, backend) for spec, (backend, _) in self._backends.items()]

    @property
    def backends(self) -> list[Backend]:
        return [backend for backend, _ in self._backends.values()]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Open every backend's pools and clients, and close them (and the stores) after."""
        async with contextlib.AsyncExitStack() as stack:
            for store in self.stores:
                stack.push_async_callback(store.close)
            for backend in self.backends:
                await backend.start()
                stack.push_async_callback(backend.close)
            yield self

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count one request in flight on this runtime for as long as it runs."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight here (False: `timeout` passed first)."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                while self.in_flight:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def unready(self, timeout: float) -> list[tuple[str, str]]:
        """(where, why) of every backend whose `ready()` fails or takes over `timeout`.

        The shared state store ("state") counts when requests fail without it
        (`on_failure = "closed"`).
        """

        described: list[tuple[str, Ready]] = list(self.described_backends())
        described += [("state", store) for store in self.stores if store.required]
        results = await asyncio.gather(*(readiness(backend, timeout) for _, backend in described))
        return [(where, why) for (where, _), why in zip(described, results, strict=True)
                if why is not None]

    def route(self, profile: Profile, path: str, host: str | None, username: str) -> Route:
        """The tenant of this request: by path, then Host, then the username's @domain.

        A user no tenant claims, in a profile without backends of its own, gets the
        answer of a wrong password: whether a tenant exists is nobody's business.
        """
        provisioner = self.provisioners[profile.name]
        name, at, domain = username.rpartition("@")
        host = (host or "").lower().rstrip(".")
        for tenant in profile.tenants:
            if (path in tenant.paths or (host and host in tenant.hosts)
                    or (at and domain.lower() in tenant.domains)):
                user = name if (at and tenant.strip_domain
                                and domain.lower() in tenant.domains) else username
                return Route(profile, provisioner, self.pipelines[tenant.name], user)
        if profile.own is None:
            raise AuthenticationFailed("no tenant for this user, host or path")
        return Route(profile, provisioner, self.pipelines[profile.own.name], username)

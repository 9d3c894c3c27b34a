"""The Starlette application: one route per profile (and its token endpoint), one error
mapping, backends in the lifespan, and a reload on SIGHUP.

A configuration's routes, gateway and backends form a `Generation`; a reload
validates the file, starts the next generation, swaps the router's routes in
one step and closes the previous backends once their requests are done."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.clientaddr import client_address
from bridge.errors import (
    BadRequest,
    BridgeError,
    ErrorPolicy,
    MethodNotAllowed,
    NotFound,
    XMLResponse,
)
from bridge.logs import (
    AccessLogMiddleware,
    RequestIdMiddleware,
    audit,
    register_secret,
)
from bridge.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bridge.metrics import METRICS, UNKNOWN, watch_event_loop
from bridge.params import credentials_from_query
from bridge.reload import Reloader
from bridge.runtime import Runtime, readiness
from bridge.settings import Profile, Settings
from bridge.tokens.service import TokenDesk, TokenService

logger = logging.getLogger("bridge.app")


class FailureLog:
    """4xx are the phone's business (info); 5xx are ours (warning, or error with traceback).

    When a backend is down every request fails the same way; logging each one
    (with its traceback) would flood the log and cost more CPU than answering.
    So the same 5xx is logged with its traceback once per `interval`, and the
    number of repeats in between is reported with the next one.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[tuple[type, str], tuple[float, int]] = {}

    def __call__(self, exc: BaseException) -> None:
        if not isinstance(exc, BridgeError):
            logger.error("unexpected failure", exc_info=exc)
            return
        if exc.status < 500:
            logger.info("%s: %s", type(exc).__name__, exc.detail or "-")
            return
        key = (type(exc), exc.detail)
        now = time.monotonic()
        last, repeats = self._last.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self._last[key] = (last, repeats + 1)
            return
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        more = f" (and {repeats} more like it since the last report)" if repeats else ""
        logger.warning("%s: %s%s", type(exc).__name__, exc.detail or "-", more,
                       exc_info=exc.__cause__ if exc.__cause__ else None)


class StrictTransportSecurityMiddleware:
    """Over HTTPS (served directly or by a trusted proxy), tell browsers to stay on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], HSTS]
            await send(message)

        await self.app(scope, receive, send_with_hsts)


HSTS = (b"strict-transport-security", b"max-age=31536000")


# The collector, measured at 1,000 connections (bench/loop_blocking.py). Requests leave
# almost no cyclic garbage (~0.5 objects each), but 1,000 in flight keep ~150,000
# objects alive, and any pass that walks them all holds the loop for 100-190 ms: a full
# one, however rare, and in CPython 3.11 a young one too, since the youngest
# generation's counter also drops when OLD objects die: under load it hardly reaches
# its threshold while the generation grows towards the whole live set. So
# `Collections` runs the youngest generation on every turn of a busy loop (each pass
# walks what one turn allocated and kept: under 10 ms), and older generations never by
# themselves (thresholds out of reach) but whole when the worker has no request in
# flight, or, under saturation without a pause, at most every GC_FULL_FORCED seconds.
GC_THRESHOLDS = (200, 1 << 30, 1 << 30)
GC_YOUNG_BUSY = 0.001   # seconds between young passes while the loop is busy
GC_YOUNG_IDLE = 0.05    # ... and at most this when it is not
GC_FULL_EVERY = 10.0    # seconds at least between two full passes
GC_FULL_FORCED = 60.0   # seconds at most without one (bounds cyclic garbage)


class Collections:
    """Young passes in small steps, full ones when no request task is alive (see above).

    A timer callback, not a task: a pass costs the loop one TimerHandle, no future.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, check_every: float = 1.0) -> None:
        self.loop = loop
        self.check_every = check_every
        self.pause = GC_YOUNG_BUSY
        self.last_full = self.due = loop.time()
        self.check = self.due + check_every
        self.quiet = len(asyncio.all_tasks(loop))  # the lifespan's own: the fewest ever seen
        self.handle = loop.call_later(self.pause, self.tick)

    def tick(self) -> None:
        now = self.loop.time()
        gc.collect(0)
        # woken late: a busy loop, pass often; on time: back off (an idle worker sleeps)
        late = now - self.due > self.pause + GC_YOUNG_BUSY
        self.pause = GC_YOUNG_BUSY if late else min(GC_YOUNG_IDLE, self.pause * 2)
        if now >= self.check:
            self.check = now + self.check_every
            tasks = len(asyncio.all_tasks(self.loop))
            self.quiet = min(self.quiet, tasks)
            since = now - self.last_full
            if since >= GC_FULL_FORCED or (since >= GC_FULL_EVERY and tasks <= self.quiet):
                gc.collect()
                self.last_full = self.loop.time()
        self.due = self.loop.time()
        self.handle = self.loop.call_later(self.pause, self.tick)

    def cancel(self) -> None:
        self.handle.cancel()


class Gateway:
    """Chooses the profile of a request and holds the runtime built from the settings.

    The runtime (backends, breakers, stores) is built in the lifespan; an ASGI
    server run without one (lifespan="off", some tests) gets it built at the first
    request instead, with backends that need no start().
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.proxies = list(settings.server.trusted_proxies)
        # path -> (host -> profile); host None is the profile for any other host
        self.by_path: dict[str, dict[str | None, Profile]] = {}
        for profile in settings.profiles:
            for path in profile.paths:
                self.by_path.setdefault(path, {})[profile.host] = profile

    def build(self) -> Runtime:
        if self.runtime is None:
            self.runtime = Runtime(self.settings)
        return self.runtime

    def profile(self, path: str, host: str | None) -> Profile:
        hosts = self.by_path[path]
        if len(hosts) == 1 and None in hosts:
            return hosts[None]
        profile = hosts.get(host) or hosts.get(None)
        if profile is None:
            raise NotFound(f"no profile for host {host!r} at {path}")
        return profile

    def client(self, request: Request) -> str | None:
        client = request.client.host if request.client else None
        if self.proxies:
            header = self.settings.server.forwarded_header
            client = client_address(client, header,
                                    ", ".join(request.headers.getlist(header)), self.proxies)
            request.state.client_address = client  # for the access log
        return client


def _host(request: Request) -> str | None:
    host = request.headers.get("host")
    if not host:
        return None
    if host.startswith("["):  # [v6]:port
        return host[1:].partition("]")[0].lower()
    return host.rpartition(":")[0].lower() if host.count(":") == 1 else host.lower()


def _routes(gen: Generation) -> list[BaseRoute]:
    """Every route of one configuration; its handlers use that configuration only."""
    settings, gateway, tokens, log_failure = gen.settings, gen.gateway, gen.tokens, gen.log_failure
    # every series a request touches, resolved here once (bridge/metrics.py)
    unknown = METRICS.profile(UNKNOWN)
    by_profile = {p.name: METRICS.profile(p.name) for p in settings.profiles}

    async def provision(request: Request) -> Response:
        started = time.perf_counter()
        policy: ErrorPolicy = settings.errors
        profile_name, tenant, username, client = UNKNOWN, None, None, None

        def finish(status: int) -> None:
            by_profile.get(profile_name, unknown).request(tenant or UNKNOWN, status,
                                                          time.perf_counter() - started)
            audit(profile=profile_name, tenant=tenant, username=username,
                  client=client or _peer(request), status=status, started=started)

        try:
            host = _host(request)
            path = request.scope["path"]
            profile = gateway.profile(path, host)
            profile_name, policy = profile.name, profile.errors
            client = gateway.client(request)
            credentials = credentials_from_query(request.scope["query_string"], profile.query,
                                                 client, request.headers.get("authorization"))
            register_secret(credentials.password)
            username = credentials.username
            logger.debug("request for %r (version %s) from %s", credentials.username,
                         credentials.version, client)
            route = gateway.build().route(profile, path, host,
                                          credentials.username)
            tenant = route.pipeline.name
            if route.username != credentials.username:
                credentials = replace(credentials, username=route.username)
            body = await route.provisioner.provision(credentials, route.pipeline)
        except Exception as exc:
            log_failure(exc)
            response = policy.response(exc)
            finish(response.status_code)
            return response
        finish(200)
        return XMLResponse(body)

    desks: dict[str, TokenDesk] = {}

    def token_endpoint(profile: Profile) -> Callable[[Request], Awaitable[Response]]:
        """GET token_path + TOKEN: the profile's document for the token's user, once."""
        assert tokens is not None
        policy = replace(profile.errors, challenge=None)  # no Basic prompt: no password here

        counted = by_profile[profile.name]

        async def provision_token(request: Request) -> Response:
            started = time.perf_counter()
            try:
                token = request.path_params["token"]
                register_secret(token)
                if request.method != "GET":  # a HEAD would spend the token for nothing
                    raise MethodNotAllowed("HEAD on the token endpoint")
                runtime = gateway.build()
                if profile.name not in desks:
                    desks[profile.name] = tokens.desk(profile.name, runtime.pipelines,
                                                      runtime.stores[0])
                body = await runtime.provisioners[profile.name].provision_token(
                    token, desks[profile.name], gateway.client(request))
            except Exception as exc:
                log_failure(exc)
                response = policy.response(exc)
                if isinstance(exc, MethodNotAllowed):
                    response.headers["Allow"] = "GET"
                counted.token_request(response.status_code)
                audit(profile=profile.name, tenant="token", username=None,
                      client=gateway.client(request), status=response.status_code,
                      started=started)
                return response
            counted.token_request(200)
            audit(profile=profile.name, tenant="token", username=None,
                  client=gateway.client(request), status=200, started=started)
            return XMLResponse(body)

        return provision_token

    async def metrics(request: Request) -> Response:
        return Response(METRICS.render(), media_type=METRICS_CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})

    async def readyz(request: Request) -> Response:
        timeout = settings.server.ready_timeout
        unready = await gateway.build().unready(timeout)
        if tokens is not None and (why := await readiness(tokens.store, timeout)):
            unready.append(("tokens", why))
        for where, why in unready:
            logger.warning("not ready: [%s] %s", where, why)
        status = 503 if unready else 200
        return PlainTextResponse("not ready\n" if unready else "ready\n", status,
                                 headers={"Cache-Control": "no-store"})

    server = settings.server
    routes: list[BaseRoute] = [Route(path, provision, methods=["GET"])
                               for path in gateway.by_path]
    for path, endpoint in ((server.metrics_path, metrics), (server.healthz_path, healthz),
                           (server.readyz_path, readyz)):
        if path:
            routes.append(Route(path, endpoint, methods=["GET"]))
    routes += [Route(path + "{token}", token_endpoint(profile), methods=["GET"])
               for path, profile in gen.token_paths.items()]
    if tokens is not None and tokens.config.admin.enabled:
        from bridge.tokens.admin import admin_routes

        routes += admin_routes(tokens.config.admin, lambda: tokens)
    if tokens is not None and settings.onboarding is not None:  # the self-service pages
        from bridge.onboarding.site import onboarding_routes

        routes += onboarding_routes(settings, gateway, tokens)
    return routes


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


class Generation:
    """One configuration: its settings, gateway, token service and routes.

    Every route counts its requests on this generation's runtime, so a reload
    (which builds the next generation and swaps the router's routes in one
    step) can close this one's backends once the requests it took are done.
    """

    def __init__(self, settings: Settings, log_failure: FailureLog) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        self.tokens = TokenService(settings) if settings.tokens else None
        self.log_failure = log_failure
        self.token_paths = {p.token_path: p for p in settings.profiles if p.token_path}
        server = settings.server
        self.quiet_paths = {p for p in (server.healthz_path, server.readyz_path) if p}
        self.routes: list[BaseRoute] = [_Counted(route, self.gateway.build)
                                        for route in _routes(self)]
        self._stack = contextlib.AsyncExitStack()
        self.closed = False

    async def start(self) -> None:
        """Open the backends (and the token service); on failure, close what opened."""
        try:
            await self._stack.enter_async_context(self.gateway.build().running())
            if self.tokens is not None:
                await self._stack.enter_async_context(self.tokens.running())
        except BaseException:
            await self._stack.aclose()
            raise

    async def close(self, grace: float) -> None:
        """Close the backends once the requests in flight are done (at most `grace` s)."""
        runtime = self.gateway.build()
        if not await runtime.drain(grace):
            logger.warning("closing the previous configuration's backends with %d request(s) "
                           "still in flight", runtime.in_flight)
        await self._stack.aclose()
        self.closed = True

    def successor(self, settings: Settings) -> Generation:
        """The next generation, for a reload: same failure log, new everything else."""
        return Generation(settings, self.log_failure)

    def trusts(self, peer: str | None) -> bool:
        """Whether `peer` is one of [server] trusted_proxies (may name the request id)."""
        if peer is None or not self.gateway.proxies:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.gateway.proxies)


class _Counted(BaseRoute):
    """A route whose requests count as in flight on the runtime that serves them."""

    def __init__(self, route: BaseRoute, runtime: Callable[[], Runtime]) -> None:
        self.route = route
        self.runtime = runtime

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return self.route.matches(scope)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.route.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.runtime().serving():
            await self.route.handle(scope, receive, send)


def create_app(settings: Settings, reload_from: Path | None = None) -> Starlette:
    """The gateway for `settings`; with `reload_from`, SIGHUP serves that file anew."""
    first = Generation(settings, FailureLog())
    # read per request, so that a reload can change them in place
    masked: list[str] = list(first.token_paths)  # a token endpoint's path ends with the token
    quiet: set[str] = set(first.quiet_paths)
    reloader = Reloader(first, reload_from, masked, quiet)

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        return reloader.current.settings.errors.response(mapped(exc.detail))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        METRICS.set("bridge_event_loop_lag_max_seconds", 0.0)
        watcher = asyncio.create_task(watch_event_loop())
        collector = Collections(asyncio.get_running_loop())
        try:
            async with reloader.serving():
                # Everything alive now (modules, settings, pools) lives as long as the
                # process: keep it out of the collector's full passes, which otherwise
                # held the event loop for up to ~12 ms under load.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
                yield
        finally:
            collector.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    middleware = [Middleware(RequestIdMiddleware,
                             trusted=lambda peer: reloader.current.trusts(peer))]
    if settings.server.access_log:
        middleware.append(Middleware(AccessLogMiddleware, masked_prefixes=masked,
                                     quiet_paths=quiet))
    middleware.append(Middleware(StrictTransportSecurityMiddleware))
    app = Starlette(
        routes=first.routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    reloader.router = app.router
    # "/provision/?user=..&password=.." must not become a redirect that echoes the query.
    app.router.redirect_slashes = False
    app.state.reloader = reloader
    return app

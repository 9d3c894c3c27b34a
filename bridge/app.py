"""The Starlette application: one route per profile (and its token endpoint), one error
mapping, backends in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
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
from bridge.logs import AccessLogMiddleware, register_secret
from bridge.metrics import METRICS, watch_event_loop
from bridge.params import credentials_from_query
from bridge.runtime import Runtime
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


# With a thousand requests in flight the default thresholds (700, 10, 10) made the
# collector run 16 full passes in 8 s: a quarter of the CPU, pauses of ~100 ms
# (bench/loop_blocking.py). Requests free almost everything by reference counting;
# rarer young collections and much rarer full ones cost little memory.
GC_THRESHOLDS = (50_000, 20, 100)


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


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)
    log_failure = FailureLog()

    async def provision(request: Request) -> Response:
        METRICS.inc("bridge_requests_total")
        policy: ErrorPolicy = settings.errors
        try:
            host = _host(request)
            path = request.scope["path"]
            profile = gateway.profile(path, host)
            policy = profile.errors
            client = gateway.client(request)
            credentials = credentials_from_query(request.scope["query_string"], profile.query,
                                                 client, request.headers.get("authorization"))
            register_secret(credentials.password)
            logger.debug("request for %r (version %s) from %s", credentials.username,
                         credentials.version, client)
            route = gateway.build().route(profile, path, host,
                                          credentials.username)
            if route.username != credentials.username:
                credentials = replace(credentials, username=route.username)
            body = await route.provisioner.provision(credentials, route.pipeline)
        except Exception as exc:
            log_failure(exc)
            response = policy.response(exc)
            METRICS.inc(f"bridge_responses_{response.status_code}_total")
            return response
        METRICS.inc("bridge_responses_200_total")
        return XMLResponse(body)

    tokens = TokenService(settings) if settings.tokens else None
    desks: dict[str, TokenDesk] = {}

    def token_endpoint(profile: Profile) -> Callable[[Request], Awaitable[Response]]:
        """GET token_path + TOKEN: the profile's document for the token's user, once."""
        assert tokens is not None
        policy = replace(profile.errors, challenge=None)  # no Basic prompt: no password here

        async def provision_token(request: Request) -> Response:
            METRICS.inc("bridge_token_requests_total")
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
                METRICS.inc(f"bridge_token_responses_{response.status_code}_total")
                return response
            METRICS.inc("bridge_token_responses_200_total")
            return XMLResponse(body)

        return provision_token

    async def metrics(request: Request) -> Response:
        return Response(METRICS.render(), media_type="text/plain; version=0.0.4")

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        return settings.errors.response(mapped(exc.detail))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        METRICS.set("bridge_event_loop_lag_max_seconds", 0.0)
        watcher = asyncio.create_task(watch_event_loop())
        try:
            async with gateway.build().running(), (tokens.running() if tokens
                                                   else contextlib.nullcontext()):
                # Everything alive now (modules, settings, pools) lives as long as the
                # process: keep it out of the collector's full passes, which otherwise
                # held the event loop for up to ~12 ms under load.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
                yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    token_paths = {p.token_path: p for p in settings.profiles if p.token_path}
    middleware = [Middleware(StrictTransportSecurityMiddleware)]
    if settings.server.access_log:  # a token endpoint's path ends with the token: masked
        middleware.insert(0, Middleware(AccessLogMiddleware, masked_prefixes=list(token_paths)))
    routes = [Route(path, provision, methods=["GET"]) for path in gateway.by_path]
    if settings.server.metrics_path:
        routes.append(Route(settings.server.metrics_path, metrics, methods=["GET"]))
    routes += [Route(path + "{token}", token_endpoint(profile), methods=["GET"])
               for path, profile in token_paths.items()]
    if tokens is not None and tokens.config.admin.enabled:
        from bridge.tokens.admin import admin_routes

        routes += admin_routes(tokens.config.admin, lambda: tokens)
    if tokens is not None and settings.onboarding is not None:  # the self-service pages
        from bridge.onboarding.site import onboarding_routes

        routes += onboarding_routes(settings, gateway, tokens)
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    # "/provision/?user=..&password=.." must not become a redirect that echoes the query.
    app.router.redirect_slashes = False
    return app

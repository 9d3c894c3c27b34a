"""The Starlette application: one route, one error mapping, backends in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator

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
from bridge.provision import Provisioner
from bridge.settings import Settings

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


def create_app(settings: Settings) -> Starlette:
    policy: ErrorPolicy = settings.errors
    provisioner = Provisioner.from_settings(settings)
    log_failure = FailureLog()
    proxies = list(settings.server.trusted_proxies)

    async def provision(request: Request) -> Response:
        METRICS.inc("bridge_requests_total")
        try:
            client = request.client.host if request.client else None
            if proxies:
                header = settings.server.forwarded_header
                client = client_address(client, header,
                                        ", ".join(request.headers.getlist(header)), proxies)
                request.state.client_address = client  # for the access log
            credentials = credentials_from_query(request.scope["query_string"],
                                                 settings.query, client)
            register_secret(credentials.password)
            logger.debug("request for %r (version %s) from %s", credentials.username,
                         credentials.version, client)
            body = await provisioner.provision(credentials)
        except Exception as exc:
            log_failure(exc)
            response = policy.response(exc)
            METRICS.inc(f"bridge_responses_{response.status_code}_total")
            return response
        METRICS.inc("bridge_responses_200_total")
        return XMLResponse(body)

    async def metrics(request: Request) -> Response:
        return Response(METRICS.render(), media_type="text/plain; version=0.0.4")

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        return policy.response(mapped(exc.detail))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        METRICS.set("bridge_event_loop_lag_max_seconds", 0.0)
        watcher = asyncio.create_task(watch_event_loop())
        try:
            async with provisioner.running():
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

    middleware = [Middleware(StrictTransportSecurityMiddleware)]
    if settings.server.access_log:
        middleware.insert(0, Middleware(AccessLogMiddleware))
    routes = [Route(settings.server.path, provision, methods=["GET"])]
    if settings.server.metrics_path:
        routes.append(Route(settings.server.metrics_path, metrics, methods=["GET"]))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    # "/provision/?user=..&password=.." must not become a redirect that echoes the query.
    app.router.redirect_slashes = False
    return app

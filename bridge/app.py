"""The Starlette application: one route, one error mapping, backends in the lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.errors import (
    BadRequest,
    BridgeError,
    ErrorPolicy,
    MethodNotAllowed,
    NotFound,
    XMLResponse,
)
from bridge.logs import AccessLogMiddleware, register_secret
from bridge.params import credentials_from_query
from bridge.provision import Provisioner
from bridge.settings import Settings

logger = logging.getLogger("bridge.app")


def log_failure(exc: BaseException) -> None:
    """4xx are the phone's business (info); 5xx are ours (warning, or error with traceback)."""
    if not isinstance(exc, BridgeError):
        logger.error("unexpected failure", exc_info=exc)
    elif exc.status >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.detail or "-",
                       exc_info=exc.__cause__ if exc.__cause__ else None)
    else:
        logger.info("%s: %s", type(exc).__name__, exc.detail or "-")


def create_app(settings: Settings) -> Starlette:
    policy: ErrorPolicy = settings.errors
    provisioner = Provisioner(settings.authenticator, settings.source, settings.mapping,
                              settings.server.deadline)

    async def provision(request: Request) -> Response:
        try:
            client = request.client.host if request.client else None
            credentials = credentials_from_query(request.scope["query_string"],
                                                 settings.query, client)
            register_secret(credentials.password)
            body = await provisioner.provision(credentials)
        except Exception as exc:
            log_failure(exc)
            return policy.response(exc)
        return XMLResponse(body)

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        return policy.response(mapped(exc.detail))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for backend in (settings.authenticator, settings.source):
                await backend.start()
                stack.push_async_callback(backend.close)
            yield

    middleware = [Middleware(AccessLogMiddleware)] if settings.server.access_log else []
    return Starlette(
        routes=[Route(settings.server.path, provision, methods=["GET"])],
        middleware=middleware,
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )

"""Logging that never prints a password.

Two layers. First, nothing logs query strings: uvicorn's access log (which
prints them) is replaced by `AccessLogMiddleware`, which logs the path only.
Second, as a safety net for messages we do not control (a library's exception
text, a traceback), the formatter masks the current request's secrets: the
request flow registers them in a context variable, which follows the request
into tasks and worker threads.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any
from urllib.parse import quote, quote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MASK = "********"
# Masking very short strings would mangle every log line; those are rare as
# passwords and are still never logged on purpose.
MIN_MASKED_LENGTH = 4

_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "bridge_secrets", default=()
)

access_logger = logging.getLogger("bridge.access")


def register_secret(secret: str) -> None:
    """Mask `secret` (and its URL-encoded forms) in every log line of this request."""
    if len(secret) < MIN_MASKED_LENGTH:
        return
    forms = (secret,)
    # only then can an encoded form differ from the secret itself ("ü".isalnum() is True)
    if not (secret.isascii() and secret.isalnum()):
        variants = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
        forms = tuple(sorted(variants, key=len, reverse=True))
    _secrets.set(_secrets.get() + forms)


def redact(text: str) -> str:
    for secret in _secrets.get():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def logging_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for our loggers and uvicorn's, all through the redacting formatter."""
    handler = {"class": "logging.StreamHandler", "formatter": "default",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {
            "()": "bridge.logs.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }},
        "handlers": {"default": handler},
        "loggers": {
            "bridge": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            # Never enabled: they print request URLs with their query strings.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "httpx": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


class AccessLogMiddleware:
    """One line per request: client, method, path (never the query), status, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # the address behind a trusted proxy when the endpoint worked it out, else the peer
            client = scope.get("state", {}).get("client_address")
            if client is None and (peer := scope.get("client")):
                client = peer[0]
            access_logger.info(
                '%s "%s %s HTTP/%s" %d %.1fms',
                client or "-", scope["method"], scope["path"],
                scope.get("http_version", "1.1"), status,
                (time.perf_counter() - start) * 1000,
            )

"""The HTTP admin API for tokens: what `zoiper-bridge token` does, as JSON, for a portal.

    POST   PREFIX                 {"username": "alice", "profile": "default", "tenant": null,
                                   "ttl": "24h", "uses": 1}  -> 201 {"token", "link", ...}
    GET    PREFIX[?username=U]    -> {"tokens": [{"fingerprint", "status", ...}]}
    DELETE PREFIX/FINGERPRINT     -> {"revoked": ["fingerprint", ...]}
    DELETE PREFIX?username=U      -> every live token of U revoked

Off unless `[tokens.admin] enabled = true`, which the configuration refuses
without a secret. Every request needs `Authorization: Bearer SECRET`; the
secret is compared in constant time (hashes of both sides, so not even its
length shows). Put the prefix behind the reverse proxy's access rules too:
whoever has the secret can issue a token for anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.errors import BridgeError
from bridge.tokens.config import AdminSettings, parse_duration
from bridge.tokens.service import TokenError, TokenService
from bridge.tokens.store import Ticket

logger = logging.getLogger("bridge.tokens.admin")

MAX_BODY = 8192
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status, {**NO_STORE, **(headers or {})})


def _ticket(t: Ticket) -> dict[str, Any]:
    return {"fingerprint": t.fingerprint, "username": t.username, "profile": t.profile,
            "pipeline": t.pipeline, "status": t.status(), "uses": t.uses, "used": t.used,
            "created": t.created, "expires": t.expires}


def admin_routes(settings: AdminSettings, service: Callable[[], TokenService]) -> list[Route]:
    """The routes under `settings.path`; `service` gives the started token service."""
    expected = hashlib.sha256(settings.secret.encode()).digest()

    def authorized(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = hashlib.sha256(value.strip().encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(given, expected) and scheme.lower() == "bearer"

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                logger.warning("admin API: refused %s %s (no or a wrong bearer secret)",
                               request.method, request.url.path)
                return _json({"error": "unauthorized"}, 401,
                             {"WWW-Authenticate": 'Bearer realm="zoiper-bridge tokens"'})
            try:
                return await handler(request)
            except (TokenError, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
            except BridgeError as exc:
                logger.warning("admin API: %s", exc.detail)
                return _json({"error": "token store unavailable"}, 503)

        return endpoint

    async def collection(request: Request) -> Response:
        tokens = service()
        username = request.query_params.get("username")
        if request.method == "GET":
            return _json({"tokens": [_ticket(t) for t in await tokens.tickets(username)]})
        if request.method == "DELETE":
            if not username:
                raise ValueError("DELETE needs ?username=U, or PREFIX/FINGERPRINT")
            revoked = await tokens.revoke(username=username)
            return _json({"revoked": [t.fingerprint for t in revoked]})
        body = await _body(request)
        issued = await tokens.issue(
            _text(body, "username", required=True) or "",
            _text(body, "profile") or "default", tenant=_text(body, "tenant"),
            ttl=parse_duration(body["ttl"]) if body.get("ttl") is not None else None,
            uses=_number(body, "uses"))
        logger.info("admin API: issued token %s for %r", issued.ticket.fingerprint,
                    issued.ticket.username)
        return _json({"token": issued.token, "link": issued.link, **_ticket(issued.ticket)},
                     201)

    async def one(request: Request) -> Response:
        revoked = await service().revoke(fingerprint=request.path_params["fingerprint"])
        return _json({"revoked": [t.fingerprint for t in revoked]})

    prefix = settings.path
    return [Route(prefix, guarded(collection), methods=["GET", "POST", "DELETE"]),
            Route(prefix + "/{fingerprint}", guarded(one), methods=["DELETE"])]


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ValueError("the request body is too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    unknown = set(body) - {"username", "profile", "tenant", "ttl", "uses"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return body


def _text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _number(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key!r} must be an integer")
    return value

"""Logging that never prints a password.

Three layers. First, nothing logs request targets below the application:
uvicorn's access log (which prints query strings) is replaced by
`AccessLogMiddleware`, which logs the path only, and the listener
(bridge/listener.py) turns uvicorn's other per-request lines off. Second, as a
safety net for messages we do not control (a library's exception text, a
traceback), the formatter masks the current request's secrets and the forms
derived from them (URL-encoded, hex, base64, MD5): the request flow registers
them in a context variable, which follows the request into tasks and worker
threads. Third, the formatter masks the value of every configured credential
parameter (`password=...`, `password%3D...`, `"password": "..."`), whoever's
it is: the names come from the configuration at start-up.

Every line logged while a request is served carries its request id (from a
trusted proxy's X-Request-ID, else generated; returned in the response), as
text for a terminal or as one JSON object per line for a log pipeline. Each
provisioning attempt also writes one audit line (logger `bridge.audit`) whose
fixed-position client address deploy/fail2ban/ matches.
"""

from __future__ import annotations

import binascii
import contextvars
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, quote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MASK = "********"
# Masking very short strings would mangle every log line; those are rare as
# passwords and are still never logged on purpose.
MIN_MASKED_LENGTH = 4
MIN_DERIVED_LENGTH = 6  # likewise for a derived form (a base64 fragment of a short secret)
DEFAULT_CREDENTIAL_PARAMS = ("password",)

_secrets: contextvars.ContextVar[tuple[_Secret, ...]] = contextvars.ContextVar(
    "bridge_secrets", default=()
)

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("bridge_request_id",
                                                                  default="-")

access_logger = logging.getLogger("bridge.access")
audit_logger = logging.getLogger("bridge.audit")


_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_URLSAFE = str.maketrans("+/", "-_")


def _base64_cores(raw: bytes) -> set[str]:
    """What any base64 text containing `raw` contains, at each of the 3 alignments.

    `user:secret` in a Basic header encodes `secret` at some offset; only the
    characters whose 6 bits all come from the secret are the same every time.
    """
    cores = set()
    for k in range(3):
        start, end = -(-8 * k // 6), 8 * (k + len(raw)) // 6
        core = binascii.b2a_base64(b"\0" * k + raw, newline=False).decode("ascii")[start:end]
        cores.add(core)
        cores.add(core.translate(_URLSAFE))
    return cores


def derived_forms(secret: str) -> tuple[str, ...]:
    """The secret and the forms in which a library might print it, longest first."""
    raw = secret.encode("utf-8")
    forms = {secret, raw.hex(), raw.hex().upper()}
    if not (secret.isascii() and secret.isalnum()):
        for encoded in {quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}:
            forms.add(encoded)
            forms.add(_ESCAPE.sub(lambda m: m.group().lower(), encoded))
    # as a repr or a JSON string prints it (escaped quotes, backslashes, tabs, non-ASCII)
    forms |= {repr(secret)[1:-1], ascii(secret)[1:-1], json.dumps(secret)[1:-1],
              json.dumps(secret, ensure_ascii=False)[1:-1]}
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    forms |= {md5, md5.upper()}
    forms |= _base64_cores(raw)
    kept = {f for f in forms if f == secret or len(f) >= MIN_DERIVED_LENGTH}
    return tuple(sorted(kept, key=len, reverse=True))


class _Secret:
    """A registered secret; its derived forms are worked out when a line is first logged."""

    __slots__ = ("_forms", "value")

    def __init__(self, value: str) -> None:
        self.value = value
        self._forms: tuple[str, ...] | None = None

    @property
    def forms(self) -> tuple[str, ...]:
        if self._forms is None:
            self._forms = derived_forms(self.value)
        return self._forms


def register_secret(secret: str) -> None:
    """Mask `secret` (and its derived forms) in every log line of this request."""
    if len(secret) < MIN_MASKED_LENGTH:
        return
    _secrets.set((*_secrets.get(), _Secret(secret)))


# -- credential parameters, by pattern -----------------------------------------------------

# A value: quoted (JSON, a repr), or up to '&', an encoded '&', a space or what a URL
# cannot hold unencoded. Too much masked is harmless; too little is a leak.
_VALUE = (r"""(?P<value>b?"(?:\\.|[^"\\])*"?|b?'(?:\\.|[^'\\])*'?"""
          r"""|(?:(?!%(?:25)?26)[^&\s"<>])+)""")
_SEPARATOR = r"""(?P<sep>%(?:25)?3D|["']?\s*[:=]\s*)"""


def _name_pattern(name: str) -> str:
    """`name` with each character literal or percent-encoded (once or twice)."""
    parts = []
    for char in name:
        encoded = "".join(f"%(?:25)?{byte:02X}" for byte in char.encode("utf-8"))
        literal = r"(?:\+| )" if char == " " else re.escape(char)
        parts.append(f"(?:{literal}|{encoded})")
    return "".join(parts)


_param_names: tuple[str, ...] = ()
_param_pattern: re.Pattern[str] | None = None


def set_credential_params(names: Iterable[str]) -> None:
    """The query parameters whose values no log line may show (plus `password`)."""
    global _param_names, _param_pattern
    unique = {n.lower() for n in (*names, *DEFAULT_CREDENTIAL_PARAMS) if n}
    _param_names = tuple(sorted(unique, key=len, reverse=True))
    alternatives = "|".join(_name_pattern(n) for n in _param_names)
    _param_pattern = re.compile(f"(?P<key>{alternatives}){_SEPARATOR}{_VALUE}", re.IGNORECASE)


set_credential_params(())


def _mask_param(match: re.Match[str]) -> str:
    return match.group("key") + match.group("sep") + MASK


def redact(text: str) -> str:
    for secret in _secrets.get():
        for form in secret.forms:
            if form in text:
                text = text.replace(form, MASK)
    if _param_pattern is not None:
        lowered = text.lower()
        if "%" in text or any(name in lowered for name in _param_names):
            text = _param_pattern.sub(_mask_param, text)
    return text


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, datefmt: str | None = None,
                 style: Literal["%", "{", "$"] = "%", validate: bool = True, *,
                 credential_params: Sequence[str] | None = None) -> None:
        super().__init__(fmt, datefmt, style, validate)
        if credential_params is not None:
            set_credential_params(credential_params)

    def format(self, record: logging.LogRecord) -> str:
        rid = _request_id.get()
        record.request_id = rid
        record.request = "" if rid == "-" else f" request_id={rid}"
        return redact(super().format(record))


class JSONFormatter(RedactingFormatter):
    """One JSON object per line: time, level, logger, request_id, message (+ audit fields).

    Each string is redacted before encoding: a secret with a character JSON
    escapes would otherwise no longer appear verbatim in the line, and slip by.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": _request_id.get(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "audit", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        clean = {key: redact(value) if isinstance(value, str) else value
                 for key, value in entry.items()}
        return json.dumps(clean, ensure_ascii=False)


# The request id last, and only within a request: lines keep the form "LEVEL logger: text".
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(request)s"

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def logging_config(level: str = "info", credential_params: Sequence[str] = (),
                   log_format: Literal["text", "json"] = "text") -> dict[str, Any]:
    """A dictConfig for our loggers and uvicorn's, all through the redacting formatter.

    `credential_params`: the configured password parameter names (see `redact`);
    a dictConfig carries them into worker processes.
    """
    handler = {"class": "logging.StreamHandler", "formatter": "default",
               "stream": "ext://sys.stderr"}
    # Never below DEBUG for uvicorn: at its TRACE level it logs every ASGI message,
    # query strings included.
    uvicorn_level = level.upper() if level.upper() in _LEVELS else "DEBUG"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {
            "()": f"bridge.logs.{'JSON' if log_format == 'json' else 'Redacting'}Formatter",
            "fmt": TEXT_FORMAT,
            "credential_params": list(credential_params),
        }},
        "handlers": {"default": handler},
        "loggers": {
            "bridge": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": uvicorn_level, "propagate": False},
            # Never enabled: they print request URLs with their query strings.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "uvicorn.asgi": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "httpx": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


# What a proxy may hand on: no spaces, quotes or control characters to forge log lines.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdMiddleware:
    """X-Request-ID: taken from a trusted proxy when well-formed, else generated; echoed.

    Set outermost, so the access log, the audit line and everything the request
    logs below (in tasks and threads too: a context variable) carry it.
    `trusted(peer)` says whether the direct peer may name the id.
    """

    def __init__(self, app: ASGIApp, trusted: Callable[[str | None], bool]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        peer = scope["client"][0] if scope.get("client") else None
        rid = ""
        if given is not None and self.trusted(peer):
            text = given.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                rid = text
        # an id, not a secret: the module's PRNG (reseeded in forked children by CPython)
        # saves the getrandom() system call per request that secrets.token_hex made
        rid = rid or f"{random.getrandbits(64):016x}"
        token = _request_id.set(rid)
        header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


class AccessLogMiddleware:
    """One line per request: client, method, path (never the query), status, time.

    A path under one of `masked_prefixes` (a token endpoint: the rest of the path
    is a one-time token) is logged as the prefix followed by the mask. Paths in
    `quiet_paths` (health probes, every few seconds) are not logged. Both are
    read per request, so a reload can change them in place.
    """

    def __init__(self, app: ASGIApp, masked_prefixes: Sequence[str] = (),
                 quiet_paths: Collection[str] = ()) -> None:
        self.app = app
        self.masked_prefixes = masked_prefixes
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.quiet_paths:
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
            path = scope["path"]
            for prefix in self.masked_prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    path = prefix + MASK
                    break
            access_logger.info(
                '%s "%s %s HTTP/%s" %d %.1fms',
                client or "-", scope["method"], path,
                scope.get("http_version", "1.1"), status,
                (time.perf_counter() - start) * 1000,
            )


def audit(*, profile: str, tenant: str | None, username: str | None, client: str | None,
          status: int, started: float) -> None:
    """One line per provisioning attempt, for people and for fail2ban.

    The client address comes first after a fixed prefix, so that nothing the
    phone sends (the username is quoted, after it) can move what a filter reads.
    """
    if not audit_logger.isEnabledFor(logging.INFO):  # log_level above info: no line to build
        return
    result = outcome(status)
    duration = (time.perf_counter() - started) * 1000
    fields = {"profile": profile, "tenant": tenant or "-", "username": username,
              "client": client or "-", "outcome": result, "status": status,
              "duration_ms": round(duration, 1)}
    audit_logger.info("provision client=%s outcome=%s status=%d profile=%s tenant=%s "
                      "user=%s %.1fms", client or "-", result, status, profile,
                      tenant or "-", json.dumps(username, ensure_ascii=True), duration,
                      extra={"audit": fields})


def outcome(status: int) -> str:
    """ok, auth_failed, rate_limited, rejected or error: the audit line's (and the metrics')."""
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "auth_failed"
    if status == 429:
        return "rate_limited"
    return "rejected" if status < 500 else "error"

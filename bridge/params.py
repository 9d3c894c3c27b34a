"""Taking the credentials out of the query string, exactly as the user typed them.

We parse the raw query ourselves instead of using Starlette's `query_params`
because two details matter here and must be the operator's choice:

* '+' : in form encoding it means a space. A phone that percent-encodes sends
  '%2B' for a typed '+', so `plus = "space"` (the default) is right for it. A
  phone that pastes the password into the URL unencoded sends a raw '+' for a
  typed '+'; `plus = "literal"` keeps it. ('%20' is always a space and '%2B'
  always a plus.)
* Bytes that are not UTF-8 after percent-decoding are a bad request, not
  silently replaced with U+FFFD (which would turn two different passwords
  into the same one).

A parameter given twice is a bad request: which one the authenticator should
see would be a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from bridge.config import Section
from bridge.errors import BadRequest
from bridge.models import Credentials

CURRENT_VERSION = (1, 14)
_VERSION = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4}){0,3}")
# C0 controls, DEL and NUL never belong in a login; refusing them early keeps
# them out of LDAP filters, SQL and logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class QuerySettings:
    username: str = "user"
    password: str = "password"  # noqa: S105 (a parameter name)
    version: str = "version"
    plus: str = "space"  # or "literal"
    max_query_length: int = 4096
    max_username_length: int = 256
    max_password_length: int = 1024

    @classmethod
    def from_config(cls, cfg: Section) -> QuerySettings:
        d = cls()
        return cls(
            username=cfg.str("username_param", d.username, nonempty=True),
            password=cfg.str("password_param", d.password, nonempty=True),
            version=cfg.str("version_param", d.version, nonempty=True),
            plus=cfg.str("plus", d.plus, choices=("space", "literal")),
            max_query_length=cfg.int("max_query_length", d.max_query_length, min=64),
            max_username_length=cfg.int("max_username_length", d.max_username_length, min=1),
            max_password_length=cfg.int("max_password_length", d.max_password_length, min=1),
        )


def parse_query(raw: bytes, plus_is_space: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        if plus_is_space:
            name, value = name.replace(b"+", b" "), value.replace(b"+", b" ")
        try:
            key = unquote_to_bytes(name).decode("utf-8")
            text = unquote_to_bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("query parameter is not valid UTF-8") from None
        if key in params:
            # Not named: with an unencoded '&' in a password, the "name" is part of it.
            raise BadRequest("a query parameter is given more than once")
        params[key] = text
    return params


def parse_version(value: str | None) -> tuple[int, ...]:
    """Absent, older or newer versions all get the current (1.14) format.

    Zoiper may stop sending the parameter, so absence means "current". Only a
    value that is not a version at all is refused.
    """
    if value is None or value == "":
        return CURRENT_VERSION
    if not _VERSION.fullmatch(value):
        raise BadRequest("malformed version parameter")
    return tuple(int(p) for p in value.split("."))


def credentials_from_query(
    raw: bytes, settings: QuerySettings, client: str | None = None
) -> Credentials:
    if len(raw) > settings.max_query_length:
        raise BadRequest(f"query string longer than {settings.max_query_length} bytes")
    params = parse_query(raw, settings.plus == "space")
    username = params.get(settings.username, "")
    password = params.get(settings.password, "")
    if not username or not password:
        raise BadRequest("username or password missing or empty")
    if len(username) > settings.max_username_length:
        raise BadRequest("username too long")
    if len(password) > settings.max_password_length:
        raise BadRequest("password too long")
    if _CONTROL.search(username) or _CONTROL.search(password):
        raise BadRequest("control character in username or password")
    version = params.get(settings.version)
    parse_version(version)
    return Credentials(username=username, password=password, version=version, client=client)

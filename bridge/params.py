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

Zoiper5 Desktop may send the credentials as HTTP Basic instead (its
`authentication_type` basic), and by default sends an MD5 of the password
instead of the password (`password_format` 0). Which transports and which
format a profile accepts is its `[request]` configuration; an MD5 is 32 hex
digits, kept lower-case, and is as secret as the password it stands for.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal
from urllib.parse import unquote_to_bytes

from pydantic import Field, field_validator

from bridge.config import Model
from bridge.errors import AuthenticationFailed, BadRequest
from bridge.models import Credentials

CURRENT_VERSION = (1, 14)
_VERSION = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4}){0,3}")
# C0 controls, DEL and NUL never belong in a login; refusing them early keeps
# them out of LDAP filters, SQL and logs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
DIALECT_NAMES = ("android", "ios", "desktop")


class QuerySettings(Model):
    """`[request]`: how one kind of client sends its request."""

    username: str = Field("user", alias="username_param", min_length=1)
    password: str = Field("password", alias="password_param", min_length=1)
    version: str = Field("version", alias="version_param", min_length=1)
    plus: Literal["space", "literal"] = "space"
    max_query_length: int = Field(4096, ge=64)
    max_username_length: int = Field(256, ge=1)
    max_password_length: int = Field(1024, ge=1)
    # "query": URL parameters; "basic": an Authorization: Basic header; "any": either.
    credentials: Literal["query", "basic", "any"] = "query"
    # "md5": the app sends the MD5 of the password in hex (Zoiper5 Desktop's default).
    password_format: Literal["plaintext", "md5"] = "plaintext"  # noqa: S105
    dialect: Literal["android", "ios", "desktop"] = "android"
    realm: str = "zoiper-bridge"  # in the Basic challenge of a 401

    model_config = {**Model.model_config, "populate_by_name": True}

    @field_validator("realm")
    @classmethod
    def _quotable(cls, value: str) -> str:
        if not value or any(c in value for c in '"\\') or _CONTROL.search(value):
            raise ValueError("must be plain text without quotes or backslashes")
        return value


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
    raw: bytes, settings: QuerySettings, client: str | None = None,
    authorization: str | None = None,
) -> Credentials:
    """The credentials of one request, from the query string or an Authorization header."""
    if len(raw) > settings.max_query_length:
        raise BadRequest(f"query string longer than {settings.max_query_length} bytes")
    params = parse_query(raw, settings.plus == "space")
    if settings.credentials == "basic" or (settings.credentials == "any" and authorization):
        username, password = basic_credentials(authorization)
    else:
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
    if settings.password_format == "md5":  # noqa: S105
        if not _MD5.fullmatch(password):
            raise BadRequest("password is not an MD5 (32 hex digits) as this profile expects")
        password = password.lower()
    version = params.get(settings.version)
    parse_version(version)
    return Credentials(username=username, password=password, version=version, client=client,
                       password_format=settings.password_format)


def basic_credentials(header: str | None) -> tuple[str, str]:
    """(username, password) of an `Authorization: Basic` header (RFC 7617, UTF-8).

    No header, or another scheme, is a 401 (the response carries the challenge);
    a header that does not decode is a 400.
    """
    if not header:
        raise AuthenticationFailed("no Authorization header (HTTP Basic expected)")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed("Authorization header is not HTTP Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest("Authorization header is not valid base64 of UTF-8 text") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise BadRequest("Authorization header has no ':' between username and password")
    return username, password

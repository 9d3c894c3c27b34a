"""Users and their stored passwords in an SQL database (billing systems, PBXs).

    [auth]
    type = "sql"
    url_env = "BILLING_DSN"
    query = '''SELECT login AS username, pw_hash, full_name
               FROM customers WHERE login = {login.username}'''
    password_column = "pw_hash"
    password_scheme = "auto"      # or plaintext, md5, sha1, sha256, sha512, bcrypt,
                                  # sha512_crypt, sha256_crypt, md5_crypt, mysql41, argon2, ha1
    # salt_column = "salt"        # md5/sha* only: the salt, before or after the password
    # salt_position = "after"
    # realm_column = "realm"      # ha1 only: MD5(username:realm:password); or realm = "..."
    # username_column = "username"  # the canonical name (default: the name the phone sent)
    # or: preset = "asterisk-pjsip" | "asterisk-sippeers" | "freepbx" | "fusionpbx" | "kamailio"

The query finds the user's row by `{login.username}` (a bound parameter: see
bridge.sql.query). Exactly one row, whose stored password verifies (constant
time, bridge.hashes), is a login; its other columns become identity attributes
(never the password, salt or digest columns). No row, two rows, an empty or
NULL password, or a stored value in no recognised format (logged with the user's
name, never the value): invalid credentials, after checking the password against
a decoy of the same scheme and cost, so that an unknown name costs what a wrong
password costs (the cost is learnt from the rows: with "auto", the last real
row's scheme and parameters; until one is seen, the configured scheme's usual
cost, or nothing for "auto"). "auto" recognises the scheme by the stored value's prefix or
length (bcrypt, crypt, argon2, *MySQL, hex digests): a table migrated from MD5
to bcrypt user by user works as it is; plaintext must be named.

A phone that sends an MD5 of the password (Zoiper5, password_format = "md5") can
be checked only against plaintext or unsalted MD5 storage: for other schemes
the profile is refused when the configuration is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pydantic import PrivateAttr, model_validator

from bridge import hashes
from bridge.auth import Authenticator
from bridge.config import problem
from bridge.errors import InternalError, UpstreamError
from bridge.models import Credentials, Identity, Scalar
from bridge.placeholders import UnsafeValue, Values
from bridge.sql import BoundQuery, SQLConnection, checked_query
from bridge.sql.db import scalar
from bridge.sql.presets import PRESETS
from bridge.sql.query import select_columns

logger = logging.getLogger(__name__)
SchemeName = Literal["auto", "plaintext", "md5", "sha1", "sha256", "sha512", "bcrypt",
                     "sha512_crypt", "sha256_crypt", "md5_crypt", "mysql41", "argon2", "ha1"]
_SLOW = {"bcrypt", "argon2", *hashes.CRYPT}


class SQLAuthConfig(SQLConnection):
    password_column: str | None = None
    password_scheme: SchemeName | None = None
    salt_column: str | None = None
    salt_position: Literal["before", "after"] = "after"
    realm_column: str | None = None
    realm: str | None = None
    username_column: str | None = None
    _query: BoundQuery = PrivateAttr()
    # ((scheme, column), ...): the first non-empty column of a row is checked, in its scheme.
    _resolved: tuple[tuple[tuple[str, str], ...], str | None, str | None,
                     frozenset[str]] = PrivateAttr()

    @model_validator(mode="after")
    def _rules(self) -> SQLAuthConfig:
        preset = PRESETS[self.preset] if self.preset is not None else None
        scheme: str
        stores: tuple[tuple[str, str], ...]
        realm_column: str | None
        username: str | None
        hidden: frozenset[str]
        if preset is not None and self.query is not None:
            raise problem(f"give either query or preset, not both (preset {self.preset!r} "
                          f"has its own query)", "query")
        if preset is not None:
            scheme = self.password_scheme or next(iter(preset.password_columns))
            if self.password_column is None and scheme not in preset.password_columns:
                raise problem(f"preset {preset.name!r} stores passwords as "
                              f"{' or '.join(preset.password_columns)}; give password_column "
                              f"for {scheme!r}", "password_scheme")
            column = self.password_column or preset.password_columns[scheme]
            stores = ((scheme, column),)
            if self.password_scheme is None and self.password_column is None:
                # The preset's own columns in order: Asterisk's userpass rows have a
                # password, its md5 rows only md5_cred; Kamailio's password may be ''.
                stores = tuple(preset.password_columns.items())
            realm_column = self.realm_column or preset.realm_column
            username = self.username_column or "username"
            hidden = preset.hidden | {column}
        else:
            scheme = self.password_scheme or "auto"
            column = self.password_column or "password"
            stores = ((scheme, column),)
            realm_column, username = self.realm_column, self.username_column
            hidden = frozenset({column})
        if self.salt_column is not None:
            if scheme not in hashes.HEX_SCHEMES:
                raise problem(f"a salt goes with md5, sha1, sha256 or sha512, not {scheme!r}",
                              "salt_column")
            hidden = hidden | {self.salt_column}
        schemes = {s for s, _ in stores}
        if "ha1" in schemes and realm_column is None and self.realm is None:
            raise problem("ha1 is MD5(username:realm:password): give realm_column or realm",
                          "realm_column")
        template = self.query if self.query is not None else preset.auth_query  # type: ignore[union-attr]
        self._query = checked_query(template, frozenset({"login"}))
        columns = select_columns(self._query.sql,
                                 fold_lower=self.url.lower().startswith("postgres"))
        for key, name in (*(("password_column", c) for _, c in stores),
                          ("salt_column", self.salt_column),
                          ("realm_column", realm_column if "ha1" in schemes else None),
                          ("username_column", self.username_column)):
            if name is not None and columns is not None and name not in columns:
                raise problem(f"the query returns no column {name!r} (it returns: "
                              f"{', '.join(sorted(columns))})", key)
        self._resolved = (stores, realm_column, username, frozenset(hidden))
        return self

    @property
    def bound(self) -> BoundQuery:
        return self._query

    @property
    def resolved(self) -> tuple[tuple[tuple[str, str], ...], str | None, str | None,
                                frozenset[str]]:
        """((scheme, column), ...), realm column, username column, hidden columns."""
        return self._resolved


class SQLAuthenticator(Authenticator):
    Config = SQLAuthConfig
    # What a class can check; the instance narrows it to its scheme (read by the loader).
    password_formats = frozenset({"plaintext", "md5"})

    def __init__(self, config: SQLAuthConfig) -> None:
        super().__init__(config)
        self.query = config.bound
        self.stores, self.realm_column, self.username_column, self.hidden = config.resolved
        self.scheme, self.column = self.stores[0]
        self.salt_column = config.salt_column
        self.salt_position = config.salt_position
        self.realm = config.realm
        self.db = config.database()
        md5_ok = self.scheme in ("plaintext", "md5") and self.salt_column is None
        self.password_formats = frozenset({"plaintext", "md5"} if md5_ok else {"plaintext"})
        self._decoys: dict[str, str] = {}
        self._decoy_key = self.scheme if self.scheme != "auto" else "plaintext"

    async def start(self) -> None:
        """A query that does not return the columns named here stops the start; a database
        that is down does not (503s until it is back)."""
        try:
            await self.ready()
        except UpstreamError as exc:
            logger.warning("%s; the query's columns are checked once it answers", exc.detail)

    async def close(self) -> None:
        await self.db.close()

    async def ready(self) -> None:
        """Connect, and check that the query returns the columns this table names."""
        columns = set(await self.db.columns(self.query))
        ha1 = any(scheme == "ha1" for scheme, _ in self.stores)
        wanted = [c for c in (*(c for _, c in self.stores), self.salt_column,
                              self.username_column, self.realm_column if ha1 else None) if c]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise InternalError(f"sql {self.db.name}: the query returns no column "
                                f"{', '.join(map(repr, missing))} (it returns: "
                                f"{', '.join(sorted(columns))})")

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        try:
            params = self.query.bind(Values(credentials).lookup)
        except UnsafeValue:  # a name that cannot be sent (a NUL) is nobody's
            await self._decoy(credentials)
            return None
        columns, rows = await self.db.fetch(self.query, params)
        if self.column not in columns:
            raise InternalError(f"sql {self.db.name}: the query returns no column "
                                f"{self.column!r}")
        if len(rows) > 1:
            logger.warning("sql auth: %d rows for user %r: refused as ambiguous", len(rows),
                           credentials.username)
        row = dict(zip(columns, rows[0], strict=True)) if len(rows) == 1 else None
        found = next(((s, v) for s, c in self.stores if (v := _text(row.get(c)))),
                     None) if row is not None else None
        scheme, stored = found or (self.scheme, "")
        if scheme == "auto":
            scheme = hashes.identify(stored) or ""
        if row is not None and stored and not scheme:
            logger.error("sql auth: the stored password of user %r is in no recognised "
                         "format (set password_scheme)", credentials.username)
        if row is None or not stored or not scheme:
            await self._decoy(credentials)
            return None
        ok = await self._verify(scheme, credentials, stored, row)
        if not ok:
            return None
        name = _text(row.get(self.username_column)) if self.username_column else ""
        attributes = {k: value for k, raw in row.items()
                      if k not in self.hidden and (value := scalar(raw)) is not None}
        return Identity(name or credentials.username, attributes)

    async def _verify(self, scheme: str, credentials: Credentials, stored: str,
                      row: dict[str, Any]) -> bool:
        key = hashes.cost_key(scheme, stored)
        if key != self._decoy_key:
            self._decoy_key = key  # unknown users now cost what this user costs
            if key not in self._decoys:
                self._decoys[key] = await asyncio.to_thread(hashes.decoy, scheme, stored)
        if credentials.password_format == "md5":  # noqa: S105
            if scheme not in ("plaintext", "md5") or self.salt_column:
                logger.warning("sql auth: user %r has only a %s password, which an MD5 from "
                               "the phone cannot be checked against", credentials.username,
                               scheme)
            return hashes.verify_md5(scheme, credentials.password, stored)
        salt = hashes.Salt(_text(row.get(self.salt_column)) if self.salt_column else "",
                           self.salt_position)
        username = _text(row.get(self.username_column or "username")) or credentials.username
        realm = _text(row.get(self.realm_column)) if self.realm_column else ""
        args = (scheme, credentials.password, stored, salt, username, realm or self.realm or "")
        if scheme in _SLOW:
            return await asyncio.to_thread(hashes.verify, *args)
        return hashes.verify(*args)

    async def _decoy(self, credentials: Credentials) -> None:
        key = self._decoy_key
        scheme = key.split(":", 1)[0]
        if key not in self._decoys:
            self._decoys[key] = await asyncio.to_thread(hashes.decoy, scheme)
        stored = self._decoys[key]
        if credentials.password_format == "md5":  # noqa: S105
            hashes.verify_md5(scheme, credentials.password, stored)
        elif scheme in _SLOW:
            await asyncio.to_thread(hashes.verify, scheme, credentials.password, stored)
        else:
            hashes.verify(scheme, credentials.password, stored, username=credentials.username)


def _text(value: Scalar | Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)

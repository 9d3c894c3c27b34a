"""Account rows from an SQLite database (the embedded default's billing stand-in).

    [source]
    type = "sqlite"
    path = "accounts.sqlite"
    query = "SELECT sip_user, sip_password, domain FROM accounts WHERE login = {identity.username}"

Every value is a bound parameter, never formatted into the SQL: the
placeholders of bridge.placeholders (`{identity.username}` the canonical name,
`{identity.<attribute>}`, `{login.username}` the name the phone sent; not
inside quotes) become `:p0`, `:p1`, ...; the older spellings stay, as
aliases: `:username` is `{identity.username}` and `:login` is
`{login.username}`. `{login.password}` is not available: an account database
has no use for it. A value that cannot be bound (a NUL) is a 500 naming the
field. Each row is one account; its column names are the `{account.*}`
fields. The database is opened read-only: the gateway never writes to a
provider's data. The query is prepared against the database when the gateway
starts (and by `check-config --connect`), so a typo stops the start instead
of failing every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from bridge import placeholders
from bridge.config import FilePath, Model, describe, problem
from bridge.errors import InternalError, UpstreamUnavailable
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.placeholders import SQL, MissingField, Values
from bridge.sources import AccountSource

ALIASES = {"username": placeholders.Field("identity", "username"),
           "login": placeholders.Field("login", "username")}
"""sqlite3's own `:name` parameters the query has always had, and the field each one is."""
_ALLOW = ("identity", "login.username")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _query(value: Any) -> SQL:
    if not isinstance(value, str):
        raise problem(f"expected a string, received {describe(value)}")
    if not value.strip():
        raise problem("must not be empty")
    try:
        query = placeholders.to_sql(placeholders.parse(value, _ALLOW))
    except placeholders.TemplateError as exc:
        raise problem(str(exc)) from None
    return SQL(query.text, {**ALIASES, **query.params})


Query = Annotated[SQL, PlainValidator(_query)]
"""The query with its placeholders as bound parameters (`:p0`, ...; `:username`, `:login`)."""


class SQLiteConfig(Model):
    path: FilePath
    query: Query


class SQLiteSource(AccountSource):
    Config = SQLiteConfig

    def __init__(self, config: SQLiteConfig) -> None:
        super().__init__(config)
        self.path = config.path
        self.query = config.query

    async def start(self) -> None:
        await self.ready()

    async def ready(self) -> None:
        """Prepare the query once: a typo is a start-up error, not a 500 for every user."""
        try:
            await asyncio.to_thread(self._explain)
        except sqlite3.OperationalError as exc:
            raise UpstreamUnavailable(f"sqlite {self.path.name}: query does not run: "
                                      f"{exc}") from exc

    def _explain(self) -> None:
        with contextlib.closing(_connect(self.path)) as conn:
            conn.execute(f"EXPLAIN {self.query.text}",
                         dict.fromkeys(self.query.params, ""))

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        try:  # an UnsafeValue (a NUL, text that is not Unicode) goes up as it is: a 500
            params = self.query.bind(Values(credentials, identity).lookup)
        except MissingField as exc:
            raise InternalError(f"sqlite {self.path.name}: placeholder {exc} has no value for "
                                f"user {identity.username!r}") from None
        try:
            rows = await asyncio.to_thread(self._fetch, params)
        except sqlite3.OperationalError as exc:
            raise UpstreamUnavailable(f"sqlite {self.path.name}: {exc}") from exc
        except sqlite3.Error as exc:
            raise InternalError(f"sqlite {self.path.name}: {exc}") from exc
        return [Account(_fields(row)) for row in rows]

    def _fetch(self, params: dict[str, Scalar]) -> list[sqlite3.Row]:
        conn = _connect(self.path)
        try:
            return conn.execute(self.query.text, params).fetchall()
        finally:
            conn.close()


def _fields(row: sqlite3.Row) -> dict[str, Scalar]:
    fields: dict[str, Scalar] = {}
    for key in row.keys():  # noqa: SIM118 (sqlite3.Row is not a mapping)
        value = row[key]
        if value is None:
            continue  # a NULL column is a missing field: the mapping's default applies
        if isinstance(value, bytes):
            value = value.decode("utf-8", "strict")
        elif isinstance(value, float):
            value = repr(value)
        fields[key] = value
    return fields

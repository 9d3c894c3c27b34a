"""Account rows from an SQLite database (the embedded default's billing stand-in).

    [source]
    type = "sqlite"
    path = "accounts.sqlite"
    query = "SELECT sip_user, sip_password, domain FROM accounts WHERE login = :username"

The query gets `:username` (the identity's canonical name) and `:login` (the
name the phone sent) as bound parameters, never by string formatting. Each row
is one account; its column names are the `{account.*}` fields. The database is
opened read-only: the gateway never writes to a provider's data. The query is
prepared against the database when the gateway starts (and by `check-config
--connect`), so a typo stops the start instead of failing every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from pydantic import Field

from bridge.config import FilePath, Model
from bridge.errors import InternalError, UpstreamUnavailable
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.sources import AccountSource


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


class SQLiteConfig(Model):
    path: FilePath
    query: str = Field(min_length=1)


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
            conn.execute(f"EXPLAIN {self.query}", {"username": "", "login": ""})

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        params = {"username": identity.username, "login": credentials.username}
        try:
            rows = await asyncio.to_thread(self._fetch, params)
        except sqlite3.OperationalError as exc:
            raise UpstreamUnavailable(f"sqlite {self.path.name}: {exc}") from exc
        except sqlite3.Error as exc:
            raise InternalError(f"sqlite {self.path.name}: {exc}") from exc
        return [Account(_fields(row)) for row in rows]

    def _fetch(self, params: dict[str, str]) -> list[sqlite3.Row]:
        conn = _connect(self.path)
        try:
            return conn.execute(self.query, params).fetchall()
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

"""Account rows from an SQLite database (the embedded default's billing stand-in).

    [source]
    type = "sqlite"
    path = "accounts.sqlite"
    query = "SELECT sip_user, sip_password, domain FROM accounts WHERE login = :username"

The query gets `:username` (the identity's canonical name) and `:login` (the
name the phone sent) as bound parameters, never by string formatting. Each row
is one account; its column names are the `{account.*}` fields. The database is
opened read-only: the gateway never writes to a provider's data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bridge.config import Section
from bridge.errors import InternalError, UpstreamUnavailable
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.sources import AccountSource


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


class SQLiteSource(AccountSource):
    def __init__(self, path: Path, query: str) -> None:
        self.path = path
        self.query = query

    @classmethod
    def from_config(cls, cfg: Section) -> SQLiteSource:
        path = cfg.path_value("path")
        query = cfg.str("query", nonempty=True)
        if path.is_file() and query:
            # Prepare the statement once now so a typo is a start-up error, not a 500 later.
            try:
                with _connect(path) as conn:
                    conn.execute(f"EXPLAIN {query}", {"username": "", "login": ""})
            except sqlite3.Error as exc:
                cfg.problem("query", f"does not run against {path.name}: {exc}")
        return cls(path, query)

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

"""SIP accounts from an SQL database: PostgreSQL, MySQL/MariaDB or SQLite.

    [source]
    type = "sql"
    url_env = "BILLING_DSN"       # postgresql://gateway@db/billing (the password: env/file)
    query = '''
      SELECT sip_user, sip_password, domain, enabled
      FROM accounts WHERE login = {identity.username} AND active'''
    # or: preset = "asterisk-pjsip" | "asterisk-sippeers" | "freepbx" | "fusionpbx" | "kamailio"
    #     (see bridge.sql.presets for the columns each returns)

Placeholders are the gateway's one syntax (bridge.placeholders):
`{identity.username}` (the name the authenticator returned), `{identity.ATTR}`
(any identity attribute) and `{login.username}` (the name the phone sent). Each
is a bound parameter with the value's own type, sent apart from the statement,
never pasted into the SQL. The database's own comparison rules still apply (a
case-insensitive collation finds "ALICE"; MariaDB's PAD SPACE collations ignore
trailing spaces), as they would for any client. Each row is one account; its column names are
the `{account.*}` fields; a NULL is a missing field (the mapping's default
applies). No row: no account (404).

Column values reach the mapping with their database type; the mapping turns
0/1, 't'/'f', 'true'/'false', 'yes'/'no' into boolean options and numeric text
into integer options (bridge.mapping), so `enabled SMALLINT` or `'t'` from
PostgreSQL's text output feed `register_on_startup` as they are.

Checked before any request: the `{account.*}` fields the mapping needs (those
without a default) must be columns of the query. check-config reads a plain
`SELECT a, b AS c FROM ...` without a database; with the database reachable
(`check-config --connect`, and at start-up) the query's columns are asked
from the server. Connections, pool, timeouts and failures: bridge.sql.db.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import PrivateAttr, model_validator

from bridge.config import problem
from bridge.errors import InternalError, UpstreamError
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.placeholders import Field, MissingField, Values
from bridge.sources import AccountSource
from bridge.sql import BoundQuery, SQLConnection, checked_query
from bridge.sql.db import scalar
from bridge.sql.presets import PRESETS
from bridge.sql.query import select_columns

logger = logging.getLogger(__name__)
SCOPES = frozenset({"identity", "login"})


class SQLSourceConfig(SQLConnection):
    _query: BoundQuery = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> SQLSourceConfig:
        if self.preset is not None and self.query is not None:
            raise problem(f"give either query or preset, not both (preset {self.preset!r} "
                          f"has its own query)", "query")
        template = self.query if self.query is not None else PRESETS[str(self.preset)].source_query
        self._query = checked_query(template, SCOPES)
        return self

    @property
    def bound(self) -> BoundQuery:
        return self._query


class SQLSource(AccountSource):
    Config = SQLSourceConfig

    def __init__(self, config: SQLSourceConfig) -> None:
        super().__init__(config)
        self.query = config.bound
        self.db = config.database()
        self.needed: frozenset[str] = frozenset()

    def expect_fields(self, fields: frozenset[str]) -> list[tuple[str, str]]:
        """Told the `{account.*}` fields the pipelines' mappings need (called while the
        configuration loads, and when built); the problems found without a database, as
        (key, message)."""
        self.needed = self.needed | fields
        columns = select_columns(self.query.sql, fold_lower=self.db.dialect == "postgresql")
        if columns is None:
            return []  # checked against the server by ready()
        key = "query" if self.config.query is not None else "preset"
        return [(key, message) for message in _missing(self.needed, columns)]

    async def start(self) -> None:
        """Check the query's columns now: a mistake stops the start. A database that is down
        is not a mistake: requests get 503s until it is back, and the check comes with the
        first answer (every answer carries its column names)."""
        try:
            await self.ready()
        except UpstreamError as exc:
            logger.warning("%s; the query's columns are checked once it answers", exc.detail)

    async def close(self) -> None:
        await self.db.close()

    async def ready(self) -> None:
        """Connect, and ask the server which columns the query returns."""
        columns = await self.db.columns(self.query)
        problems = _missing(self.needed, frozenset(columns))
        if problems:
            raise InternalError(f"sql {self.db.name}: {problems[0]}")

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        params = _bind(self.query, identity, credentials)
        columns, rows = await self.db.fetch(self.query, params)
        if self.needed and (problems := _missing(self.needed, frozenset(columns))):
            raise InternalError(f"sql {self.db.name}: {problems[0]}")
        return [Account(_fields(columns, row)) for row in rows]


def _bind(query: BoundQuery, identity: Identity, credentials: Credentials) -> dict[str, Any]:
    """The parameters of one request (typed: an integer attribute stays an integer)."""
    try:
        return query.bind(Values(credentials, identity).lookup)
    except MissingField as exc:
        raise InternalError(f"sql query: {exc} is not known for user "
                            f"{credentials.username!r}") from None


def _missing(needed: frozenset[str], columns: frozenset[str]) -> list[str]:
    missing = sorted(needed - columns)
    if not missing:
        return []
    names = ", ".join(str(Field("account", m)) for m in missing)
    return [f"the mapping uses {names}, but the query returns no such column "
            f"(it returns: {', '.join(sorted(columns)) or 'nothing'})"]


def _fields(columns: list[str], row: Any) -> dict[str, Scalar]:
    fields: dict[str, Scalar] = {}
    for name, raw in zip(columns, row, strict=True):
        value = scalar(raw)
        if value is not None:
            fields[name] = value
    return fields


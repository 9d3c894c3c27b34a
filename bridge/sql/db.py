"""One database, read-only, with a pool and a statement timeout (SQLAlchemy 2 asyncio).

    url = "postgresql://gateway@db.example.com/billing"     (asyncpg)
          "mysql://gateway@db.example.com/asterisk"          (asyncmy; mariadb:// too)
          "sqlite:///billing.sqlite"                         (aiosqlite; relative to
                                                              the configuration's folder)

The driver is the gateway's choice (`postgresql+psycopg://` is read as
`postgresql://`). Every connection is made read-only and bounded when it is
opened, so no query pays an extra round trip for it:

  PostgreSQL    default_transaction_read_only = on, statement_timeout (startup options)
  MariaDB       SET SESSION TRANSACTION READ ONLY, max_statement_time (seconds)
  MySQL         SET SESSION TRANSACTION READ ONLY, max_execution_time (milliseconds)
  SQLite        opened with mode=ro, PRAGMA query_only

and every query also runs under an asyncio timeout (the only one SQLite has).

Failures, translated once here: no connection (refused, reset, server restarting),
no free connection in the pool within `pool_timeout` -> UpstreamUnavailable; a
statement past its timeout -> UpstreamTimeout; both are a 503 with Retry-After.
SQLAlchemy throws away the pool's connections after a disconnect, so the next
request reconnects: recovery needs no restart. An SQL error (no such column,
syntax) is a configuration mistake -> InternalError. The URL's password never
appears in a message: URLs are shown with `***` and the password is scrubbed from
driver messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.errors import BridgeError, InternalError, UpstreamTimeout, UpstreamUnavailable
from bridge.models import Scalar
from bridge.sql.query import BoundQuery

DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
           "mysql": "mysql+asyncmy", "mariadb": "mysql+asyncmy",
           "sqlite": "sqlite+aiosqlite"}
_TIMEOUT_CODES = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_PG_CANCELED = "57014"


def parse_url(raw: str, base_dir: Path) -> URL:
    """The URL with the gateway's driver; ValueError naming the problem, never the URL."""
    try:
        url = make_url(raw)
    except exc.ArgumentError:
        raise ValueError("not a database URL (expected e.g. postgresql://user@host/db, "
                         "mysql://user@host/db or sqlite:///file.sqlite)") from None
    backend = url.get_backend_name()
    if backend not in DRIVERS:
        raise ValueError(f"unsupported database {backend!r}; expected postgresql, mysql, "
                         f"mariadb or sqlite")
    url = url.set(drivername=DRIVERS[backend])
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("sqlite needs a file: sqlite:///path/to/file.sqlite")
        path = Path(url.database)
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise ValueError(f"sqlite file not found: {path}")
        url = url.set(database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"})
    elif url.get_backend_name() == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class Database:
    """A lazily opened async engine; `fetch` runs one read-only query."""

    def __init__(self, url: URL, *, pool_size: int, pool_timeout: float,
                 connect_timeout: float, statement_timeout: float) -> None:
        self.url = url
        self.name = shown(url)
        self.dialect = url.get_backend_name()
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._create()
        return self._engine

    def _create(self) -> AsyncEngine:
        ms = max(1, int(self.statement_timeout * 1000))
        connect_args: dict[str, Any] = {}
        if self.dialect == "postgresql":
            connect_args = {"timeout": self.connect_timeout,
                            "server_settings": {"statement_timeout": str(ms),
                                                "default_transaction_read_only": "on",
                                                "application_name": "zoiper-bridge"}}
        elif self.dialect == "mysql":
            connect_args = {"connect_timeout": self.connect_timeout}
        # AUTOCOMMIT: one round trip per query instead of BEGIN, query, ROLLBACK; the
        # connection's own settings keep every statement read-only and bounded.
        engine = create_async_engine(self.url, pool_size=self.pool_size, max_overflow=0,
                                     pool_timeout=self.pool_timeout, pool_recycle=3600,
                                     isolation_level="AUTOCOMMIT", connect_args=connect_args)
        event.listen(engine.sync_engine, "connect", self._on_connect)
        return engine

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        """Per connection, once: read-only and the statement timeout (see the docstring)."""
        if self.dialect == "postgresql":
            return  # done by the startup options
        cursor = dbapi_connection.cursor()
        try:
            if self.dialect == "sqlite":
                cursor.execute("PRAGMA query_only = ON")
                return
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            if "mariadb" in version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {self.statement_timeout:.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = "
                               f"{max(1, int(self.statement_timeout * 1000))}")
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
        finally:
            cursor.close()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def fetch(self, query: BoundQuery,
                    params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        """(column names, rows) of one query, or the UpstreamError / InternalError for it.

        A pooled connection the server dropped (it restarted) fails on first use; the
        pool is then emptied and the query, a read, is tried once more on a new one.
        """
        budget = self.statement_timeout + self.connect_timeout + self.pool_timeout + 0.5
        start = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                try:
                    return await self._fetch(query, params)
                except exc.DBAPIError as error:
                    if not error.connection_invalidated:
                        raise
                    return await self._fetch(query, params)
        except TimeoutError:
            raise UpstreamTimeout(f"sql {self.name}: no answer within "
                                  f"{time.monotonic() - start:.1f}s") from None
        except Exception as error:  # translated once, here
            raise self.translate(error) from None

    async def _fetch(self, query: BoundQuery,
                     params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(query.clause, params)
            columns = [str(key) for key in result.keys()]  # noqa: SIM118 (not a dict)
            rows: list[Sequence[Any]] = [tuple(row) for row in result.fetchall()]
            return columns, rows

    async def columns(self, query: BoundQuery) -> list[str]:
        """The columns `query` returns, without running it for real (LIMIT 0 around it)."""
        # The configured query itself, wrapped: no user input is pasted anywhere.
        probe = BoundQuery(f"SELECT * FROM (\n{query.sql}\n) AS zoiper_probe LIMIT 0",  # noqa: S608
                           query.params)
        names, _ = await self.fetch(probe, dict.fromkeys(query.params, ""))
        return names

    def translate(self, error: BaseException) -> BridgeError:
        if isinstance(error, BridgeError):
            return error
        if isinstance(error, exc.TimeoutError):  # the pool's: every connection busy
            return UpstreamUnavailable(f"sql {self.name}: no free connection within "
                                       f"{self.pool_timeout}s (pool_size {self.pool_size})")
        orig = error.orig if isinstance(error, exc.DBAPIError) else error
        first = (str(orig).strip().splitlines() or [""])[0]
        detail = self._scrub(f"{type(orig).__name__}: {first}")
        if _is_statement_timeout(orig):
            return UpstreamTimeout(f"sql {self.name}: statement timeout "
                                   f"({self.statement_timeout}s) exceeded")
        if isinstance(error, exc.DBAPIError) and (
                error.connection_invalidated
                or (isinstance(error, exc.OperationalError | exc.InterfaceError)
                    and not _is_sql_mistake(orig))):
            return UpstreamUnavailable(f"sql {self.name}: {detail}")
        if isinstance(error, OSError | ConnectionError | exc.DisconnectionError):
            return UpstreamUnavailable(f"sql {self.name}: {detail}")
        if isinstance(error, exc.DBAPIError):
            return InternalError(f"sql {self.name}: the query failed: {detail}")
        return InternalError(f"sql {self.name}: {detail}")

    def _scrub(self, text: str) -> str:
        password = self.url.password
        return text.replace(str(password), "***") if password else text


def _is_statement_timeout(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == _PG_CANCELED:
        return True
    cause = orig.__cause__
    if cause is not None and getattr(cause, "sqlstate", None) == _PG_CANCELED:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _TIMEOUT_CODES


# unknown or ambiguous column, syntax, no such table or function, denied, read-only
_SQL_MISTAKES = {1052, 1054, 1060, 1064, 1142, 1143, 1146, 1149, 1248, 1305, 1582, 1583,
                 1584, 1630, 1792}


def _is_sql_mistake(orig: BaseException | None) -> bool:
    """MySQL reports some query mistakes (unknown column: 1054) as OperationalError."""
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _SQL_MISTAKES


def scalar(value: Any) -> Scalar | None:
    """A column value as a field value; None (a NULL) is "missing" for the mapping."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)

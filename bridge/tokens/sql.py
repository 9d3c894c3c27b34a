"""Tokens in SQL: SQLite (a file; the default) or PostgreSQL (several instances), via
SQLAlchemy's asyncio engine (aiosqlite, asyncpg).

One table, created when the store starts. A use is one statement,

    UPDATE t SET used = used + 1
    WHERE digest = :d AND profile = :p AND NOT revoked AND expires > :now AND used < uses
    RETURNING ...

which PostgreSQL runs under the row's lock (a second updater re-checks `used <
uses` after the first commits) and SQLite under its database write lock (a
second process waits up to `timeout`): two concurrent uses of a one-use token
update one row once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bridge.errors import UpstreamUnavailable
from bridge.tokens.store import Ticket, TokenStore

logger = logging.getLogger("bridge.tokens")

TIMEOUT = 5.0


def _table(name: str) -> Table:
    return Table(
        name, MetaData(),
        Column("digest", String(64), primary_key=True),
        Column("username", String(512), nullable=False, index=True),
        Column("profile", String(200), nullable=False),
        Column("pipeline", String(400), nullable=False),
        Column("created", Float(53), nullable=False),
        Column("expires", Float(53), nullable=False),
        Column("uses", Integer, nullable=False),
        Column("used", Integer, nullable=False, default=0),
        Column("revoked", Boolean, nullable=False, default=False),
    )


def engine_url(url: str | None, database: Path | None) -> str:
    """The SQLAlchemy URL with its async driver: a file for SQLite, else PostgreSQL's."""
    if not url:
        assert database is not None
        return f"sqlite+aiosqlite:///{database}"
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme):]
    raise ValueError("expected a postgresql:// URL")


class SQLTokenStore(TokenStore):
    def __init__(self, url: str | None = None, database: Path | None = None,
                 table: str = "zoiper_bridge_tokens") -> None:
        self.url = engine_url(url, database)
        self.database = database
        self.table = _table(table)
        self._engine: AsyncEngine | None = None
        self._created = False

    @property
    def kind(self) -> str:
        return "SQLite" if self.url.startswith("sqlite") else "PostgreSQL"

    def _connect_args(self) -> dict[str, Any]:
        if self.url.startswith("sqlite"):
            return {"timeout": TIMEOUT}
        return {"timeout": TIMEOUT, "command_timeout": TIMEOUT}

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; any database failure becomes a 503 (details in the log)."""
        if self._engine is None:
            if self.database is not None and not self.url.startswith("postgresql"):
                self.database.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_async_engine(self.url, connect_args=self._connect_args(),
                                               pool_pre_ping=True)
        try:
            if not self._created:
                async with self._engine.begin() as conn:
                    await conn.run_sync(self.table.metadata.create_all, checkfirst=True)
                self._created = True
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # The message may name hosts and SQL, never a token: stores see hashes only.
            raise UpstreamUnavailable(f"token store ({self.kind}): "
                                      f"{type(exc).__name__}: {exc}") from exc

    async def start(self) -> None:
        try:
            async with self._begin():
                pass
        except UpstreamUnavailable as exc:
            if not self._created:  # two instances creating the table at once: one wins
                logger.warning("%s; retrying once", exc.detail)
                async with self._begin():
                    pass

    async def ready(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def add(self, ticket: Ticket) -> None:
        async with self._begin() as conn:
            await conn.execute(self.table.insert().values(
                digest=ticket.digest, username=ticket.username, profile=ticket.profile,
                pipeline=ticket.pipeline, created=ticket.created, expires=ticket.expires,
                uses=ticket.uses, used=ticket.used, revoked=ticket.revoked))

    async def spend(self, digest: str, profile: str, now: float) -> Ticket | None:
        t = self.table.c
        statement = (update(self.table)
                     .where(t.digest == digest, t.profile == profile, t.revoked == false(),
                            t.expires > now, t.used < t.uses)
                     .values(used=t.used + 1)
                     .returning(*self.table.c))
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return _ticket(row._mapping) if row is not None else None

    async def give_back(self, digest: str) -> None:
        t = self.table.c
        async with self._begin() as conn:
            await conn.execute(update(self.table).where(t.digest == digest, t.used > 0)
                               .values(used=t.used - 1))

    async def tickets(self) -> list[Ticket]:
        async with self._begin() as conn:
            rows = await conn.execute(select(self.table).order_by(self.table.c.created))
            return [_ticket(row._mapping) for row in rows]

    async def revoke(self, digests: list[str]) -> int:
        if not digests:
            return 0
        async with self._begin() as conn:
            result = await conn.execute(update(self.table)
                                        .where(self.table.c.digest.in_(digests))
                                        .values(revoked=True))
            return int(result.rowcount)

    async def purge(self, before: float) -> int:
        async with self._begin() as conn:
            result = await conn.execute(delete(self.table)
                                        .where(self.table.c.expires < before))
            return int(result.rowcount)


def _ticket(row: Any) -> Ticket:
    return Ticket(row["digest"], row["username"], row["profile"], row["pipeline"],
                  float(row["created"]), float(row["expires"]), int(row["uses"]),
                  int(row["used"]), bool(row["revoked"]))

"""What the SQL authenticator and account source share: connection keys, presets, queries.

    url_env = "BILLING_DSN"       # or url = "..." / url_file = "/run/secrets/dsn"
    pool_size = 5                 # connections kept open (the pool never grows past it)
    pool_timeout = 2.0            # seconds to wait for a free connection, then 503
    connect_timeout = 3.0         # seconds to open a connection
    statement_timeout = 2.0       # seconds one query may run (enforced by the server)
    preset = "freepbx"            # or query = "SELECT ... {login.username} ..."

The URL is a secret (it usually carries the password): it is only ever shown
with the password as `***`, and a problem with it is described, never echoed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from bridge.config import Model, Secret, problem
from bridge.sql.db import Database, parse_url
from bridge.sql.presets import PresetName
from bridge.sql.query import BoundQuery, compile_query


class SQLConnection(Model):
    """The connection keys of `[auth] type = "sql"` and `[source] type = "sql"`."""

    url: Secret
    pool_size: int = Field(5, ge=1, le=200)
    pool_timeout: float = Field(2.0, ge=0.01, le=60)
    connect_timeout: float = Field(3.0, ge=0.1, le=60)
    statement_timeout: float = Field(2.0, ge=0.01, le=300)
    preset: PresetName | None = None
    query: str | None = Field(None, min_length=1)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)  # for a relative sqlite path

    @model_validator(mode="after")
    def _url(self, info: ValidationInfo) -> Any:
        base_dir = Path((info.context or {}).get("base_dir") or Path.cwd())
        self._base_dir = base_dir
        try:
            parse_url(self.url, base_dir)
        except ValueError as exc:
            raise problem(str(exc), "url") from None
        if self.preset is None and self.query is None:
            raise problem("is required (or a preset: asterisk-pjsip, asterisk-sippeers, "
                          "freepbx, fusionpbx, kamailio)", "query")
        return self

    def database(self) -> Database:
        return Database(parse_url(self.url, self._base_dir),
                        pool_size=self.pool_size, pool_timeout=self.pool_timeout,
                        connect_timeout=self.connect_timeout,
                        statement_timeout=self.statement_timeout)


def checked_query(template: str, scopes: frozenset[str], key: str = "query") -> BoundQuery:
    """compile_query for a model validator: a problem reported at `key`."""
    try:
        return compile_query(template, scopes)
    except ValueError as exc:
        raise problem(str(exc), key) from None


__all__ = ["BoundQuery", "Database", "SQLConnection", "checked_query"]

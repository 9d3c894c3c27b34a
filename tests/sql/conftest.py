"""Scratch databases on the machine's PostgreSQL and MariaDB, one per session per server,
each loaded with every preset's schema and sample rows (tests/sql/schemas.py)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.sql import schemas, servers
from tests.sql.servers import PrivatePostgres, Scratch


def _loaded(kind: str) -> Iterator[Scratch]:
    reason = servers.pg_missing() if kind == "postgresql" else servers.my_missing()
    if reason:
        unavailable(reason)
    db = servers.scratch(kind)
    try:
        db.run(schemas.load_script(kind))
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="session")
def pg() -> Iterator[Scratch]:
    yield from _loaded("postgresql")


@pytest.fixture(scope="session")
def my() -> Iterator[Scratch]:
    yield from _loaded("mysql")


@pytest.fixture(params=["postgresql", "mysql"])
def db(request: pytest.FixtureRequest) -> Scratch:
    """Each test that takes `db` runs on both servers."""
    return request.getfixturevalue("pg" if request.param == "postgresql" else "my")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    reason = servers.pg_missing()
    if reason:
        unavailable(reason)
    # Its own folder under /tmp: pytest's tmp_path is private to root, and PostgreSQL runs
    # as the postgres user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="zb-pg-"))
    server = PrivatePostgres(folder).init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):  # already stopped by the test
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)

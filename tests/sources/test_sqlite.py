"""The SQLite source: the old `:username` / `:login` spellings and the gateway's placeholders."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import InternalError
from bridge.models import Credentials, Identity
from bridge.placeholders import UnsafeValue
from tests.upstreams import dumps, make_source, problems, started

HOSTILE = "x' OR '1'='1"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (login TEXT, typed TEXT, customer INTEGER, "
                     "sip_user TEXT)")
        conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", [
            ("alice", "Alice", 7, "alice-1"), ("alice", "Alice", 8, "alice-2"),
            (HOSTILE, HOSTILE, 9, "hostile"), ("bob", "bob", 7, "bob-1")])
    conn.close()
    return path


def fetch(db: Path, query: str, username: str, typed: str | None = None,
          **attributes: Any) -> list[str]:
    src = make_source(f'type = "sqlite"\npath = {dumps(str(db))}\nquery = {dumps(query)}\n')

    async def run() -> list[str]:
        async with started(src):
            accounts = await src.accounts(Identity(username, attributes),
                                          Credentials(typed or username, "pw"))
        return sorted(str(a.fields["sip_user"]) for a in accounts)
    return asyncio.run(run())


def test_the_old_aliases_still_bind_the_canonical_and_the_typed_name(db: Path) -> None:
    query = "SELECT sip_user FROM accounts WHERE login = :username AND typed = :login"
    assert fetch(db, query, "alice", typed="Alice") == ["alice-1", "alice-2"]
    assert fetch(db, query, "alice", typed="alice") == []  # :login is what was typed


def test_placeholders_are_bound_parameters_with_their_types(db: Path) -> None:
    query = ("SELECT sip_user FROM accounts WHERE login = {identity.username} "
             "AND customer = {identity.customer} AND typed = {login.username}")
    assert fetch(db, query, "alice", typed="Alice", customer=8) == ["alice-2"]
    assert fetch(db, query, "bob", customer=7) == ["bob-1"]


def test_a_quote_in_a_value_is_data(db: Path) -> None:
    query = "SELECT sip_user FROM accounts WHERE login = {identity.username}"
    assert fetch(db, query, HOSTILE) == ["hostile"]
    assert fetch(db, query, "nobody' OR '1'='1") == []


def test_a_missing_attribute_is_an_internal_error_naming_it(db: Path) -> None:
    query = "SELECT sip_user FROM accounts WHERE customer = {identity.customer}"
    with pytest.raises(InternalError, match=r"\{identity\.customer\} has no value"):
        fetch(db, query, "alice")


def test_a_nul_is_refused_naming_the_field_not_the_value(db: Path) -> None:
    query = "SELECT sip_user FROM accounts WHERE login = :username"
    with pytest.raises(UnsafeValue, match=r"\{identity\.username\}.*a NUL") as caught:
        fetch(db, query, "al\x00ice")
    assert "al\x00ice" not in caught.value.detail


@pytest.mark.parametrize(("query", "expected"), [
    ("SELECT sip_user FROM accounts WHERE login = '{identity.username}'",
     "{identity.username} is inside quotes"),
    ("SELECT sip_user FROM accounts WHERE typed = {login.password}",
     "{login.password} is not available here (only {identity.*}, {login.username})"),
    ("SELECT sip_user FROM accounts WHERE login = {username}",
     "unknown placeholder {username}"),
    ("SELECT '{' FROM accounts", "unmatched '{' (write {{ for a literal brace)"),
    ("", "must not be empty"),
])
def test_query_problems_are_reported_with_the_key(db: Path, query: str, expected: str) -> None:
    found = problems(f'type = "sqlite"\npath = {dumps(str(db))}\nquery = {dumps(query)}\n',
                     "source")
    assert len(found) == 1 and found[0].startswith("Config value 'source.query': "), found
    assert expected in found[0]


def test_literal_braces_are_written_doubled(db: Path) -> None:
    query = "SELECT sip_user || '{{x}}' AS sip_user FROM accounts WHERE login = :username"
    assert fetch(db, query, "bob") == ["bob-1{x}"]

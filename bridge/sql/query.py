"""A configured query: the gateway's placeholders become bound parameters, never text.

    SELECT sip_user, domain FROM accounts WHERE login = {identity.username}
 -> SELECT sip_user, domain FROM accounts WHERE login = :p0     p0 = identity.username

The template is parsed and turned into SQL by the shared placeholder engine
(bridge.placeholders, `to_sql`), so the query speaks the gateway's one syntax;
every placeholder is a bound parameter sent apart from the statement, so a
quote, a backslash, `%` or `_` in a username is data, never SQL. Colons in the
literal SQL are escaped for SQLAlchemy's text() (`'a:b'`, `::text` stay as
written).

`select_columns` reads the column names of a plain `SELECT a, b AS c FROM ...`
without a database, so check-config can name a mapping field the query does not
return; anything it cannot read for sure (`*`, an expression without AS, a CTE)
makes it answer None, and the check waits for `check-config --connect`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import TextClause, text

from bridge import placeholders
from bridge.models import Scalar
from bridge.placeholders import SQL, Field, Lookup, TemplateError


@dataclass(frozen=True)
class BoundQuery:
    """A query as SQL text with `:pN` parameters, and the field each one is bound to."""

    sql: str
    params: Mapping[str, Field]

    @cached_property
    def clause(self) -> TextClause:
        """Made once: SQLAlchemy then finds its compiled form in its cache."""
        return text(self.sql)

    def bind(self, lookup: Lookup) -> dict[str, Scalar]:
        """Raises MissingField, or UnsafeValue (a NUL, text that is not Unicode)."""
        return SQL(self.sql, self.params).bind(lookup)


def compile_query(template: str, scopes: Collection[str]) -> BoundQuery:
    """Turn placeholders into `:pN`; ValueError (for the configuration) when it cannot."""
    if "login" in scopes:
        scopes = [s for s in scopes if s != "login"] + ["login.username"]
    try:
        parsed = placeholders.parse(template, allow=scopes)
        sql = placeholders.to_sql(parsed, literal=lambda s: s.replace(":", "\\:"))
    except TemplateError as exc:
        if "{login.password}" in str(exc):
            raise ValueError("{login.password} may not be sent to the database") from None
        raise ValueError(str(exc)) from None
    statement = sql.text.strip().rstrip(";").strip()
    if not re.match(r"(?is)\s*(select|with)\b", statement):
        raise ValueError("must be a SELECT (or WITH ... SELECT) query: the gateway only reads")
    return BoundQuery(statement, sql.params)


_TOKEN = re.compile(r"""'(?:[^']|'')*'|"[^"]*"|`[^`]*`|--[^\n]*|/\*.*?\*/|[(),]|[^\s(),'"`]+""",
                    re.S)
_IDENT = re.compile(r'"([^"]+)"|`([^`]+)`|([A-Za-z_][A-Za-z0-9_$]*)')
_QUALIFIED = re.compile(r"(?:[A-Za-z_][\w$]*\.)+")


def _name(token: str, fold_lower: bool) -> str | None:
    m = _IDENT.fullmatch(token)
    if m is None:
        return None
    if m.group(3) is not None:
        return m.group(3).lower() if fold_lower else m.group(3)
    return m.group(1) or m.group(2)


def select_columns(sql: str, fold_lower: bool = False) -> frozenset[str] | None:
    """The names a plain SELECT returns, or None when that cannot be told without running it.

    `fold_lower`: PostgreSQL folds unquoted names to lower case.
    """
    tokens = [t for t in _TOKEN.findall(sql) if not t.startswith(("--", "/*"))]
    if not tokens or tokens[0].lower() != "select":
        return None
    depth = 0
    items: list[list[str]] = [[]]
    for word in tokens[1:]:
        if depth == 0 and word.lower() == "from":
            break
        depth += (word == "(") - (word == ")")
        if depth == 0 and word == ",":
            items.append([])
        else:
            items[-1].append(word)
    else:
        return None  # no FROM at the top level: not a shape worth guessing about
    names = set()
    for item in items:
        if item and item[0].lower() in ("distinct", "all"):
            item = item[1:]
        name: str | None = None
        if len(item) == 1:  # col, t.col, "col", t."col"
            name = _name(_QUALIFIED.sub("", item[0], count=1) if _QUALIFIED.match(item[0])
                         else item[0], fold_lower)
        elif len(item) >= 3 and item[-2].lower() == "as":
            name = _name(item[-1], fold_lower)
        elif len(item) == 2 and _QUALIFIED.sub("", item[0]).isidentifier():
            name = _name(item[1], fold_lower)  # "t.col alias"
        if name is None:
            return None
        names.add(name)
    return frozenset(names)

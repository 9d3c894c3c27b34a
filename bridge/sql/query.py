"""A configured query: the gateway's placeholders become bound parameters, never text.

    SELECT sip_user, domain FROM accounts WHERE login = {identity.username}
 -> SELECT sip_user, domain FROM accounts WHERE login = :p0     p0 = identity.username

The template is split by the mapping's own parser (bridge.mapping.parse_template),
so the query speaks the gateway's one placeholder syntax; every placeholder is a
bound parameter (`:p0`, `:p1`, ...) sent apart from the statement, so a quote, a
backslash, `%` or `_` in a username is data, never SQL. Colons in the literal SQL
are escaped for SQLAlchemy's text() (`'a:b'`, `::text` stay as written).

`select_columns` reads the column names of a plain `SELECT a, b AS c FROM ...`
without a database, so check-config can name a mapping field the query does not
return; anything it cannot read for sure (`*`, an expression without AS, a CTE)
makes it answer None, and the check waits for `check-config --connect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import TextClause, text

from bridge.mapping import Field, parse_template


@dataclass(frozen=True)
class BoundQuery:
    """A query with its placeholders in order: `fields[i]` is bound as `:p{i}`."""

    sql: str
    fields: tuple[Field, ...]

    @property
    def clause(self) -> TextClause:
        return text(self.sql)


def compile_query(template: str, scopes: frozenset[str]) -> BoundQuery:
    """Turn placeholders into `:pN`; ValueError (for the configuration) when it cannot."""
    parts = parse_template(template)
    sql: list[str] = []
    fields: list[Field] = []
    quotes = 0
    for part in parts:
        if isinstance(part, str):
            quotes += part.count("'")
            sql.append(part.replace(":", "\\:"))
            continue
        if part.scope not in scopes:
            allowed = ", ".join(sorted(f"{{{s}.*}}" for s in scopes))
            raise ValueError(f"{part} is not known here; a query may use {allowed}")
        if part.scope == "login" and part.name == "password":
            raise ValueError("{login.password} may not be sent to the database")
        if quotes % 2:
            raise ValueError(f"{part} is inside quotes: placeholders are bound parameters, "
                             f"write {part} without quotes around it")
        if part in fields:
            sql.append(f":p{fields.index(part)}")
        else:
            sql.append(f":p{len(fields)}")
            fields.append(part)
    statement = "".join(sql).strip().rstrip(";").strip()
    if not re.match(r"(?is)\s*(select|with)\b", statement):
        raise ValueError("must be a SELECT (or WITH ... SELECT) query: the gateway only reads")
    return BoundQuery(statement, tuple(fields))


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

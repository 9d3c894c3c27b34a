"""One placeholder syntax for every template in the configuration, escaped where it lands.

    "sip:{account.user}@{account.domain}"       a field is {scope.name}; {{ and }} are braces

Scopes: `identity.username` (the canonical name the authenticator returned),
`identity.<attribute>`, `account.<field>` (what the account source returned,
once per account), and `login.username` / `login.password` (what the phone
sent). A template is parsed once, when the configuration loads (`parse`),
into literal parts and `Field`s; each use site says which fields it can fill
(`allow`: a scope, or one "scope.name") and may accept bare aliases that stand
for a field (LDAP's `{username}`, `{dn}`). At request time it is rendered with
the escaper of the place the value lands:

    PLAIN      the mapping: text as it is (the XML renderer escapes it)
    DN_VALUE   an RFC 4514 attribute value;   DN: a whole DN, checked and placed as it is
    FILTER     an RFC 4515 assertion value
    PATH       a URL path segment, percent-encoded; "", "." and ".." refused, and "../x"
               (a server that decodes %2F before resolving dot segments would go up)
    QUERY      a query parameter, percent-encoded;   FORM: an x-www-form-urlencoded value
    HEADER     a header value: CR, LF and the other controls (but TAB) refused
    JSON       a JSON string; `Template.value` keeps a lone field's type (a number stays one)
    to_sql()   the template becomes SQL text with `:p0`, `:p1`, ... and their fields: bound
               parameters, sent apart from the statement (SQL_PARAMETER: NUL refused)

Every escaper refuses text that is not Unicode (a lone surrogate cannot be
sent as UTF-8 anywhere); a use site may add its own `Escaper` (the AD logon
name of bridge.auth.ldap).

A value that cannot be placed safely raises `UnsafeValue`, one exception for
every destination. It is an InternalError (500): the data a backend returned
(or a name it accepted) cannot go where the configuration puts it, which is
neither "no account" nor "wrong password", and retrying will not help (a 503
would tell the phone to retry). The breakers give it no verdict, so one odd
value never opens a circuit. Its detail names the field and the destination,
never the value. A use site that fills only what the phone typed may instead
take it as a wrong password (a name that cannot be sent cannot be anyone's).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from bridge.errors import InternalError
from bridge.ldap.escape import escape_dn_value, escape_filter_value, is_dn
from bridge.models import Account, Credentials, Identity, Scalar

SCOPES = ("identity", "account", "login")
LOGIN_NAMES = ("username", "password")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"([a-z]+)\.([^.{}\s][^{}]*)")


@dataclass(frozen=True, slots=True)
class Field:
    scope: str
    name: str

    def __str__(self) -> str:
        return f"{{{self.scope}.{self.name}}}"


class TemplateError(ValueError):
    """A template the configuration cannot use; the message names the placeholder."""


class MissingField(LookupError):
    """A field without a value for this request (str(exc) is the placeholder)."""


class UnsafeValue(InternalError):
    """A value that cannot be placed safely where the template puts it; nothing is sent."""

    def __init__(self, field: Field | None, where: str, reason: str) -> None:
        what = f"the value of {field}" if field is not None else "a value"
        super().__init__(f"placeholder: {what} cannot be placed in {where} ({reason})")
        self.field = field
        self.where = where


Lookup = Callable[[Field], Scalar]
"""A field's value for this request; raises MissingField."""


@dataclass(frozen=True, slots=True)
class Values:
    """What placeholders are filled from during one request (None: not known yet)."""

    credentials: Credentials
    identity: Identity | None = None
    account: Account | None = None

    def lookup(self, f: Field) -> Scalar:
        value: Scalar | None = None
        if f.scope == "account":
            value = None if self.account is None else self.account.fields.get(f.name)
        elif f.scope == "identity":
            if self.identity is not None:
                value = (self.identity.username if f.name == "username"
                         else self.identity.attributes.get(f.name))
        elif f.name == "username":
            value = self.credentials.username
        elif f.name == "password":
            value = self.credentials.password
        if value is None:
            raise MissingField(str(f))
        return value


def text_of(value: Scalar) -> str:
    """A field value as text; booleans the way Zoiper writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- parsing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and fields, in order. `text` is what was written."""

    parts: tuple[str | Field, ...]
    text: str = dataclasses.field(default="", compare=False)  # as written, for messages

    def __str__(self) -> str:
        return self.text

    def __iter__(self) -> Iterator[str | Field]:
        return iter(self.parts)

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(p for p in self.parts if isinstance(p, Field))

    @property
    def literal(self) -> str | None:
        """The text, if the template has no fields."""
        return None if self.fields else "".join(p for p in self.parts if isinstance(p, str))

    @property
    def single(self) -> Field | None:
        """The field, if the template is exactly one field and nothing else."""
        only = self.parts[0] if len(self.parts) == 1 else None
        return only if isinstance(only, Field) else None

    def render(self, lookup: Lookup, escaper: Escaper,
               by_field: Mapping[Field, Escaper] | None = None) -> str:
        """The text with each field's value escaped (by `by_field`'s escaper, else `escaper`).

        Raises MissingField, or UnsafeValue."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                how = by_field.get(part, escaper) if by_field else escaper
                out.append(how.place(part, lookup(part)))
        return "".join(out)

    def value(self, lookup: Lookup, escaper: Escaper) -> Scalar:
        """A lone field keeps its type (an integer stays an integer); anything else is text."""
        only = self.single
        if only is None:
            return self.render(lookup, escaper)
        value = lookup(only)
        if isinstance(value, str):
            escaper.place(only, value)  # refusals only: a typed value is not rewritten
        return value


def parse(text: str, allow: Collection[str] = SCOPES,
          aliases: Mapping[str, Field] | None = None) -> Template:
    """Parse `text`; raise TemplateError naming the first placeholder it cannot use.

    `allow` holds scopes ("identity": any identity field) or single fields
    ("login.username"); `aliases` maps a bare name ("username") to its field.
    """
    parts: list[str | Field] = []
    pos = 0
    literal = ""
    for m in _TOKEN.finditer(text):
        literal += text[pos:m.start()]
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
            continue
        inner = m.group(1)
        if inner is None:
            raise TemplateError(f"unmatched {token!r} (write {token * 2} for a literal brace)")
        field = _field(inner, allow, aliases or {})
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(field)
    literal += text[pos:]
    if literal or not parts:
        parts.append(literal)
    return Template(tuple(parts), text)


def allowed(allow: Collection[str], aliases: Mapping[str, Field] | None = None) -> str:
    """The placeholders a use site accepts, for messages: "{identity.*}, {username}"."""
    forms = [f"{{{a}}}" if "." in a else f"{{{a}.*}}" for a in allow]
    return ", ".join(forms + [f"{{{a}}}" for a in aliases or {}])


def _field(inner: str, allow: Collection[str], aliases: Mapping[str, Field]) -> Field:
    if inner in aliases:
        return aliases[inner]
    if not allow and not aliases:
        raise TemplateError(f"{{{inner}}}: placeholders are not allowed here (write {{{{ and "
                            f"}}}} for literal braces)")
    fm = _FIELD.fullmatch(inner)
    if not fm or fm.group(1) not in SCOPES:
        if not aliases and set(allow) >= set(SCOPES):
            raise TemplateError(f"placeholder {{{inner}}} must be one of "
                                + ", ".join(f"{{{s}.NAME}}" for s in SCOPES)
                                + " (write {{ and }} for literal braces)")
        raise TemplateError(f"unknown placeholder {{{inner}}}; allowed: "
                            f"{allowed(allow, aliases)} (write {{{{ and }}}} for literal braces)")
    field = Field(fm.group(1), fm.group(2))
    if field.scope == "login" and field.name not in LOGIN_NAMES:
        raise TemplateError("placeholder {login.*} must be {login.username} or {login.password}")
    if field.scope not in allow and f"{field.scope}.{field.name}" not in allow:
        raise TemplateError(f"{field} is not available here (only {allowed(allow, aliases)})")
    return field


# -- escapers ------------------------------------------------------------------------


class Refused(ValueError):
    """Raised by an escape function: the reason, never the value."""


@dataclass(frozen=True, slots=True)
class Escaper:
    """How a value is written where it lands; `escape` raises Refused for what cannot be."""

    where: str
    escape: Callable[[str], str]

    def place(self, field: Field | None, value: Scalar) -> str:
        """The value as text, escaped; raise UnsafeValue (naming `field`, not the value)."""
        text = text_of(value)
        if not text.isascii() and not _encodable(text):
            raise UnsafeValue(field, self.where, "not valid Unicode text")
        try:
            return self.escape(text)
        except Refused as exc:
            reason = str(exc)
        raise UnsafeValue(field, self.where, reason)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"); not chained: holds text
        return False
    return True


def _as_is(text: str) -> str:
    return text


def _dn_value(text: str) -> str:
    if "\x00" in text:
        raise Refused("a NUL character")
    return escape_dn_value(text)


def _whole_dn(text: str) -> str:
    if "\x00" in text or not is_dn(text):
        raise Refused("not a distinguished name")
    return text


_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls except TAB


def _header(text: str) -> str:
    if _HEADER_UNSAFE.search(text):
        raise Refused("a line break or control character")
    return text


PLAIN = Escaper("the configuration document", _as_is)
DN_VALUE = Escaper("a DN attribute value", _dn_value)
DN = Escaper("a DN", _whole_dn)
FILTER = Escaper("an LDAP filter value", escape_filter_value)
PATH = Escaper("a URL path segment", lambda text: _path(text))
QUERY = Escaper("a query parameter", lambda text: quote(text, safe=""))
FORM = Escaper("a form value", lambda text: quote_plus(text, safe=""))
HEADER = Escaper("a header value", _header)
JSON = Escaper("a JSON value", _as_is)
SQL_PARAMETER = Escaper("an SQL parameter", lambda text: _no_nul(text))


_PIECES = re.compile(r"[/\\]")


def _path(text: str) -> str:
    # "/" is sent as %2F, but a proxy or server that decodes it before resolving dot
    # segments (nginx does, for proxy_pass with a URI) would see "../x" as a way up.
    if any(piece in (".", "..") for piece in _PIECES.split(text)):
        raise Refused("a '.' or '..' segment once %2F or %5C is decoded")
    return quote(text, safe="")


def _no_nul(text: str) -> str:
    if "\x00" in text:  # PostgreSQL refuses it in text; no database keeps it portably
        raise Refused("a NUL character")
    return text


def path_segment(segment: Template, lookup: Lookup) -> str:
    """One segment of a URL path; a segment made by fields that would be "", "." or ".." is
    refused (it would name another resource), whatever the literal text around them."""
    out = segment.render(lookup, PATH)
    if out in ("", ".", "..") and segment.fields:
        raise UnsafeValue(segment.fields[0], PATH.where, "an empty, '.' or '..' segment")
    return out


def header_value(template: Template, lookup: Lookup) -> bytes:
    """A header value as sent: fields checked, the edges' spaces and tabs dropped (HTTP
    ignores them anyway: RFC 9110 section 5.5), UTF-8."""
    return template.render(lookup, HEADER).strip(" \t").encode("utf-8")


# -- SQL -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SQL:
    """A template as SQL text with named parameters, and the field each one is bound to.

        SELECT line FROM lines WHERE login = {identity.username} OR alias = {identity.username}
     -> text   "SELECT line FROM lines WHERE login = :p0 OR alias = :p0"
        params {"p0": Field("identity", "username")}

    Every field is a bound parameter, sent apart from the statement: a quote,
    backslash, `%` or `_` in a value is data, never SQL. The same field is one
    parameter however often it appears; parameters are numbered in order of
    first appearance. `bind` gives the values, typed (an integer stays one),
    for `connection.execute(text, bind(...))` (sqlite3 and SQLAlchemy's text()
    both read `:name`).
    """

    text: str
    params: Mapping[str, Field]

    def bind(self, lookup: Lookup) -> dict[str, Scalar]:
        """The parameters' values; raise MissingField, or UnsafeValue (NUL, not Unicode)."""
        bound: dict[str, Scalar] = {}
        for name, field in self.params.items():
            value = lookup(field)
            if isinstance(value, str):
                SQL_PARAMETER.place(field, value)
            bound[name] = value
        return bound


def to_sql(template: Template, literal: Callable[[str], str] = _as_is, prefix: str = "p") -> SQL:
    """`template` as SQL text with `:p0`, `:p1`, ...; raise TemplateError for a field written
    inside quotes (it would be the text ':p0', not the value).

    `literal` rewrites the literal SQL between fields, e.g. `lambda s: s.replace(":", "\\\\:")`
    so that SQLAlchemy's text() leaves colons written in the SQL alone.
    """
    out: list[str] = []
    names: dict[Field, str] = {}
    quotes = 0
    for part in template.parts:
        if isinstance(part, str):
            quotes += part.count("'")
            out.append(literal(part))
            continue
        if quotes % 2:
            raise TemplateError(f"{part} is inside quotes: placeholders are bound parameters, "
                                f"write {part} without quotes around it")
        name = names.setdefault(part, f"{prefix}{len(names)}")
        out.append(f":{name}")
    return SQL("".join(out), {name: field for field, name in names.items()})

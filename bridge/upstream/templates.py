"""Request shapes from TOML, each placeholder encoded for where it lands.

    url = "https://billing.example.com/v1/customers/{identity.customer_id}/lines?format=json"
    method = "GET"                  # or "POST"
    [source.query]                  # -> query parameters, encoded by httpx
    login = "{identity.username}"
    [source.headers]                # -> header values; CR, LF and other controls refused
    Authorization = "Bearer {identity.token}"
    [source.json]                   # -> a JSON body (json encoder); or [source.form]
    user = { name = "{login.username}" }

Placeholders are bridge.placeholders' (those of the mapping: `{login.username}`,
`{identity.x}`), minus what a backend cannot know yet (a login request has no
identity), each escaped for where it lands: PATH, QUERY, HEADER, JSON, FORM.

`{login.password}` is refused in the url path and, unless
`allow_password_in_query = true`, in [query]: a query string is written to
the access logs of the server and of every proxy in between.

The URL is where injection would hurt, so it is the strictest: scheme, host
and port are literal (user input can never choose where a request goes), the
literal query holds no placeholders (use `query`), and a path placeholder is
percent-encoded except for RFC 3986 unreserved characters, so "a/../b?x=1&y"
becomes the single segment "a%2F..%2Fb%3Fx%3D1%26y". A segment that would come
out as "", "." or "..", or a line break in a header, is refused with
UnsafeValue (bridge.placeholders: a 500 naming the field), and nothing is sent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from bridge import placeholders
from bridge.config import describe
from bridge.models import Scalar
from bridge.placeholders import (
    FORM,
    JSON,
    QUERY,
    Field,
    Lookup,
    Template,
    TemplateError,
    UnsafeValue,
    Values,
    header_value,
    path_segment,
    text_of,
)

__all__ = ["HEADER_NAME", "Prepared", "Problem", "RequestTemplate", "URLTemplate", "UnsafeValue",
           "Values", "compile_json", "compile_table", "header_problems", "is_password"]

Problem = tuple[tuple[str | int, ...], str]
"""Where (key path inside the table) and what: a configuration problem."""

_ORIGIN = re.compile(r"(https?)://([^/?#{}\s@]+)(.*)", re.DOTALL | re.IGNORECASE)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls except TAB


def is_password(part: str | Field) -> bool:
    return isinstance(part, Field) and part.scope == "login" and part.name == "password"


def compile_template(text: str, scopes: tuple[str, ...]) -> Template:
    """A template limited to the scopes a backend can fill; raise TemplateError."""
    return placeholders.parse(text, scopes)


@dataclass(frozen=True, slots=True)
class Text:
    """A templated string inside a JSON body."""

    template: Template

    def render(self, lookup: Lookup) -> Scalar:
        # A lone placeholder keeps its type, as in the mapping: {identity.id} stays a number.
        return self.template.value(lookup, JSON)


@dataclass(frozen=True, slots=True)
class URLTemplate:
    origin: str                       # "https://host:port", literal
    segments: tuple[Template, ...]    # the path, split at "/"
    query: str                        # literal, without "?"
    plain: bool = False               # rendered as is: it is what httpx.URL would send

    def normal(self, query_keys: tuple[tuple[str, Template], ...] = ()) -> bool:
        """Whether httpx.URL leaves a rendering of this URL (with `query_keys`) unchanged.

        Placeholders come out as RFC 3986 unreserved characters and complete %XX
        escapes (PATH, QUERY), which httpx never rewrites; so only the literal
        text decides, checked once on a sample rendering. A literal "%" could
        form an escape with a value next to it: such a template (and an upper
        case host, a non-ASCII literal, a dot segment, ...) takes httpx.URL on
        every request instead.
        """
        literals = [p for t in self.segments for p in t.parts if isinstance(p, str)]
        literals += [p for _, t in query_keys for p in t.parts if isinstance(p, str)]
        if any("%" in text for text in literals):
            return False
        sample = self._join("/".join(_sample(t) for t in self.segments),
                            "&".join(f"{quote(k, safe='')}={_sample(t)}" for k, t in query_keys))
        try:
            return str(httpx.URL(sample)) == sample
        except httpx.InvalidURL:
            return False

    @classmethod
    def parse(cls, text: str, scopes: tuple[str, ...]) -> URLTemplate:
        m = _ORIGIN.fullmatch(text)
        if not m:
            raise ValueError("must be http:// or https:// followed by a literal host "
                             "(placeholders may only appear in the path)")
        origin = f"{m.group(1).lower()}://{m.group(2)}"
        try:
            parsed = httpx.URL(origin)
        except httpx.InvalidURL:
            raise ValueError(f"invalid host or port in {origin!r}") from None
        if not parsed.host or not 0 < (443 if parsed.port is None else parsed.port) < 65536:
            raise ValueError(f"invalid host or port in {origin!r}")
        rest = m.group(3)
        if "#" in rest:
            raise ValueError("must not have a #fragment")
        path, _, query = rest.partition("?")
        if "{" in query or "}" in query:
            raise ValueError("placeholders are not allowed in the query part of the url; "
                             "put the parameter in the [query] table")
        if path and not path.startswith("/"):
            raise ValueError("the path must start with '/'")
        parts = compile_template(path[1:], scopes).parts
        if any(is_password(p) for p in parts):
            raise ValueError("{login.password} must not be in the url path (it would end up "
                             "in access logs); use the body or basic_auth")
        segments: list[list[str | Field]] = [[]]
        for part in parts:
            if isinstance(part, Field):
                segments[-1].append(part)
                continue
            first, *others = part.split("/")
            if first:
                segments[-1].append(first)
            for literal in others:
                segments.append([literal] if literal else [])
        return cls(origin, tuple(Template(tuple(s) or ("",)) for s in segments), query)

    @property
    def host(self) -> str:
        return httpx.URL(self.origin).host

    def render(self, lookup: Lookup, query: str = "") -> str:
        """The URL as httpx.URL would send it, each path segment encoded (PATH); `query`
        (encoded) after the literal one. Built as a string when `plain` (no URL object per
        request: ~5 % of a full request's CPU), else normalized by httpx.URL."""
        url = self._join("/".join(path_segment(s, lookup) for s in self.segments), query)
        return url if self.plain else str(httpx.URL(url))

    def _join(self, path: str, query: str) -> str:
        url = self.origin + "/" + path
        query = "&".join(q for q in (self.query, query) if q)
        return url + "?" + query if query else url


def _sample(template: Template) -> str:
    """A rendering with every placeholder as a plain value (see URLTemplate.normal)."""
    return "".join(p if isinstance(p, str) else "x" for p in template.parts)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready to send: every user-supplied value already encoded or checked.

    `url` is exactly what goes on the wire (a string in httpx.URL's normal form, or
    an httpx.URL)."""

    method: str
    url: httpx.URL | str
    headers: list[tuple[str, bytes]]
    content: bytes | None = None


@dataclass(frozen=True)
class RequestTemplate:
    method: str
    url: URLTemplate
    query: tuple[tuple[str, Template], ...] = ()
    headers: tuple[tuple[str, Template], ...] = ()
    json_body: Any = None
    form: tuple[tuple[str, Template], ...] | None = None

    def __post_init__(self) -> None:
        # checked once at load: whether the URL can be sent as built (URLTemplate.normal)
        plain = self.url.normal(self.query)
        if plain != self.url.plain:
            object.__setattr__(self, "url", dataclasses.replace(self.url, plain=plain))

    def prepare(self, values: Values) -> Prepared:
        """Fill the placeholders; raise UnsafeValue, or bridge.placeholders.MissingField."""
        lookup = values.lookup
        query = "&".join(f"{quote(k, safe='')}={t.render(lookup, QUERY)}" for k, t in self.query)
        url = self.url.render(lookup, query)
        headers = [(k, header_value(t, lookup)) for k, t in self.headers]
        content = None
        typed = any(k.lower() == "content-type" for k, _ in headers)
        if self.json_body is not None:
            if not typed:
                headers.append(("Content-Type", b"application/json"))
            content = json.dumps(_render_json(self.json_body, lookup),
                                 ensure_ascii=False).encode("utf-8")
        elif self.form is not None:
            if not typed:
                headers.append(("Content-Type", b"application/x-www-form-urlencoded"))
            content = "&".join(f"{quote_plus(k, safe='')}={t.render(lookup, FORM)}"
                               for k, t in self.form).encode("ascii")
        return Prepared(self.method, url, headers, content)

    @property
    def host(self) -> str:
        return self.url.host


def compile_text(value: Scalar, scopes: tuple[str, ...]) -> Template:
    """A query, header or form value: numbers and true/false are literal text."""
    if isinstance(value, bool | int):
        return Template((text_of(value),), text_of(value))
    return compile_template(value, scopes)


def compile_table(table: dict[str, Scalar], scopes: tuple[str, ...]
                  ) -> tuple[tuple[tuple[str, Template], ...], list[Problem]]:
    """Each value compiled; the problems (one per bad value) keyed by its name."""
    compiled: list[tuple[str, Template]] = []
    problems: list[Problem] = []
    for name, value in table.items():
        try:
            compiled.append((name, compile_text(value, scopes)))
        except TemplateError as exc:
            problems.append(((name,), str(exc)))
    return tuple(compiled), problems


def header_problems(headers: tuple[tuple[str, Template], ...]) -> list[Problem]:
    problems: list[Problem] = []
    for name, template in headers:
        if not HEADER_NAME.fullmatch(name):
            problems.append(((name,), "is not a valid header name"))
        literal = "".join(p for p in template.parts if isinstance(p, str))
        if _HEADER_UNSAFE.search(literal):
            problems.append(((name,), "must not contain line breaks or controls"))
    return problems


def compile_json(value: Any, scopes: tuple[str, ...], where: tuple[str | int, ...] = (),
                 problems: list[Problem] | None = None) -> Any:
    """A JSON body template: strings become `Text`; problems are appended to `problems`."""
    found: list[Problem] = [] if problems is None else problems
    if isinstance(value, str):
        try:
            return Text(compile_template(value, scopes))
        except TemplateError as exc:
            found.append((where, str(exc)))
            return value
    if isinstance(value, dict):
        return {k: compile_json(v, scopes, (*where, k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_json(v, scopes, (*where, i), found) for i, v in enumerate(value)]
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    found.append((where, f"cannot be sent as JSON: {describe(value)}"))
    return None


def _render_json(value: Any, lookup: Lookup) -> Any:
    if isinstance(value, Text):
        return value.render(lookup)
    if isinstance(value, dict):
        return {k: _render_json(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, lookup) for v in value]
    return value

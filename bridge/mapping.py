"""From identity + account data to a Zoiper configuration tree, as declared in TOML.

    [mapping.account]
    name = "{identity.displayName}"
    username = "{account.sip_user}"
    password = "{account.sip_password}"
    SIP_domain = "{account.domain}"
    SIP_callerId = { value = "{identity.displayName}", default = "" }
    SIP_transport_type = "tls"

Placeholders (the one syntax of bridge.placeholders) name a scope and a
field: `identity.username` (the canonical name the authenticator returned),
`identity.<attribute>`, `account.<field>` (what the account source returned,
once per account) and `login.username` / `login.password` (what the phone
sent, for SIP servers that check the same credentials). `{{` and `}}` are
literal braces. A value that is a single placeholder keeps the field's type
(an integer stays an integer); anything else becomes text.

Option names are checked against the schema when the configuration is loaded,
and literal values are checked there too. Options the schema does not know yet
go in `[mapping.account.extra]` (or `.stun.extra`, ...), the one documented
escape hatch; they are passed through as text.

The schema is the Zoiper dialect's (Android unless told otherwise). Besides
`[mapping.account]`, `[mapping.<name>]` fills any single (non-list) top-level
section of that dialect once per request: `diagnostics` on every client,
`general`, `audio`, `provision`, ... on Zoiper5 Desktop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bridge import placeholders
from bridge.config import Section, describe
from bridge.errors import InternalError
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.placeholders import PLAIN, Field, MissingField, Template, Values, text_of
from bridge.zoiper import schema
from bridge.zoiper.dialects import ANDROID, Dialect
from bridge.zoiper.document import EXTRA, extra_name_problem
from bridge.zoiper.schema import SchemaError, SectionSpec

SCOPES = placeholders.SCOPES
__all__ = ["ConfigMapping", "Field", "MissingField", "SectionMapping", "Value", "parse_template",
           "text_of"]


@dataclass(frozen=True, slots=True)
class Value:
    """One option's value: a template (or a TOML number or true/false), optional default."""

    source: Template | int | bool
    default: Scalar | None = None
    # A lone placeholder feeding a boolean or integer option: the backend's value is
    # coerced (0/1, 't'/'f', 'yes'/'no', numeric text; schema.Option.coerce).
    option: schema.Option | None = None

    def resolve(self, values: Values) -> Scalar:
        if not isinstance(self.source, Template):
            return self.source
        try:
            value = self.source.value(values.lookup, PLAIN)
        except MissingField:
            if self.default is None:
                raise
            return self.default
        if self.option is None:
            return value
        try:
            return self.option.coerce(value)
        except SchemaError as exc:
            raise SchemaError(self.option.name, f"{self.source} {exc.message}") from None

    @property
    def literal(self) -> Scalar | None:
        return self.source.literal if isinstance(self.source, Template) else self.source

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.source.fields if isinstance(self.source, Template) else ()


def parse_template(text: str) -> tuple[str | Field, ...]:
    """Split "sip:{account.user}@{account.domain}" into literal and Field parts."""
    return placeholders.parse(text).parts


@dataclass
class SectionMapping:
    spec: SectionSpec
    options: dict[str, Value] = field(default_factory=dict)
    sections: dict[str, SectionMapping] = field(default_factory=dict)
    lists: dict[str, list[SectionMapping]] = field(default_factory=dict)
    extra: dict[str, Value] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Section, spec: SectionSpec) -> SectionMapping:
        mapping = cls(spec)
        for key in list(cfg.keys()):
            if key == "extra":
                extra = cfg.table("extra")
                for name in list(extra.keys()):
                    if (problem := extra_name_problem(spec, name)) is not None:
                        extra.problem(name, problem)
                    value = _read_value(extra, name, None)
                    if value is not None:
                        mapping.extra[name] = value
                    extra.mark(name)
            elif (option := spec.option(key)) is not None:
                value = _read_value(cfg, key, option)
                if value is not None:
                    mapping.options[key] = value
            elif (sub := spec.section(key)) is not None:
                if sub.item is not None:
                    mapping.lists[key] = [cls.from_config(item, sub.item)
                                          for item in cfg.tables(key)]
                else:
                    mapping.sections[key] = cls.from_config(cfg.table(key), sub)
            else:
                cfg.problem(key, f"unknown option for <{spec.name}> (options the schema does "
                                 f"not know go in [{cfg.path}.extra])")
            cfg.mark(key)
        return mapping

    @cached_property
    def _static(self) -> dict[str, Any]:
        """The part of the tree that is the same for every request, built once.

        Literal options, and whole subsections and lists without placeholders
        (a codec list, usually), are shared between requests; the renderer
        only reads the tree, so sharing is safe.
        """
        tree: dict[str, Any] = {n: v.literal for n, v in self.options.items()
                                if v.literal is not None}
        for name, sub in self.sections.items():
            if sub.is_static:
                tree[name] = sub._static
        for name, items in self.lists.items():
            if all(item.is_static for item in items):
                tree[name] = [item._static for item in items]
        if self.extra and all(v.literal is not None for v in self.extra.values()):
            tree[EXTRA] = {n: text_of(v.literal) for n, v in self.extra.items()}  # type: ignore[arg-type]
        return tree

    @property
    def is_static(self) -> bool:
        return len(self._static) == (len(self.options) + len(self.sections) + len(self.lists)
                                     + (1 if self.extra else 0))

    def build(self, ctx: Values) -> dict[str, Any]:
        static = self._static
        if self.is_static:
            return static
        tree = dict(static)
        for name, value in self.options.items():
            if name not in static:
                tree[name] = value.resolve(ctx)
        for name, sub in self.sections.items():
            if name not in static:
                tree[name] = sub.build(ctx)
        for name, items in self.lists.items():
            if name not in static:
                tree[name] = [item.build(ctx) for item in items]
        if self.extra and EXTRA not in static:
            tree[EXTRA] = {name: text_of(v.resolve(ctx)) for name, v in self.extra.items()}
        return tree


def _hidden(value: object) -> str:
    return f"a {type(value).__name__} (not shown: the option is secret)"


_COERCED = (schema.Kind.BOOLEAN, schema.Kind.INTEGER, schema.Kind.ENUMERATION)


def _read_value(cfg: Section, key: str, option: schema.Option | None) -> Value | None:
    # A secret option's value (a literal password) never goes into a problem message.
    secret = option is not None and option.secret
    show = _hidden if secret else describe
    raw = cfg.raw(key)
    default: Scalar | None = None
    if isinstance(raw, dict):
        sub = cfg.table(key)
        raw = sub.raw("value")
        default = sub.raw("default", None)
        sub.done()
        if default is not None and not isinstance(default, str | int | bool):
            sub.problem("default", f"expected text, a number or true/false, "
                                   f"received {show(default)}")
            return None
    if not isinstance(raw, str | int | bool):
        cfg.problem(key, f"expected text, a number, true/false or a table "
                         f"{{ value = ..., default = ... }}, received {show(raw)}")
        return None
    try:
        source = placeholders.parse(raw) if isinstance(raw, str) else raw
    except placeholders.TemplateError as exc:
        cfg.problem(key, "not a valid template (placeholders are {scope.name}; write {{ and }} "
                         "for literal braces)" if secret else str(exc))
        return None
    coerced = (option is not None and option.kind in _COERCED
               and isinstance(source, Template) and source.single is not None)
    value = Value(source, default, option if coerced else None)
    if option is not None:
        for candidate in (value.literal, default):
            if candidate is None:
                continue
            try:
                option.check(candidate)
            except SchemaError as exc:
                cfg.problem(key, exc.message)
    return value


def _check_required(cfg: Section, account: SectionMapping, dialect: Dialect) -> None:
    """An account the phone cannot register with would be a 500 for every user: say so now."""
    required = dialect.required
    protocol = account.options.get("protocol")
    if protocol is not None:
        name = protocol.literal
    else:
        option = dialect.account.option("protocol")
        name = option.default if option is not None else None
    if not isinstance(name, str) or name not in required:
        return  # a template: checked per request
    missing = [option for option in required[name] if option not in account.options]
    if missing:
        cfg.problem("account", f"{name} accounts need {', '.join(required[name])}; "
                               f"missing: {', '.join(missing)}")


def _account_fields(mapping: SectionMapping) -> Iterator[tuple[str, Field]]:
    """{account.*} placeholders without a default, with their option's key path."""
    values = [*mapping.options.items(), *mapping.extra.items()]
    for name, value in values:
        if value.default is None:
            for part in value.fields:
                if part.scope == "account":
                    yield name, part
    subs = [*mapping.sections.items()]
    subs += [(f"{name}[{i}]", item) for name, items in mapping.lists.items()
             for i, item in enumerate(items)]
    for prefix, sub in subs:
        for name, part in _account_fields(sub):
            yield f"{prefix}.{name}", part


@dataclass
class ConfigMapping:
    """The whole declared mapping for one dialect.

    `account` is applied to every account the source returns; `sections` are
    the dialect's other top-level sections (by element name), filled once per
    request.
    """

    account: SectionMapping
    sections: dict[str, SectionMapping] = field(default_factory=dict)
    dialect: Dialect = ANDROID

    @property
    def account_fields(self) -> frozenset[str]:
        """The {account.*} fields the accounts need (those without a default): what an
        account source must return, checked against it before the first request."""
        return frozenset(f.name for _, f in _account_fields(self.account))

    @property
    def diagnostics(self) -> SectionMapping | None:
        return self.sections.get("diagnostics")

    @classmethod
    def from_config(cls, cfg: Section, dialect: Dialect = ANDROID) -> ConfigMapping:
        account = SectionMapping.from_config(cfg.table("account", required=True),
                                             dialect.account)
        if "account" in cfg:
            _check_required(cfg, account, dialect)
        sections: dict[str, SectionMapping] = {}
        for key in list(cfg.keys()):
            if key == "account":
                continue
            spec = dialect.root.section(key)
            if spec is not None and spec.item is None:
                section = cfg.table(key)
                sections[key] = SectionMapping.from_config(section, spec)
                for path, part in _account_fields(sections[key]):
                    section.problem(path, f"{part} is only known per account; <{key}> is "
                                          f"filled once per request (give a default)")
            else:
                cfg.problem(key, _not_a_section(key, spec, dialect))
            cfg.mark(key)
        cfg.done()
        return cls(account, sections, dialect)

    def build(
        self, identity: Identity, accounts: list[Account], credentials: Credentials
    ) -> dict[str, Any]:
        try:
            tree: dict[str, Any] = {
                "accounts": [self.account.build(Values(credentials, identity, a))
                             for a in accounts]
            }
            if self.sections:
                ctx = Values(credentials, identity, Account())
                for name, section in self.sections.items():
                    tree[name] = section.build(ctx)
        except MissingField as exc:
            raise InternalError(f"mapping: field {exc} is missing for user "
                                f"{identity.username!r} and the option has no default") from None
        except SchemaError as exc:  # a backend's value the option cannot take (coerce)
            raise InternalError(f"mapping: option {exc.path!r} for user "
                                f"{identity.username!r}: {exc.message}") from None
        return tree


def _not_a_section(key: str, spec: SectionSpec | None, dialect: Dialect) -> str:
    names = [n for n, s in dialect.root.sections.items() if s.item is None]
    choices = f"expected account or one of: {', '.join(names)}"
    if key == "accounts":
        return f"the accounts list is built from [mapping.account], once per account; {choices}"
    if spec is not None:
        return (f"<{key}> is a list in {dialect.title}; only single sections can be mapped, "
                f"{choices}")
    return f"{dialect.title} has no section <{key}>; {choices}"

"""What `[auth] type = "ldap"` and `[source] type = "ldap"` share: connection keys, values.

`DirectoryConfig` declares the connection keys once; both backends' tables
extend it, and a `Directory` (which client, with which `ServerSettings`) is
built from it. Validation is strict where a mistake would be silent: a simple
bind in clear text to a host that is not loopback is refused unless
`allow_cleartext = true`, because it sends every user's password over the
network readable. Directory values become text here, one deliberate way for
both backends: the first value of a multi-valued attribute, and hex (or
base64) for octets that are not text, never a crash.

DN and filter templates (`template`) are bridge.placeholders templates,
parsed when the configuration loads: values are RFC 4514-escaped in a DN
(`render_dn`; `{identity.dn}` there is a whole DN, checked and placed as it
is) and RFC 4515-escaped in a filter (`render_filter`). The older bare
`{username}` and `{dn}` are aliases, and what `{username}` stands for is the
backend's to say (AUTH_ALIASES: what was typed; SOURCE_ALIASES: the canonical
name); see bridge.auth.ldap and bridge.sources.ldap.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from bridge import placeholders
from bridge.config import FilePath, Secret, describe, problem
from bridge.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.ldap.checked import Checked
from bridge.ldap.client import Entry, LdapClient, LdapError, Scope, ServerSettings, TlsMode
from bridge.ldap.errors import translate
from bridge.ldap.escape import parse_dn
from bridge.net import client_tls_context, is_loopback
from bridge.placeholders import DN, DN_VALUE, FILTER, Lookup, Template

logger = logging.getLogger("bridge.ldap")

CLIENTS = ("asyncio", "ldap3")
DEFAULT_CLIENT: Final = "asyncio"  # our own wire client on the event loop; "ldap3": threads
DEFAULT_THREADS = 64
READY_TIMEOUT = 3.0  # seconds for ready(): a probe must not hang like a request may


# -- key types -----------------------------------------------------------------------


def _many(problems: Mapping[str, str]) -> ValidationError:
    """One problem per key of a table (a map of names), reported at each key."""
    return ValidationError.from_exception_data("config", [
        {"type": problem(message), "loc": (key,), "input": None}
        for key, message in problems.items()], hide_input=True)



NonEmpty = Annotated[str, Field(min_length=1)]

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*|[0-9]+(\.[0-9]+)+")


def _uris(value: Any) -> tuple[str, ...]:
    uris = [value] if isinstance(value, str) else value
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise problem("expected an LDAP URI or a list of them, e.g. \"ldaps://ldap.example.org\"")
    good, bad = _sorted_uris(uris)
    if bad:
        raise problem("; ".join(bad))
    return tuple(good)


def _sorted_uris(uris: list[Any]) -> tuple[list[str], list[str]]:
    """The usable URIs, and a problem for each other one."""
    good, bad = [], []
    for uri in uris:
        if not isinstance(uri, str):
            continue
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            bad.append(f"{uri!r}: {exc}")
            continue
        if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
            bad.append(f"{uri!r}: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
        elif parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            bad.append(f"{uri!r}: only scheme, host and port are used; give the base DN and "
                       "filters with their own keys")
        elif port == 0:
            bad.append(f"{uri!r}: invalid port")
        else:
            good.append(uri)
    return good, bad


Uris = Annotated[tuple[str, ...], PlainValidator(_uris)]
"""One LDAP URI or a list of them (failover, in order): scheme, host and port only."""

SCOPES = {"base": Scope.BASE, "one": Scope.ONELEVEL, "sub": Scope.SUBTREE}


def _scope(value: Any) -> Scope:
    if isinstance(value, Scope):
        return value
    if isinstance(value, str) and value in SCOPES:
        return SCOPES[value]
    raise problem(f"expected one of {', '.join(map(repr, SCOPES))}, received {describe(value)}")


ScopeName = Annotated[Scope, PlainValidator(_scope)]
"""A search scope: "base", "one" or "sub"."""


def attribute_map(reserved: Mapping[str, str]) -> Callable[[Any], dict[str, str]]:
    """`[KEY] name = "ldapAttribute"`: what becomes an identity attribute or an account field."""
    def check(value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise problem(f"expected a table, received {describe(value)}")
        problems = {}
        for name, attribute in value.items():
            if name in reserved:
                problems[name] = reserved[name]
            elif not isinstance(attribute, str):
                problems[name] = f"expected a string, received {describe(attribute)}"
            elif not _ATTRIBUTE_NAME.fullmatch(attribute):
                problems[name] = (f"{attribute!r} is not an LDAP attribute name" if attribute
                                  else "must not be empty")
        if problems:
            raise _many(problems)
        return dict(value)
    return check


WHOLE_DN = placeholders.Field("identity", "dn")
"""In a DN template this field is a whole DN, placed as it is (checked); elsewhere a value."""
AUTH_ALIASES: Final = {"username": placeholders.Field("login", "username")}
SOURCE_ALIASES: Final = {"username": placeholders.Field("identity", "username"),
                         "dn": WHOLE_DN}
_UPN = re.compile(r"@[^@\s{}]+")


def template(kind: Literal["dn", "filter", "upn"], allow: tuple[str, ...],
             aliases: Mapping[str, placeholders.Field] | None = None,
             needs: placeholders.Field | None = None) -> Callable[[Any], Template]:
    """A DN, filter or UPN template, parsed (bridge.placeholders) and of the shape of its kind.

    `allow` and `aliases` are the placeholders of the use site; `needs`: a field it must hold.
    """
    named = {field: alias for alias, field in (aliases or {}).items()}

    def spelled(field: placeholders.Field) -> str:
        alias = named.get(field)
        return f"{{{alias}}} (or {field})" if alias else str(field)

    def check(text: Any) -> Template:
        if not isinstance(text, str):
            raise problem(f"expected a string, received {describe(text)}")
        if not text:
            raise problem("must not be empty")
        found = []
        try:
            parsed = placeholders.parse(text, allow, aliases)
        except placeholders.TemplateError as exc:
            found.append(str(exc))
            rough = re.sub(r"\{[^{}]*\}", "x", text.replace("{{", "").replace("}}", ""))
            parsed = Template((rough.replace("{", "").replace("}", ""),), text)
        if needs is not None and not found and needs not in parsed.fields:
            found.append(f"must contain {spelled(needs)}")
        if kind == "dn" and not _dn_shaped(parsed):
            found.append(f"{text!r} is not a DN template: expected ATTRIBUTE=VALUE parts "
                         "separated by commas, e.g. \"uid={username},ou=people,dc=example,"
                         "dc=org\"")
        if kind == "filter" and not _balanced(_sample(parsed)):
            found.append(f"{text!r} is not an LDAP filter: it must be enclosed in "
                         "parentheses, and they must balance")
        if kind == "upn" and not found and not (
                len(parsed.parts) == 2 and parsed.parts[0] == needs
                and isinstance(parsed.parts[1], str) and _UPN.fullmatch(parsed.parts[1])):
            found.append("expected \"{username}@DOMAIN\", e.g. \"{username}@example.test\"")
        if found:
            raise problem("; ".join(found))
        return parsed
    return check


def _sample(parsed: Template) -> str:
    """The template filled with a plain value ("x"), a whole DN with "cn=x"."""
    return "".join(p if isinstance(p, str) else "cn=x" if p == WHOLE_DN else "x"
                   for p in parsed.parts)


def _dn_shaped(parsed: Template) -> bool:
    """Every RDN of the template (placeholders filled with a plain value) is TYPE=VALUE."""
    return all(t and _ATTRIBUTE_NAME.fullmatch(t) and v
               for rdn in parse_dn(_sample(parsed)) for t, v in rdn)


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0 or (depth == 0 and i < len(text) - 1):
            return False
    return text.startswith("(") and depth == 0


def render_dn(parsed: Template, lookup: Lookup) -> str:
    """A DN template filled: values RFC 4514-escaped, {identity.dn} a whole (checked) DN."""
    return parsed.render(lookup, DN_VALUE, {WHOLE_DN: DN})


def render_filter(parsed: Template, lookup: Lookup) -> str:
    """A filter template filled: every value RFC 4515-escaped ({identity.dn} too)."""
    return parsed.render(lookup, FILTER)


# -- the connection keys -------------------------------------------------------------


@dataclass(frozen=True)
class Directory:
    """Which client to run, and the server settings it gets."""

    client: str
    server: ServerSettings
    threads: int = DEFAULT_THREADS

    def make_client(self) -> LdapClient:
        if self.client == "ldap3":
            from bridge.ldap.threaded import Ldap3Client

            return Ldap3Client(self.server, threads=self.threads)
        from bridge.ldap.aio import AsyncLdapClient

        return AsyncLdapClient(self.server)


class DirectoryConfig(Checked):
    """The connection keys of an `[auth]` or `[source]` table of type "ldap"."""

    client: Literal["asyncio", "ldap3"] = DEFAULT_CLIENT
    uri: Uris = ()
    tls: Literal["starttls", "none"] = "starttls"
    tls_verify: bool = True
    ca_file: FilePath | None = None
    tls_name: NonEmpty | None = None
    allow_cleartext: bool = False
    connect_timeout: float = Field(3.0, ge=0.1, le=60)
    timeout: float = Field(5.0, ge=0.1, le=300)
    pool_size: int = Field(8, ge=1, le=1024)
    threads: int = Field(DEFAULT_THREADS, ge=1, le=1024)
    reset_after_bind: bool = True
    bind_dn: NonEmpty | None = None
    """The service account; None: anonymous searches."""
    bind_password: Secret = ""

    def connects(self) -> bool:
        """Whether this table talks to a directory (an identity-only source does not)."""
        return True

    def rules(self) -> Iterator[PydanticCustomError]:
        if not self.connects():
            return
        if self.valid("uri") and not self.uri:
            yield problem("is required", "uri")
        if self.valid("tls", "allow_cleartext") and self.tls == "none" \
                and not self.allow_cleartext:
            for uri in self.uri if self.valid("uri") else self._usable_uris():
                parts = urlsplit(uri)
                if parts.scheme.lower() == "ldap" and not is_loopback(parts.hostname or ""):
                    yield problem(f"{uri!r} would carry passwords in clear text: use an "
                                  "ldaps:// URI or tls = \"starttls\" (or set allow_cleartext = "
                                  "true if the network is trusted)", "tls")
        if self.valid("ca_file", "tls_verify") and self.ca_file is not None \
                and self.ca_file.is_file():
            try:  # the context both clients will build: the shared TLS policy of bridge.net
                client_tls_context(str(self.ca_file), verify=self.tls_verify)
            except (ssl.SSLError, OSError, ValueError) as exc:
                yield problem(f"{self.ca_file} is not a readable PEM CA certificate: {exc}",
                              "ca_file")
        if self.valid("tls_verify") and not self.tls_verify:
            logger.warning("LDAP %s: tls_verify = false, the server's certificate is not "
                           "checked", ", ".join(self.uri) if self.valid("uri") else "")
        if self.valid("bind_dn", "bind_password"):
            given = "bind_password" in self.model_fields_set
            if self.bind_dn is None and given:
                yield problem("needs bind_dn", "bind_password")
            elif self.bind_dn is not None and not given:
                yield problem("is required (or bind_password_env / bind_password_file)",
                              "bind_password")
            elif self.bind_dn is not None and not self.bind_password:
                yield problem("must not be empty (an empty password is an anonymous bind)",
                              "bind_password")

    def _usable_uris(self) -> list[str]:
        """The good URIs of an invalid `uri` (which is reported already)."""
        raw = self.given("uri")
        return _sorted_uris([raw] if isinstance(raw, str) else raw)[0] \
            if isinstance(raw, str | list) else []

    def directory(self) -> Directory:
        all_ldaps = bool(self.uri) and all(u.lower().startswith("ldaps:") for u in self.uri)
        server = ServerSettings(
            uris=self.uri,
            tls=TlsMode.LDAPS if all_ldaps else TlsMode(self.tls),
            ca_file=str(self.ca_file) if self.ca_file else None,
            verify=self.tls_verify,
            tls_name=self.tls_name,
            connect_timeout=self.connect_timeout,
            timeout=self.timeout,
            pool_size=self.pool_size,
            service_dn=self.bind_dn,
            service_password=self.bind_password if self.bind_dn else None,
            reset_after_bind=self.reset_after_bind,
        )
        return Directory(self.client, server, self.threads)


async def probe(client: LdapClient) -> None:
    """Raise an UpstreamError unless the directory answers now: the backends' `ready()`.

    One read of the root DSE, as the service account (the search pool binds it;
    a refused one is held back like on the request path, so probing cannot lock
    it out) or anonymously without one, within READY_TIMEOUT.
    """
    settings = client.settings
    limit = min(READY_TIMEOUT, settings.connect_timeout + settings.timeout)
    try:
        async with asyncio.timeout(limit):
            await client.search("", Scope.BASE, "(objectClass=*)", ["1.1"])
    except TimeoutError as exc:
        raise UpstreamTimeout(f"LDAP: no answer to a root DSE read within {limit:g}s") from exc
    except LdapError as exc:
        error = translate(exc)
        if not isinstance(error, UpstreamError):  # a refusal a search would be a 500 for
            error = UpstreamUnavailable(error.detail)
        raise error from exc


# -- directory data ------------------------------------------------------------

# Attributes whose values are octets, not text, even when they happen to decode as UTF-8.
BINARY_ATTRIBUTES = frozenset({
    "objectguid", "objectsid", "jpegphoto", "thumbnailphoto", "usercertificate",
    "cacertificate", "usersmimecertificate", "mssfu30sid", "msexchmailboxguid",
    "ms-ds-consistencyguid", "sidhistory", "tokengroups", "photo", "audio",
})
Binary = Literal["hex", "base64"]


def text_value(attribute: str, raw: bytes, binary: str = "hex") -> str:
    """One attribute value as text: UTF-8 when it is text, else hex or base64 (never a crash)."""
    name = attribute.lower()
    if name not in BINARY_ATTRIBUTES and not name.endswith(";binary"):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                return text
    return raw.hex() if binary == "hex" else base64.b64encode(raw).decode("ascii")


def first_text(entry: Entry, attribute: str, binary: str = "hex") -> str | None:
    """The first value (in the server's order) of a possibly multi-valued attribute."""
    values = entry.values(attribute)
    return text_value(attribute, values[0], binary) if values else None

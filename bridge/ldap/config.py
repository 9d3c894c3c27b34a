"""What `[auth] type = "ldap"` and `[source] type = "ldap"` share: connection keys, values.

Validated at load like every other table, and strict where a mistake would
be silent: a simple bind in clear text to a host that is not loopback is
refused unless `allow_cleartext = true`, because it sends every user's
password over the network readable. Directory values become text here, one
deliberate way for both backends: the first value of a multi-valued
attribute, and hex (or base64) for octets that are not text, never a crash.
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.config import Section
from bridge.ldap.client import Entry, LdapClient, Scope, ServerSettings, TlsMode
from bridge.ldap.escape import parse_dn, placeholders
from bridge.net import client_tls_context, is_loopback

logger = logging.getLogger("bridge.ldap")

CLIENTS = ("asyncio", "ldap3")
DEFAULT_CLIENT = "asyncio"  # our own wire client on the event loop; "ldap3": threads
DEFAULT_THREADS = 64


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


def _uris(cfg: Section) -> list[str]:
    raw = cfg.raw("uri")
    uris = [raw] if isinstance(raw, str) else raw
    if raw is not None and (not isinstance(uris, list) or not uris
                            or not all(isinstance(u, str) for u in uris)):
        cfg.problem("uri", "expected an LDAP URI or a list of them, e.g. "
                           "\"ldaps://ldap.example.org\"")
        return []
    good = []
    for uri in uris or []:
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            cfg.problem("uri", f"{uri!r}: {exc}")
            continue
        if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
            cfg.problem("uri", f"{uri!r}: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
        elif parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            cfg.problem("uri", f"{uri!r}: only scheme, host and port are used; give the base "
                               "DN and filters with their own keys")
        elif port == 0:
            cfg.problem("uri", f"{uri!r}: invalid port")
        else:
            good.append(uri)
    return good


def read_directory(cfg: Section) -> Directory:
    """Read the connection keys of an `[auth]` or `[source]` table of type "ldap"."""
    client = cfg.str("client", DEFAULT_CLIENT, choices=CLIENTS)
    uris = _uris(cfg)
    tls = cfg.str("tls", "starttls", choices=("starttls", "none"))
    verify = cfg.bool("tls_verify", True)
    ca_file = cfg.path_value("ca_file", None) if "ca_file" in cfg else None
    if ca_file is not None and ca_file.is_file():
        try:  # the context both clients will build: the shared TLS policy of bridge.net
            client_tls_context(str(ca_file), verify=verify)
        except (ssl.SSLError, OSError, ValueError) as exc:
            cfg.problem("ca_file", f"{ca_file} is not a readable PEM CA certificate: {exc}")
    tls_name = cfg.str("tls_name", None, nonempty=True) if "tls_name" in cfg else None
    allow_cleartext = cfg.bool("allow_cleartext", False)
    if tls == "none" and not allow_cleartext:
        for uri in uris:
            parts = urlsplit(uri)
            if parts.scheme.lower() == "ldap" and not is_loopback(parts.hostname or ""):
                cfg.problem("tls", f"{uri!r} would carry passwords in clear text: use an "
                                   "ldaps:// URI or tls = \"starttls\" (or set allow_cleartext = "
                                   "true if the network is trusted)")
    if not verify:
        logger.warning("LDAP %s: tls_verify = false, the server's certificate is not checked",
                       cfg.path)
    bind_dn = cfg.str("bind_dn", None, nonempty=True) if "bind_dn" in cfg else None
    reported = len(cfg.problems)
    password = cfg.secret("bind_password", required=bind_dn is not None)
    if bind_dn is None and password is not None:
        cfg.problem("bind_password", "needs bind_dn")
    elif bind_dn is not None and password == "" and len(cfg.problems) == reported:
        cfg.problem("bind_password", "must not be empty (an empty password is an "
                                     "anonymous bind)")
    all_ldaps = bool(uris) and all(u.lower().startswith("ldaps:") for u in uris)
    server = ServerSettings(
        uris=tuple(uris),
        tls=TlsMode.LDAPS if all_ldaps else TlsMode(tls),
        ca_file=str(ca_file) if ca_file else None,
        verify=verify,
        tls_name=tls_name,
        connect_timeout=cfg.float("connect_timeout", 3.0, min=0.1, max=60),
        timeout=cfg.float("timeout", 5.0, min=0.1, max=300),
        pool_size=cfg.int("pool_size", 8, min=1, max=1024),
        service_dn=bind_dn,
        service_password=password if bind_dn else None,
        reset_after_bind=cfg.bool("reset_after_bind", True),
    )
    threads = cfg.int("threads", DEFAULT_THREADS, min=1, max=1024)
    return Directory(client, server, threads)


# -- directory data ------------------------------------------------------------

# Attributes whose values are octets, not text, even when they happen to decode as UTF-8.
BINARY_ATTRIBUTES = frozenset({
    "objectguid", "objectsid", "jpegphoto", "thumbnailphoto", "usercertificate",
    "cacertificate", "usersmimecertificate", "mssfu30sid", "msexchmailboxguid",
    "ms-ds-consistencyguid", "sidhistory", "tokengroups", "photo", "audio",
})
BINARY_ENCODINGS = ("hex", "base64")


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


_PLACEHOLDER_ANY = re.compile(r"\{[A-Za-z_]+\}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*|[0-9]+(\.[0-9]+)+")


def read_attribute_map(cfg: Section, key: str, reserved: dict[str, str]) -> dict[str, str]:
    """`[KEY] name = "ldapAttribute"`: what becomes an identity attribute or an account field."""
    table = cfg.table(key)
    mapping: dict[str, str] = {}
    for name in list(table.keys()):
        attribute = table.str(name, nonempty=True)
        if name in reserved:
            table.problem(name, reserved[name])
        elif attribute and not _ATTRIBUTE_NAME.fullmatch(attribute):
            table.problem(name, f"{attribute!r} is not an LDAP attribute name")
        elif attribute:
            mapping[name] = attribute
    table.done()
    return mapping


SCOPES = {"base": Scope.BASE, "one": Scope.ONELEVEL, "sub": Scope.SUBTREE}


def read_scope(cfg: Section, key: str, default: str = "sub") -> Scope:
    return SCOPES.get(cfg.str(key, default, choices=tuple(SCOPES)), SCOPES[default])


def read_template(cfg: Section, key: str, allowed: tuple[str, ...], *, kind: str,
                  required: bool = True, needs: str | None = None) -> str | None:
    """A DN or filter template: known placeholders only, and a filter must be parenthesised."""
    if not required and key not in cfg:
        cfg.mark(key)
        return None
    text = cfg.str(key, nonempty=True)
    if not text:
        return None
    def braced(names: Iterable[str]) -> str:
        return ", ".join("{" + n + "}" for n in names)

    unknown = placeholders(text) - set(allowed)
    if unknown:
        cfg.problem(key, f"unknown placeholder(s) {braced(sorted(unknown))}; "
                         f"allowed: {braced(allowed)}")
    if needs and f"{{{needs}}}" not in text:
        cfg.problem(key, f"must contain {{{needs}}}")
    if kind == "dn" and not _dn_shaped(text):
        cfg.problem(key, f"{text!r} is not a DN template: expected ATTRIBUTE=VALUE parts "
                         "separated by commas, e.g. \"uid={username},ou=people,dc=example,dc=org\"")
    if kind == "filter" and not _balanced(text):
        cfg.problem(key, f"{text!r} is not an LDAP filter: it must be enclosed in parentheses, "
                         "and they must balance")
    return text


def _dn_shaped(template: str) -> bool:
    """Every RDN of the template (placeholders filled with a plain value) is TYPE=VALUE."""
    filled = _PLACEHOLDER_ANY.sub("x", template.replace("{dn}", "cn=x"))
    return all(t and _ATTRIBUTE_NAME.fullmatch(t) and v
               for rdn in parse_dn(filled) for t, v in rdn)


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0 or (depth == 0 and i < len(text) - 1):
            return False
    return text.startswith("(") and depth == 0

"""The values that flow through one provisioning request.

They are plain frozen dataclasses so every stage (authenticate, fetch accounts,
map, render) receives explicit data and can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

Scalar = str | int | bool
"""What a backend may hand us as an attribute or account field value."""


def _frozen(mapping: Mapping[str, Scalar] | None) -> Mapping[str, Scalar]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the phone sent. The password never shows up in repr()."""

    username: str
    password: str = field(repr=False)
    version: str | None = None
    client: str | None = None  # the client's address, for limits and logs
    password_format: str = "plaintext"  # noqa: S105 (or "md5": the password's MD5, in hex)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the authenticator says the caller is.

    `username` is the directory's canonical name (it may differ from what was
    typed, e.g. in case); `attributes` are text values usable in the mapping.
    """

    username: str
    attributes: Mapping[str, Scalar] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen(self.attributes))


@dataclass(frozen=True, slots=True)
class Account:
    """One SIP account's raw data as a backend returned it, before mapping.

    Field names are the backend's own (column names, JSON keys, LDAP
    attributes); the TOML mapping turns them into Zoiper options.
    """

    fields: Mapping[str, Scalar] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _frozen(self.fields))

"""`[tokens]` and a profile's `[profiles.NAME.tokens]`: one-time onboarding tokens.

    [tokens]
    path = "/token/"        # the default profile's Token URL path (the app GETs path + token)
    link = "https://prov.example.net/qr?token={token}"   # what the QR code holds
    backend = "sqlite"      # sqlite (default) | postgresql | redis
    database = "tokens.sqlite"                  # sqlite: the file (relative to this file)
    url_env = "TOKENS_URL"  # postgresql: postgresql://...; redis: default [state] redis_url
    secret_env = "TOKENS_KEY"  # the hash key; default [state] secret; one of them is required
    ttl = "24h"             # default lifetime; uses = 1 by default
    [tokens.admin]          # the HTTP admin API, off by default
    enabled = true
    secret_file = "/run/secrets/token-admin"   # the bearer secret, required when enabled

A token endpoint is an address, like a profile's `path`: it is served only
where it is set (`[tokens] path` for the default profile, `[profiles.P.tokens]
path` for another), never inherited. Only the store's keys live in `[tokens]`;
a profile's table has `path` and, optionally, its own `link`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PlainValidator, model_validator

from bridge.config import Model, NewPath, Secret, describe, problem
from bridge.mapping import SectionMapping, Value
from bridge.net import is_loopback
from bridge.placeholders import Field as Placeholder
from bridge.placeholders import Template

if TYPE_CHECKING:
    from bridge.settings import PipelineSettings, Profile, ServerSettings

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> float:
    """Seconds from 90, 90.5, "90s", "30m", "24h", "7d" or "2w" (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected seconds or a duration like \"24h\", received "
                         f"{describe(value)}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"expected a duration like \"90s\", \"30m\", \"24h\" or \"7d\", "
                             f"received {value!r}")
        value = float(match.group(1)) * _UNITS[match.group(2)]
    if value <= 0:
        raise ValueError("must be positive")
    return float(value)


Duration = Annotated[float, PlainValidator(parse_duration)]


def _token_path(value: Any) -> str:
    if (not isinstance(value, str) or not value.startswith("/") or not value.endswith("/")
            or any(c in value for c in "?#{} ") or "//" in value):
        raise ValueError(f"expected a path that starts and ends with '/' (the app appends "
                         f"the token), without '?', '#', braces, '//' or spaces, received "
                         f"{describe(value)}")
    return value


def _admin_path(value: Any) -> str:
    if (not isinstance(value, str) or not value.startswith("/") or value.endswith("/")
            or any(c in value for c in "?#{} ") or "//" in value):
        raise ValueError(f"expected a path like \"/admin/tokens\" (no trailing '/'), "
                         f"received {describe(value)}")
    return value


def _link(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, received {describe(value)}")
    if value and (value.count("{token}") != 1
                  or not value.startswith(("https://", "http://"))):
        raise ValueError("expected an http(s) URL with {token} once, e.g. "
                         "\"https://prov.example.net/qr?token={token}\"")
    return value


TokenPath = Annotated[str, PlainValidator(_token_path)]
Link = Annotated[str, PlainValidator(_link)]


class AdminSettings(Model):
    """`[tokens.admin]`: issue, list and revoke over HTTP (JSON), with a bearer secret."""

    enabled: bool = False
    path: Annotated[str, PlainValidator(_admin_path)] = "/admin/tokens"
    secret: Secret = ""  # compared in constant time; give it as secret_env or secret_file

    @model_validator(mode="after")
    def _check(self) -> AdminSettings:
        if self.enabled and not self.secret:
            raise problem("is required with enabled = true (the admin API issues tokens "
                          "for anyone: it never runs without its own credential)", "secret")
        if self.secret and len(self.secret) < 16:
            raise problem("must be at least 16 characters (the value is not shown)", "secret")
        return self


class ProfileTokens(Model):
    """`[profiles.NAME.tokens]`: that profile's Token URL path and, optionally, its link."""

    path: TokenPath
    link: Link = ""  # default: [tokens] link


class TokenSettings(Model):
    """`[tokens]`: the store, the hash key, defaults, and the default profile's endpoint."""

    path: TokenPath | None = None
    link: Link = ""
    backend: Literal["sqlite", "postgresql", "redis"] = "sqlite"
    database: NewPath = Field("tokens.sqlite", validate_default=True)  # relative: to this file
    url: Secret = ""  # postgresql://user:pw@host/db, or redis:// (default: [state] redis_url)
    table: str = Field("zoiper_bridge_tokens", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    prefix: str = "zoiper-bridge:tokens:"  # Redis key prefix
    allow_cleartext: bool = False  # redis:// to another host
    secret: Secret = ""  # the key of the stored hashes (default: [state] secret)
    ttl: Duration = 86400.0
    max_ttl: Duration = 30 * 86400.0
    uses: int = Field(1, ge=1, le=1000)
    # Guessing: wrong tokens from one address (IPv6: its /64) per window before 429s.
    address_failures: int = Field(20, ge=1)
    address_window: Duration = 900.0
    admin: AdminSettings = AdminSettings()

    @model_validator(mode="after")
    def _check(self) -> TokenSettings:
        if self.backend == "postgresql":
            if not self.url:
                raise problem("is required with backend = \"postgresql\"", "url")
            if not self.url.startswith(("postgresql://", "postgresql+asyncpg://",
                                        "postgres://")):
                raise problem("expected a postgresql:// URL (the value is not shown)", "url")
        elif self.backend == "redis":
            if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
                raise problem("expected a redis://, rediss:// or unix:// URL", "url")
            host = urlsplit(self.url).hostname or ""
            if self.url.startswith("redis://") and not is_loopback(host) \
                    and not self.allow_cleartext:
                raise problem(f"redis:// to {host} is clear text; use rediss://, or set "
                              "allow_cleartext = true", "url")
        elif self.url:
            raise problem("is only used with backend = \"postgresql\" or \"redis\"", "url")
        if self.ttl > self.max_ttl:
            raise problem(f"must be at most max_ttl ({self.max_ttl:.0f} s)", "ttl")
        return self


# -- what a configuration with tokens must not do -----------------------------------------


def token_problems(tokens: TokenSettings | None, state_secret: str, server: ServerSettings,
                   profiles: Sequence[Profile]) -> list[str]:
    """Cross-table rules: a store and a hash key, and addresses that no other route takes."""
    if tokens is None:
        return [f"Config value 'profiles.{p.name}.tokens': needs a [tokens] table (where "
                f"tokens are stored, and their hash key)" for p in profiles if p.token_path]
    problems = []
    if not (tokens.secret or state_secret):
        problems.append("Config value 'tokens.secret': is required, or [state] secret (the "
                        "key of the stored token hashes: the gateway and `zoiper-bridge "
                        "token` must use the same one)")
    # Route patterns: a profile's path; `T{token}` for a token endpoint T; A and A/{fp}.
    taken: dict[str, str] = {path: f"profile {p.name!r}" for p in profiles for path in p.paths}
    if server.metrics_path:
        taken[server.metrics_path] = "[server] metrics_path"
    for p in profiles:
        if p.token_path is None:
            continue
        where = "tokens.path" if p.name == "default" else f"profiles.{p.name}.tokens.path"
        clash = next((who for path, who in taken.items()
                      if path == p.token_path or _under(path, p.token_path)), None)
        if clash is not None:
            problems.append(f"Config value '{where}': {p.token_path!r} overlaps the path of "
                            f"{clash}")
        taken[p.token_path] = f"the token endpoint of profile {p.name!r}"
    if tokens.admin.enabled:
        admin = tokens.admin.path
        clash = next((who for path, who in taken.items()
                      if path in (admin, admin + "/") or _under(path, admin + "/")
                      or (path.endswith("/") and _under(admin, path))), None)
        if clash is not None:
            problems.append(f"Config value 'tokens.admin.path': {admin!r} overlaps the path "
                            f"of {clash}")
    return problems


def _under(path: str, prefix: str) -> bool:
    """Whether `prefix{param}` matches `path` (a parameter holds no '/')."""
    rest = path[len(prefix):]
    return path.startswith(prefix) and bool(rest) and "/" not in rest


def pipeline_problems(profile: str, where: str,
                      pipelines: Sequence[tuple[PipelineSettings | None, Any]]) -> list[str]:
    """What a token cannot give a pipeline: the password, or the authenticator's attributes.

    `pipelines`: each pipeline of the profile with its raw `[source]` table.
    """
    problems = []
    for pipeline, source in pipelines:
        if pipeline is None:
            continue
        whose = f"profile {profile!r}" + (f", tenant {pipeline.name.rpartition('/')[2]!r}"
                                          if "/" in pipeline.name else "")
        needs: list[str] = []
        source = source if isinstance(source, dict) else {}
        if _mentions(source, _PASSWORD):
            needs.append("its [source] uses {login.password}")
        if _mentions(source, _ATTRIBUTE) or (source.get("type") == "ldap"
                                             and _mentions(source, _DN)):
            needs.append("its [source] uses the authenticator's attributes")
        if source.get("type") == "ldap" and source.get("from", "identity") == "identity":
            needs.append("its [source] (type = \"ldap\", from = \"identity\") reads the "
                         "accounts from the authenticator's attributes")
        for option, f in _fields(pipeline.mapping.account, "mapping.account"):
            if f.scope == "login" and f.name == "password":
                needs.append(f"{option} uses {f}")
            elif f.scope == "identity" and f.name != "username":
                needs.append(f"{option} uses {f} without a default")
        for name, section in pipeline.mapping.sections.items():
            for option, f in _fields(section, f"mapping.{name}"):
                if f.scope == "login" and f.name == "password":
                    needs.append(f"{option} uses {f}")
                elif f.scope == "identity" and f.name != "username":
                    needs.append(f"{option} uses {f} without a default")
        if needs:
            problems.append(
                f"Config value '{where}': {whose} cannot serve one-time tokens: "
                + "; ".join(dict.fromkeys(needs))
                + ". A token stands in for the password and no authenticator is asked, so "
                  "only {identity.username} is known; take the SIP credentials from the "
                  "account source, give those options a default, or serve tokens from "
                  "another profile")
    return problems


_PASSWORD = re.compile(r"(?<!\{)\{login\.password\}")
_ATTRIBUTE = re.compile(r"(?<!\{)\{identity\.(?!username\})[^{}]+\}")
_DN = re.compile(r"(?<!\{)\{dn\}")  # the LDAP source's alias of {identity.dn}


def _mentions(value: Any, pattern: re.Pattern[str]) -> bool:
    """Whether any string in a raw table holds the placeholder (literal `{{` aside)."""
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(_mentions(v, pattern) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, pattern) for v in value)
    return False


def _fields(section: SectionMapping, where: str) -> Iterator[tuple[str, Placeholder]]:
    """Placeholders of `section` that have no default, with their option's key path."""
    values: list[tuple[str, Value]] = [*section.options.items(),
                                       *((f"extra.{n}", v) for n, v in section.extra.items())]
    for name, value in values:
        if value.default is None and isinstance(value.source, Template):
            for part in value.source.fields:
                yield f"{where}.{name}", part
    for name, sub in section.sections.items():
        yield from _fields(sub, f"{where}.{name}")
    for name, items in section.lists.items():
        for i, item in enumerate(items):
            yield from _fields(item, f"{where}.{name}[{i}]")

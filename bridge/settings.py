"""The whole gateway configuration: one TOML file, validated completely, as plain data.

    [server]              the process: listener, deadline, metrics
    [request] [auth] [source] [mapping] [policy] [limits] [breaker]
                          the default profile, served at [server] path
    [tenants.NAME]        the default profile's tenants
    [profiles.NAME]       more profiles: own path (and host), request, backends, mapping,
                          tenants; every table a profile leaves out is the top level's
                          (the same backends: inherited tables share pools and breakers)
    [tokens]              one-time onboarding tokens (bridge/tokens/config.py): the store,
                          the default profile's token endpoint; [profiles.NAME.tokens] another's
    [onboarding]          the self-service page (bridge/onboarding/config.py): sessions,
                          branding, the default profile's page; [profiles.NAME.onboarding]

A profile is one kind of client at one address: how its credentials arrive,
their format, its dialect, and the pipeline(s) that serve it. A tenant is a
pipeline of its own (authenticator, account source, mapping, policy, breakers)
chosen per request by the username's `@domain`, the Host or the path.

The tables are declared in bridge/tables.py; this module turns them into values.
Loading validates and compiles (mappings against their dialect) but builds no
backend and opens nothing except the files the configuration names; the
application builds the backends from the specs in its lifespan (bridge/runtime.py).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from bridge.auth import REGISTRY as AUTHENTICATORS
from bridge.cache import CacheSettings
from bridge.config import (
    _CONTEXT_DIR,
    ConfigError,
    Section,
    describe_errors,
    validate,
)
from bridge.errors import ErrorPolicy
from bridge.guard import LimitSettings
from bridge.mapping import ConfigMapping
from bridge.onboarding.config import (
    OidcClient,
    OnboardingSettings,
    onboarding_problems,
)
from bridge.params import QuerySettings
from bridge.plugins import BackendSpec, load_class, spec_from_table
from bridge.sources import REGISTRY as SOURCES
from bridge.state import StateSettings
from bridge.tables import (
    BreakerSettings,
    ErrorsSettings,
    FileTable,
    MessagesSettings,
    PolicySettings,
    ProfileTable,
    ServerSettings,
    Table,
    TenantTable,
)
from bridge.tokens.config import (
    TokenSettings,
    pipeline_problems,
    token_problems,
)
from bridge.zoiper.dialects import Dialect, dialect_named

__all__ = ["BreakerSettings", "ErrorsSettings", "FileTable", "MessagesSettings",
           "PipelineSettings", "PolicySettings", "Profile", "ProfileTable", "ServerSettings",
           "Settings", "TenantTable", "from_dict", "load", "load_demo"]

T = TypeVar("T")


# -- the values the application is built from ------------------------------------------


@dataclass(frozen=True, eq=False)
class PipelineSettings:
    """One way through: authenticator, account source, mapping, policy, breakers."""

    name: str  # "default", "default/acme", "desktop", ...
    auth: BackendSpec
    source: BackendSpec
    mapping: ConfigMapping
    required_groups: frozenset[str]
    breaker: BreakerSettings
    domains: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    strip_domain: bool = True


@dataclass(frozen=True, eq=False)
class Profile:
    name: str
    path: str
    host: str | None
    query: QuerySettings
    dialect: Dialect
    limits: LimitSettings
    errors: ErrorPolicy
    own: PipelineSettings | None  # users no tenant claims; None: they are refused (401)
    tenants: tuple[PipelineSettings, ...] = ()
    token_path: str | None = None  # the app GETs token_path + token; None: no endpoint
    token_link: str = ""  # the QR code's link when it differs from [tokens] link
    onboarding_path: str | None = None  # the self-service page; None: no page
    onboarding_oidc: OidcClient | None = None  # its sign-in; None: the login form

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *(p for t in self.tenants for p in t.paths))

    @property
    def pipelines(self) -> tuple[PipelineSettings, ...]:
        return ((self.own,) if self.own else ()) + self.tenants


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    profiles: tuple[Profile, ...]
    errors: ErrorPolicy
    state: StateSettings
    cache: CacheSettings
    origin: Path | None = None  # the file it came from; None for the embedded demo
    demo: bool = False
    tokens: TokenSettings | None = None
    onboarding: OnboardingSettings | None = None

    @property
    def default(self) -> Profile:
        return self.profiles[0]

    @property
    def query(self) -> QuerySettings:
        return self.default.query


def load(path: Path) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"Cannot read configuration file {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"Configuration file {path} is not UTF-8"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return from_dict(data, base_dir=path.parent.resolve(), origin=path)


def load_demo() -> Settings:
    demo = resources.files("bridge") / "demo"
    with resources.as_file(demo) as folder:
        settings = load(Path(folder) / "config.toml")
    return replace(settings, demo=True)


def from_dict(data: dict[str, Any], base_dir: Path, origin: Path | None = None) -> Settings:
    return _Loader(base_dir).settings(data, origin)


class _Loader:
    """Validates the file's tables, collecting every problem before giving up."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []
        self._specs: dict[tuple[str, int], BackendSpec | None] = {}
        self._mappings: dict[tuple[int, str], ConfigMapping | None] = {}
        self._fields: dict[tuple[str, int], set[str]] = {}  # per source table: see _told

    def attempt(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def settings(self, data: dict[str, Any], origin: Path | None) -> Settings:
        top = self.top(data)
        errors = ErrorPolicy(top.errors.messages.model_dump(), top.errors.retry_after)
        default = self.profile("default", "", top, None, errors)
        profiles = [default] + [self.profile(name, f"profiles.{name}", top, table, errors)
                                for name, table in top.profiles.items()]
        self._check_routes([p for p in profiles if p is not None])
        self.problems.extend(token_problems(top.tokens, top.state.secret, top.server,
                                            [p for p in profiles if p is not None]))
        self.problems.extend(onboarding_problems(top.onboarding, top.tokens, top.server,
                                                 [p for p in profiles if p is not None]))
        if self.problems:
            raise ConfigError(self.problems)
        assert all(p is not None for p in profiles)
        return Settings(top.server, tuple(p for p in profiles if p is not None), errors,
                        top.state, top.cache, origin, tokens=top.tokens,
                        onboarding=top.onboarding)

    def top(self, data: dict[str, Any]) -> FileTable:
        """The top level; tables with problems are reported, then left out so that the
        rest (backends, mappings) is still checked and every problem shows at once."""
        for _ in range(3):
            token = _CONTEXT_DIR.set(str(self.base_dir))
            try:
                return FileTable.model_validate(data, context={"base_dir": self.base_dir})
            except ValidationError as exc:
                self.problems.extend(describe_errors(exc, FileTable))
                bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
                data = {k: v for k, v in data.items() if k not in bad}
            finally:
                _CONTEXT_DIR.reset(token)
        raise ConfigError(self.problems)

    def profile(self, name: str, where: str, top: FileTable, table: ProfileTable | None,
                errors: ErrorPolicy) -> Profile | None:
        def at(key: str) -> str:
            return f"{where}.{key}" if where else key

        request = {**top.request, **(table.request if table else {})}
        query = self.attempt(lambda: validate(QuerySettings, request, at("request"),
                                              self.base_dir))
        limits_table = table.limits if table and table.limits is not None else top.limits
        limits = self._limits(limits_table, at("limits") if table and table.limits else "limits")
        # On a problem, go on with the defaults so the backends and mapping are checked too.
        broken = query is None or limits is None
        query = query or QuerySettings()
        limits = limits or LimitSettings()
        dialect = dialect_named(query.dialect)
        if query.credentials != "query":
            errors = replace(errors, challenge=f'Basic realm="{query.realm}", charset="UTF-8"')

        def pick(key: str) -> tuple[Table | None, str]:
            own = getattr(table, key) if table else None
            return (own, at(key)) if own is not None else (getattr(top, key), key)

        (auth, auth_at), (source, source_at) = pick("auth"), pick("source")
        mapping, mapping_at = pick("mapping")
        policy = (table.policy if table and table.policy else None) or top.policy
        breaker = (table.breaker if table and table.breaker else None) or top.breaker
        # A profile without tenants of its own serves the top level's (same backends).
        tenants_table, tenants_at = ((table.tenants, at("tenants"))
                                     if table and table.tenants is not None
                                     else (top.tenants, "tenants"))
        tenants = [self.pipeline(f"{name}/{t_name}", f"{tenants_at}.{t_name}", query,
                                 dialect, t.auth, t.source, t.mapping or mapping,
                                 t.policy or policy, t.breaker or breaker, tenant=t,
                                 mapping_at=(f"{tenants_at}.{t_name}.mapping" if t.mapping
                                             else mapping_at))
                   for t_name, t in tenants_table.items()]
        own = None
        if auth is not None or source is not None or not tenants:
            own = self.pipeline(name, where, query, dialect, auth, source, mapping, policy,
                                breaker, auth_at=auth_at, source_at=source_at,
                                mapping_at=mapping_at)
        if own is None and tenants and (mapping is None and any(t.mapping is None
                                                                 for t in tenants_table.values())):
            self.problems.append(f"Config value '{mapping_at}': is required")
        if broken or any(t is None for t in tenants):
            return None
        path = table.path if table else top.server.path
        tokens = table.tokens if table else top.tokens
        page = table.onboarding if table else top.onboarding
        if tokens is not None and tokens.path:  # a token carries no password: say what needs one
            pairs = [(own, source), *zip(tenants, (t.source for t in tenants_table.values()),
                                         strict=True)]
            self.problems.extend(pipeline_problems(name, at("tokens.path"), pairs))
        return Profile(name, path, table.host if table else None, query, dialect, limits,
                       errors, own, tuple(t for t in tenants if t is not None),
                       token_path=tokens.path if tokens else None,
                       token_link=tokens.link if tokens else "",
                       onboarding_path=page.path if page else None,
                       onboarding_oidc=page.oidc if page else None)

    def pipeline(self, name: str, where: str, query: QuerySettings, dialect: Dialect,
                 auth: Table | None, source: Table | None, mapping: Table | None,
                 policy: PolicySettings, breaker: BreakerSettings, *,
                 tenant: TenantTable | None = None, auth_at: str = "", source_at: str = "",
                 mapping_at: str = "") -> PipelineSettings | None:
        auth_at = auth_at or f"{where}.auth"
        source_at = source_at or f"{where}.source"
        missing = [(t, k) for t, k in ((auth, auth_at), (source, source_at), (mapping,
                                                                              mapping_at))
                   if t is None]
        for _, key in missing:
            self.problems.append(f"Config value '{key}': is required")
        if missing:
            return None
        assert auth is not None and source is not None and mapping is not None
        auth_spec = self.backend(AUTHENTICATORS, auth, auth_at)
        source_spec = self.backend(SOURCES, source, source_at)
        compiled = self.mapping(mapping, mapping_at, dialect)
        if auth_spec is not None and query.password_format != "plaintext":  # noqa: S105
            formats = getattr(load_class(AUTHENTICATORS, auth_spec.type), "password_formats",
                              frozenset({"plaintext"}))
            if query.password_format in formats:  # the built backend may narrow it (sql)
                formats = getattr(auth_spec.build(), "password_formats", formats)
            if query.password_format not in formats:
                self.problems.append(
                    f"Config value '{auth_at}.type': profile {name.split('/')[0]!r} receives "
                    f"passwords as {query.password_format} ([request] password_format), and a "
                    f"{auth_spec.type!r} authenticator cannot check those: it needs the "
                    f"password itself. Use password_format = "
                    f"\"plaintext\" in the app's provisioning settings, or a users file with "
                    f"password_md5 entries")
        fields = self._fields.get((source_at, id(source)))
        if compiled is not None and source_spec is not None and fields is not None:
            # A source that can check the {account.*} fields its mappings need is told them
            # (the union over the pipelines sharing it) and says now what it cannot return.
            fields |= compiled.account_fields
            self.problems.extend(f"Config value '{source_at}.{key}': {message}" for key, message
                                 in source_spec.build().expect_fields(frozenset(fields)))
        if auth_spec is None or source_spec is None or compiled is None:
            return None
        return PipelineSettings(
            name, auth_spec, source_spec, compiled, frozenset(policy.required_groups), breaker,
            domains=tuple(tenant.domains) if tenant else (),
            hosts=tuple(tenant.hosts) if tenant else (),
            paths=tuple(tenant.paths) if tenant else (),
            strip_domain=tenant.strip_domain if tenant else True)

    def backend(self, registry: dict[str, str], table: Table, where: str) -> BackendSpec | None:
        """One spec per table: profiles that inherit a table share its backend (and pools)."""
        key = (where, id(table))
        if key not in self._specs:
            spec = self.attempt(lambda: spec_from_table(registry, table, where, self.base_dir))
            if spec is not None and hasattr(load_class(registry, spec.type), "expect_fields"):
                spec = _told(spec, self._fields.setdefault(key, set()))
            self._specs[key] = spec
        return self._specs[key]

    def mapping(self, table: Table, where: str, dialect: Dialect) -> ConfigMapping | None:
        key = (id(table), dialect.name)
        if key not in self._mappings:
            section = Section(table, where, [], self.base_dir)
            compiled = ConfigMapping.from_config(section, dialect)
            # A table inherited by a profile of another dialect: say which dialect said no.
            problems = [f"{p} [checked for {dialect.title}]" if dialect.name != "android" else p
                        for p in section.problems]
            self.problems.extend(problems)
            self._mappings[key] = None if problems else compiled
        return self._mappings[key]

    def _limits(self, table: Table, where: str) -> LimitSettings | None:
        return self.attempt(lambda: validate(LimitSettings, table, where, self.base_dir))

    def _check_routes(self, profiles: list[Profile]) -> None:
        seen: dict[tuple[str, str | None], str] = {}
        for profile in profiles:
            for path in profile.paths:
                key = (path, profile.host)
                if key in seen and seen[key] != profile.name:
                    where = "server.path" if profile.name == "default" else \
                        f"profiles.{profile.name}.path"
                    self.problems.append(f"Config value '{where}': {path!r}"
                                         f"{' on ' + profile.host if profile.host else ''} is "
                                         f"already served by profile {seen[key]!r}")
                seen.setdefault(key, profile.name)
            domains: dict[str, str] = {}
            for tenant in profile.tenants:
                for domain in tenant.domains:
                    if domain in domains:
                        self.problems.append(
                            f"Config value 'tenants.{tenant.name.split('/')[-1]}.domains': "
                            f"{domain!r} is already tenant {domains[domain]!r}'s")
                    domains[domain] = tenant.name


def _told(spec: BackendSpec, fields: set[str]) -> BackendSpec:
    """The spec of a source that is told the {account.*} fields its mappings need (filled
    in while the file loads, read when the backend is built)."""
    def build() -> Any:
        backend: Any = spec.factory()
        backend.expect_fields(frozenset(fields))
        return backend
    return BackendSpec(spec.kind, spec.type, build)

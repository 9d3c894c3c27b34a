"""The whole gateway configuration: one TOML file, validated completely at start-up."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bridge.auth import Authenticator, build_authenticator
from bridge.cache import CacheSettings
from bridge.clientaddr import Network, parse_networks
from bridge.config import ConfigError, Section
from bridge.errors import DEFAULT_MESSAGES, DEFAULT_RETRY_AFTER, ErrorPolicy
from bridge.guard import LimitSettings
from bridge.mapping import ConfigMapping
from bridge.params import QuerySettings
from bridge.sources import AccountSource, build_source
from bridge.state import StateSettings


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/provision"
    workers: int = 1
    access_log: bool = True
    log_level: str = "info"
    # Whole-request deadline: past it the phone gets a 503 and keeps its configuration.
    deadline: float = 10.0
    # Peers whose forwarding header is believed, and which header that is.
    trusted_proxies: tuple[Network, ...] = ()
    forwarded_header: str = "x-forwarded-for"
    metrics_path: str = "/metrics"  # "" turns it off
    tls_certificate: str | None = None  # serve HTTPS directly (PEM chain), with tls_key
    tls_key: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    """Checks on the identity, whatever authenticated it."""

    # Any of these groups (as the authenticator names them: file users' `groups`, a
    # portal's groups_field, LDAP group DNs) is required; empty: no check here.
    required_groups: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: Section) -> PolicySettings:
        settings = cls(frozenset(cfg.list_str("required_groups", [])))
        cfg.done()
        return settings


@dataclass(frozen=True)
class BreakerSettings:
    """The gateway's own circuit breaker in front of each backend (any kind)."""

    failures: int = 5       # consecutive outages (5xx-class errors) that open it; 0 = off
    cooldown: float = 5.0   # seconds of immediate 503s before one probe is let through

    @classmethod
    def from_config(cls, cfg: Section) -> BreakerSettings:
        d = cls()
        settings = cls(cfg.int("failures", d.failures, min=0),
                       cfg.float("cooldown", d.cooldown, min=0.1, max=3600))
        cfg.done()
        return settings


@dataclass(frozen=True)
class Settings:
    authenticator: Authenticator
    source: AccountSource
    mapping: ConfigMapping
    server: ServerSettings = field(default_factory=ServerSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    errors: ErrorPolicy = field(default_factory=ErrorPolicy)
    state: StateSettings = field(default_factory=StateSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    breakers: BreakerSettings = field(default_factory=BreakerSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    origin: Path | None = None  # the file it came from; None for the embedded demo
    demo: bool = False


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
    return Settings(**{**settings.__dict__, "demo": True})


def from_dict(data: dict, base_dir: Path, origin: Path | None = None) -> Settings:
    root = Section(data, "", [], base_dir)
    server = _server(root.table("server"))
    query = QuerySettings.from_config(root.table("request"))
    errors = _errors(root.table("errors"))
    state = StateSettings.from_config(root.table("state"))
    limits = LimitSettings.from_config(root.table("limits"))
    cache = CacheSettings.from_config(root.table("cache"))
    breakers = BreakerSettings.from_config(root.table("breaker"))
    policy = PolicySettings.from_config(root.table("policy"))
    authenticator = build_authenticator(root.table("auth", required=True))
    source = build_source(root.table("source", required=True))
    mapping = ConfigMapping.from_config(root.table("mapping", required=True))
    root.done()
    if root.problems:
        raise ConfigError(root.problems)
    assert authenticator is not None and source is not None
    return Settings(authenticator, source, mapping, server, query, errors, state, limits, cache,
                    breakers, policy, origin)


def _server(cfg: Section) -> ServerSettings:
    d = ServerSettings()
    path = cfg.str("path", d.path)
    if not path.startswith("/"):
        cfg.problem("path", f"must start with '/', received {path!r}")
    metrics_path = cfg.str("metrics_path", d.metrics_path)
    if metrics_path and (not metrics_path.startswith("/") or metrics_path == path):
        cfg.problem("metrics_path", "must start with '/' and differ from path (or be empty)")
    try:
        proxies = tuple(parse_networks(cfg.list_str("trusted_proxies", [])))
    except ValueError as exc:
        cfg.problem("trusted_proxies", str(exc))
        proxies = ()
    settings = ServerSettings(
        host=cfg.str("host", d.host, nonempty=True),
        port=cfg.int("port", d.port, min=1, max=65535),
        path=path,
        workers=cfg.int("workers", d.workers, min=1, max=64),
        access_log=cfg.bool("access_log", d.access_log),
        log_level=cfg.str("log_level", d.log_level,
                          choices=("critical", "error", "warning", "info", "debug")),
        deadline=cfg.float("deadline", d.deadline, min=0.1, max=300),
        trusted_proxies=proxies,
        tls_certificate=_tls_file(cfg, "tls_certificate"),
        tls_key=_tls_file(cfg, "tls_key"),
        forwarded_header=cfg.str("forwarded_header", d.forwarded_header,
                                 choices=("x-forwarded-for", "forwarded")),
        metrics_path=metrics_path,
    )
    cfg.done()
    return settings


def _tls_file(cfg: Section, key: str) -> str | None:
    other = "tls_key" if key == "tls_certificate" else "tls_certificate"
    if key not in cfg:
        if other in cfg:
            cfg.problem(key, f"is required with {other}")
        return None
    return str(cfg.path_value(key))


def _errors(cfg: Section) -> ErrorPolicy:
    retry_after = cfg.int("retry_after", DEFAULT_RETRY_AFTER, min=1, max=86400)
    messages_cfg = cfg.table("messages")
    messages = dict(DEFAULT_MESSAGES)
    for key in DEFAULT_MESSAGES:
        messages[key] = messages_cfg.str(key, DEFAULT_MESSAGES[key], nonempty=True)
    messages_cfg.done()
    cfg.done()
    return ErrorPolicy(messages, retry_after)

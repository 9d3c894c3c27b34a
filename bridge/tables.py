"""The configuration file's tables as declared models (see bridge/settings.py for the shape).

Each key once, with its type, default and check; tables of backends, mappings,
tokens and onboarding are declared next to the code that uses them and only
carried here as raw tables (or their own models).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, field_validator, model_validator

from bridge.cache import CacheSettings
from bridge.clientaddr import Network, parse_networks
from bridge.config import FilePath, Model, describe, problem
from bridge.errors import DEFAULT_MESSAGES, DEFAULT_RETRY_AFTER
from bridge.listener import LOOPBACK, ListenerSettings
from bridge.onboarding.config import OnboardingSettings, ProfileOnboarding
from bridge.state import StateSettings
from bridge.tokens.config import ProfileTokens, TokenSettings


def _networks(value: Any) -> tuple[Network, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of addresses or networks, received {describe(value)}")
    return tuple(parse_networks(value))


def _url_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "?# ") or "//" in value:
        raise ValueError(f"must start with '/' and hold no '?', '#', '//' or spaces, "
                         f"received {value!r}")
    return value


UrlPath = Annotated[str, PlainValidator(lambda v: _url_path(_text(v)))]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, received {describe(value)}")
    return value


class ServerSettings(Model):
    """`[server]`: the process."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    path: UrlPath = "/provision"  # the default profile's path
    workers: int = Field(1, ge=1, le=64)
    access_log: bool = True
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # Whole-request deadline: past it the phone gets a 503 and keeps its configuration.
    deadline: float = Field(10.0, ge=0.1, le=300)
    # Peers whose forwarding header is believed, and which header that is.
    trusted_proxies: Annotated[tuple[Network, ...], PlainValidator(_networks)] = ()
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    metrics_path: str = "/metrics"  # "" turns it off
    # "HOST:PORT": the metrics served there as well (read at start, not on reload)
    metrics_listen: str = ""
    # Liveness (the process serves) and readiness (every backend's check passes within
    # ready_timeout), outside limits and the audit log; "" turns either off.
    healthz_path: str = "/healthz"
    readyz_path: str = "/readyz"
    ready_timeout: float = Field(2.0, ge=0.1, le=60)
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    tls_certificate: FilePath | None = None  # serve HTTPS directly (PEM chain), with tls_key
    tls_key: FilePath | None = None
    # The listener (bridge/listener.py): deadlines and bounds for facing the internet.
    header_timeout: float = Field(ListenerSettings.header_timeout, ge=0.1, le=300)
    idle_timeout: float = Field(ListenerSettings.idle_timeout, ge=0.1, le=3600)
    max_target_length: int = Field(ListenerSettings.max_target_length, ge=256, le=1 << 20)
    max_header_size: int = Field(ListenerSettings.max_header_size, ge=1024, le=1 << 20)
    max_headers: int = Field(ListenerSettings.max_headers, ge=8, le=1000)
    max_connections: int = Field(ListenerSettings.max_connections, ge=1)
    max_queue_time: float = Field(ListenerSettings.max_queue_time, ge=0, le=300)
    max_connections_per_address: int = Field(ListenerSettings.max_connections_per_address, ge=0)
    connection_cap_exempt: Annotated[tuple[Network, ...], PlainValidator(_networks)] = LOOPBACK

    @property
    def listener(self) -> ListenerSettings:
        return ListenerSettings.of(self, self.trusted_proxies)

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_certificate"
            other = "tls_certificate" if missing == "tls_key" else "tls_key"
            raise problem(f"is required with {other}", missing)
        taken = {self.path}
        for key in ("metrics_path", "healthz_path", "readyz_path"):
            value = getattr(self, key)
            if value and (not value.startswith("/") or value in taken):
                raise problem("must start with '/' and differ from path and the other "
                              "*_path keys (or be empty)", key)
            taken.add(value)
        if self.metrics_listen:
            from bridge.metrics import listen_address

            try:
                listen_address(self.metrics_listen)
            except ValueError as exc:
                raise problem(str(exc), "metrics_listen") from None
        return self


class PolicySettings(Model):
    """`[policy]`: checks on the identity, whatever authenticated it."""

    # Any of these groups (as the authenticator names them: file users' `groups`, a
    # portal's groups_field, LDAP group DNs) is required; empty: no check here.
    required_groups: list[str] = []


class BreakerSettings(Model):
    """`[breaker]`: the gateway's circuit breaker in front of each backend (any kind)."""

    failures: int = Field(5, ge=0)  # consecutive outages (5xx-class) that open it; 0 = off
    cooldown: float = Field(5.0, ge=0.1, le=3600)  # seconds of 503s before one probe


class MessagesSettings(Model):
    """`[errors.messages]`: what the phone shows, per class of failure."""

    bad_request: str = Field(DEFAULT_MESSAGES["bad_request"], min_length=1)
    authentication_failed: str = Field(DEFAULT_MESSAGES["authentication_failed"], min_length=1)
    not_permitted: str = Field(DEFAULT_MESSAGES["not_permitted"], min_length=1)
    account_not_found: str = Field(DEFAULT_MESSAGES["account_not_found"], min_length=1)
    not_found: str = Field(DEFAULT_MESSAGES["not_found"], min_length=1)
    method_not_allowed: str = Field(DEFAULT_MESSAGES["method_not_allowed"], min_length=1)
    rate_limited: str = Field(DEFAULT_MESSAGES["rate_limited"], min_length=1)
    upstream_unavailable: str = Field(DEFAULT_MESSAGES["upstream_unavailable"], min_length=1)
    upstream_timeout: str = Field(DEFAULT_MESSAGES["upstream_timeout"], min_length=1)
    internal: str = Field(DEFAULT_MESSAGES["internal"], min_length=1)


class ErrorsSettings(Model):
    """`[errors]`"""

    retry_after: int = Field(DEFAULT_RETRY_AFTER, ge=1, le=86400)
    messages: MessagesSettings = MessagesSettings()


Table = dict[str, Any]


class TenantTable(Model):
    """`[tenants.NAME]` (or `[profiles.P.tenants.NAME]`): one customer's own pipeline."""

    domains: list[str] = []  # alice@DOMAIN
    hosts: list[str] = []    # the Host the phone asked
    paths: list[UrlPath] = []  # extra paths served by this profile, for this tenant
    strip_domain: bool = True  # give the backends "alice", not "alice@domain"
    auth: Table
    source: Table
    mapping: Table | None = None  # default: the profile's
    policy: PolicySettings | None = None
    breaker: BreakerSettings | None = None

    @field_validator("domains", "hosts")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        if any(not v or "@" in v or "/" in v or " " in v for v in values):
            raise ValueError("expected host or domain names (no '@', '/' or spaces)")
        return [v.lower().rstrip(".") for v in values]

    @model_validator(mode="after")
    def _routed(self) -> TenantTable:
        if not (self.domains or self.hosts or self.paths):
            raise problem("a tenant needs domains, hosts or paths to be chosen by", "domains")
        return self


class ProfileTable(Model):
    """`[profiles.NAME]`: another client family or address, served by the same process."""

    path: UrlPath
    host: str | None = Field(None, min_length=1)
    request: Table = {}  # merged key by key over the top-level [request]
    auth: Table | None = None
    source: Table | None = None
    mapping: Table | None = None
    policy: PolicySettings | None = None
    breaker: BreakerSettings | None = None
    limits: Table | None = None
    tenants: dict[str, TenantTable] | None = None  # absent: the top level's; {}: none
    tokens: ProfileTokens | None = None  # its token endpoint; never inherited
    onboarding: ProfileOnboarding | None = None  # its self-service page; never inherited


class FileTable(Model):
    """The configuration file's top level."""

    server: ServerSettings = ServerSettings()
    request: Table = {}
    errors: ErrorsSettings = ErrorsSettings()
    state: StateSettings = StateSettings()
    limits: Table = {}
    cache: CacheSettings = CacheSettings()
    breaker: BreakerSettings = BreakerSettings()
    policy: PolicySettings = PolicySettings()
    auth: Table | None = None
    source: Table | None = None
    mapping: Table | None = None
    tenants: dict[str, TenantTable] = {}
    profiles: dict[str, ProfileTable] = {}
    tokens: TokenSettings | None = None
    onboarding: OnboardingSettings | None = None

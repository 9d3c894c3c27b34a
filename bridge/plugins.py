"""Lifecycle and registry shared by authenticators and account sources.

A backend declares its table as a `Config` model (bridge.config.Model) and is
built from a validated config value: loading the configuration only validates
(so a bad file is reported before anything connects, and a reload or a second
pipeline can build its own backends), then the application's lifespan builds
the backend, `start()`s it and `close()`s it at shutdown.

Backends not yet declared keep the older form, `from_config(Section)`, which
reads and validates the table by hand; the registry accepts both.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from bridge.config import ConfigError, Model, Section, describe, validate


class Backend:
    Config: ClassVar[type[Model] | None] = None
    """The declared table of this backend (without its `type` key)."""
    # A backend's own `breaker_failures` / `breaker_cooldown` keys (HTTP upstreams had
    # them before [breaker] existed) override [breaker] for its breaker; None: [breaker].
    breaker_failures: int | None = None
    breaker_cooldown: float | None = None

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @classmethod
    def from_config(cls, cfg: Section) -> Self:
        """The older form: read and validate this backend's table by hand."""
        raise NotImplementedError

    async def start(self) -> None:
        """Open pools and clients. Called once, in the lifespan."""

    async def close(self) -> None:
        """Release what start() opened."""

    async def ready(self) -> None:
        """Raise an UpstreamError when the backend cannot serve now (for /readyz, --connect)."""


@dataclass(frozen=True, eq=False)
class BackendSpec:
    """A validated backend table: what to build, not the built thing."""

    kind: str  # "auth" or "source", for messages
    type: str
    factory: Callable[[], Backend]

    def build(self) -> Any:
        return self.factory()


def load_class(registry: dict[str, str], type_name: str) -> type[Backend]:
    module_name, _, class_name = registry[type_name].partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def spec_from_table(registry: dict[str, str], data: Any, where: str,
                    base_dir: Path) -> BackendSpec:
    """Validate one backend table (`[auth]`, `[profiles.x.source]`, ...); ConfigError if bad.

    Imports are lazy so that, say, an SQLite-only deployment never imports ldap3.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"Config value '{where}': expected a table, received "
                           f"{describe(data)}"])
    type_name = data.get("type")
    if type_name not in registry:
        choices = ", ".join(map(repr, registry))
        message = ("is required" if type_name is None
                   else f"expected one of {choices}, received {describe(type_name)}")
        raise ConfigError([f"Config value '{where}.type': {message}"])
    cls = load_class(registry, type_name)
    if cls.Config is not None:
        config = validate(cls.Config, {k: v for k, v in data.items() if k != "type"},
                          where, base_dir)
        return BackendSpec(where, type_name, lambda: cls(config))
    # The older form builds the (side-effect free) backend while it validates.
    section = Section(data, where, [], base_dir)
    section.mark("type")
    backend = cls.from_config(section)
    section.done()
    if section.problems:
        raise ConfigError(section.problems)
    return BackendSpec(where, type_name, lambda: backend)


def build(registry: dict[str, str], cfg: Section) -> Any:
    """A backend from a Section (tests and older callers); problems recorded on `cfg`."""
    cfg.mark(*cfg.keys())
    try:
        spec = spec_from_table(registry, dict(cfg.data), cfg.path, cfg.base_dir)
    except ConfigError as exc:
        cfg.problems.extend(exc.problems)
        return None
    return spec.build()

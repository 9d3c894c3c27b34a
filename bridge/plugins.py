"""Lifecycle and registry shared by authenticators and account sources.

A backend is built from its TOML table without side effects (so a bad
configuration is reported before anything connects), then `start()`ed in the
application's lifespan and `close()`d at shutdown.
"""

from __future__ import annotations

import importlib
from typing import Any, Self

from bridge.config import Section


class Backend:
    @classmethod
    def from_config(cls, cfg: Section) -> Self:
        """Read and validate this backend's table; record problems on `cfg`."""
        raise NotImplementedError

    async def start(self) -> None:
        """Open pools and clients. Called once, in the lifespan."""

    async def close(self) -> None:
        """Release what start() opened."""


def build(registry: dict[str, str], cfg: Section) -> Any:
    """Instantiate the backend named by `cfg["type"]` from a registry of import paths.

    Imports are lazy so that, say, an SQLite-only deployment never imports ldap3.
    """
    type_name = cfg.str("type", choices=tuple(registry))
    if type_name not in registry:
        return None
    module_name, _, class_name = registry[type_name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend = cls.from_config(cfg)
    cfg.done()
    return backend

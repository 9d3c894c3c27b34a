"""Building the SQL backends from tables, as the configuration loader does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.auth import REGISTRY as AUTHENTICATORS
from bridge.auth.sql import SQLAuthenticator
from bridge.config import ConfigError
from bridge.plugins import spec_from_table
from bridge.sources import REGISTRY as SOURCES
from bridge.sources.sql import SQLSource


def auth(table: dict[str, Any], base_dir: Path | None = None) -> SQLAuthenticator:
    spec = spec_from_table(AUTHENTICATORS, {"type": "sql", **table}, "auth",
                           base_dir or Path.cwd())
    backend = spec.build()
    assert isinstance(backend, SQLAuthenticator)
    return backend


def source(table: dict[str, Any], base_dir: Path | None = None) -> SQLSource:
    spec = spec_from_table(SOURCES, {"type": "sql", **table}, "source", base_dir or Path.cwd())
    backend = spec.build()
    assert isinstance(backend, SQLSource)
    return backend


def problems(kind: str, table: dict[str, Any], base_dir: Path | None = None) -> list[str]:
    registry = AUTHENTICATORS if kind == "auth" else SOURCES
    with pytest.raises(ConfigError) as info:
        spec_from_table(registry, {"type": "sql", **table}, kind, base_dir or Path.cwd())
    return info.value.problems

"""Reading the TOML configuration: every problem found at start-up, with its key path.

`Section` wraps one TOML table. Each reader method validates one key and,
when the key is wrong, records a problem and returns a harmless placeholder so
that reading goes on and the operator sees *all* problems at once. `done()`
reports keys nobody asked for (typos). Backends read their own table through
the same class, so a new backend gets the same error messages for free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def describe(value: object) -> str:
    """Show a received value in a message, briefly."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


class Section:
    def __init__(
        self,
        data: Mapping[str, Any],
        path: str = "",
        problems: list[str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.problems: list[str] = [] if problems is None else problems
        self.base_dir = base_dir or Path.cwd()
        self._seen: set[str] = set()

    # -- bookkeeping --------------------------------------------------------

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"Config value '{self.key_path(key)}': {message}")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> Iterator[str]:
        return iter(self.data)

    def mark(self, *keys: str) -> None:
        """Declare keys as known without reading them through this class."""
        self._seen.update(keys)

    def done(self) -> None:
        for key in self.data:
            if key not in self._seen:
                self.problem(key, "unknown key (is it misspelt?)")

    # -- typed readers ------------------------------------------------------

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], placeholder: Any) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.problem(key, "is required")
                return placeholder
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; TOML keeps them apart and so do we.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.problem(key, f"expected {expected}, received {describe(value)}")
            return placeholder
        return value

    def str(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        choices: tuple[str, ...] | None = None,
        nonempty: bool = False,
    ) -> str:
        value = self._get(key, default, str, "")
        if not isinstance(value, str):
            return value
        if choices is not None and value not in choices and key in self.data:
            self.problem(key, f"expected one of {', '.join(map(repr, choices))}, "
                              f"received {describe(value)}")
        elif nonempty and key in self.data and not value:
            self.problem(key, "must not be empty")
        return value

    def int(self, key: str, default: Any = REQUIRED, *, min: int | None = None,
            max: int | None = None) -> int:
        value = self._get(key, default, int, 0 if min is None else min)
        return self._range(key, value, min, max)

    def float(self, key: str, default: Any = REQUIRED, *, min: float | None = None,
              max: float | None = None) -> float:
        value = self._get(key, default, (int, float), 0.0 if min is None else min)
        return self._range(key, float(value) if value is not None else value, min, max)

    def _range(self, key: str, value: T, low: Any, high: Any) -> T:
        if key in self.data and isinstance(value, int | float):
            if low is not None and value < low:
                self.problem(key, f"must be at least {low}, received {value}")
                return low
            if high is not None and value > high:
                self.problem(key, f"must be at most {high}, received {value}")
                return high
        return value

    def bool(self, key: str, default: Any = REQUIRED) -> bool:
        return self._get(key, default, bool, False)

    def list_str(self, key: str, default: Any = REQUIRED) -> list[str]:
        value = self._get(key, default, list, [])
        if key in self.data and isinstance(value, list):
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                self.problem(key, f"expected a list of strings, received {describe(bad[0])}")
                return []
        return value

    def scalars(self, *, skip: tuple[str, ...] = ()) -> dict[str, str | int | bool]:
        """Every other key of this table as a free-form value (attributes, account fields)."""
        values: dict[str, str | int | bool] = {}
        for key in list(self.data):
            if key in skip:
                continue
            value = self.raw(key)
            if isinstance(value, str | int | bool):
                values[key] = value
            else:
                self.problem(key, f"expected text, a number or true/false, "
                                  f"received {describe(value)}")
        return values

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.problem(key, "is required")
                return None
            return default
        return self.data[key]

    def table(self, key: str, *, required: bool = False) -> Section:
        value = self._get(key, REQUIRED if required else {}, dict, {})
        return Section(value, self.key_path(key), self.problems, self.base_dir)

    def tables(self, key: str, *, required: bool = False) -> list[Section]:
        value = self._get(key, REQUIRED if required else [], list, [])
        sections = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.problem(f"{key}[{i}]", f"expected a table, received {describe(item)}")
                continue
            sections.append(Section(item, f"{self.key_path(key)}[{i}]", self.problems,
                                    self.base_dir))
        return sections

    def path_value(self, key: str, default: Any = REQUIRED, *, must_exist: bool = True) -> Path:
        """A file path; relative paths are taken from the configuration file's folder."""
        value = self.str(key, default)
        if not value:
            return Path()
        path = Path(value)
        if not path.is_absolute():
            path = self.base_dir / path
        if must_exist and key in self.data and not path.exists():
            self.problem(key, f"file not found: {path}")
        return path

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """A secret given inline as KEY, or through KEY_env or KEY_file (exactly one).

        Files may end with one newline (as `echo` writes them); it is dropped.
        """
        variants = [k for k in (key, f"{key}_env", f"{key}_file") if k in self.data]
        self.mark(key, f"{key}_env", f"{key}_file")
        if len(variants) > 1:
            self.problem(key, f"give only one of {', '.join(variants)}")
            return ""
        if not variants:
            if required:
                self.problem(key, f"is required (or {key}_env / {key}_file)")
                return ""
            return None
        which = variants[0]
        if which == key:
            return self.str(key)
        name = self.str(which, nonempty=True)
        if which.endswith("_env"):
            if name not in os.environ:
                self.problem(which, f"environment variable {name!r} is not set")
                return ""
            return os.environ[name]
        path = Path(name)
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.problem(which, f"cannot read {path}: {exc.strerror}")
            return ""
        return text[:-1] if text.endswith("\n") else text

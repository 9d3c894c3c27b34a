"""Reading the TOML configuration: every problem found at start-up, with its key path.

`Section` wraps one TOML table. Each reader method validates one key and,
when the key is wrong, records a problem and returns a harmless placeholder so
that reading goes on and the operator sees *all* problems at once. `done()`
reports keys nobody asked for (typos). Backends read their own table through
the same class, so a new backend gets the same error messages for free.
"""

from __future__ import annotations

import builtins
import contextvars
import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

T = TypeVar("T")
N = TypeVar("N", int, float)


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
        data: Mapping[builtins.str, Any],
        path: builtins.str = "",
        problems: list[builtins.str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.problems: list[builtins.str] = [] if problems is None else problems
        self.base_dir = base_dir or Path.cwd()
        self._seen: set[builtins.str] = set()

    # -- bookkeeping --------------------------------------------------------

    def key_path(self, key: builtins.str) -> builtins.str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: builtins.str, message: builtins.str) -> None:
        self.problems.append(f"Config value '{self.key_path(key)}': {message}")

    def __contains__(self, key: builtins.str) -> builtins.bool:
        return key in self.data

    def keys(self) -> Iterator[builtins.str]:
        return iter(self.data)

    def mark(self, *keys: builtins.str) -> None:
        """Declare keys as known without reading them through this class."""
        self._seen.update(keys)

    def done(self) -> None:
        for key in self.data:
            if key not in self._seen:
                self.problem(key, "unknown key (is it misspelt?)")

    # -- typed readers ------------------------------------------------------

    def _get(self, key: builtins.str, default: Any, kind: type | tuple[type, ...],
             placeholder: Any) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.problem(key, "is required")
                return placeholder
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; TOML keeps them apart and so do we.
        ok = isinstance(value, kinds) and not (isinstance(value, builtins.bool)
                                               and builtins.bool not in kinds)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.problem(key, f"expected {expected}, received {describe(value)}")
            return placeholder
        return value

    def str(
        self,
        key: builtins.str,
        default: Any = REQUIRED,
        *,
        choices: tuple[builtins.str, ...] | None = None,
        nonempty: builtins.bool = False,
    ) -> builtins.str:
        value = self._get(key, default, builtins.str, "")
        if not isinstance(value, builtins.str):
            return cast(builtins.str, value)  # the default of an absent key (may be None)
        if choices is not None and value not in choices and key in self.data:
            self.problem(key, f"expected one of {', '.join(map(repr, choices))}, "
                              f"received {describe(value)}")
        elif nonempty and key in self.data and not value:
            self.problem(key, "must not be empty")
        return cast(builtins.str, value)

    def int(self, key: builtins.str, default: Any = REQUIRED, *, min: builtins.int | None = None,
            max: builtins.int | None = None) -> builtins.int:
        value: builtins.int = self._get(key, default, builtins.int, 0 if min is None else min)
        return self._range(key, value, min, max)

    def float(self, key: builtins.str, default: Any = REQUIRED, *,
              min: builtins.float | None = None,
              max: builtins.float | None = None) -> builtins.float:
        value = self._get(key, default, (int, builtins.float), 0.0 if min is None else min)
        number = cast(builtins.float, value if value is None else builtins.float(value))
        return self._range(key, number, min, max)

    def _range(self, key: builtins.str, value: N, low: N | None, high: N | None) -> N:
        if key in self.data and isinstance(value, builtins.int | builtins.float):
            if low is not None and value < low:
                self.problem(key, f"must be at least {low}, received {value}")
                return low
            if high is not None and value > high:
                self.problem(key, f"must be at most {high}, received {value}")
                return high
        return value

    def bool(self, key: builtins.str, default: Any = REQUIRED) -> builtins.bool:
        value: builtins.bool = self._get(key, default, builtins.bool, False)
        return value

    def list_str(self, key: builtins.str, default: Any = REQUIRED) -> list[builtins.str]:
        value: list[builtins.str] = self._get(key, default, list, [])
        if key in self.data and isinstance(value, list):
            bad = [v for v in value if not isinstance(v, builtins.str)]
            if bad:
                self.problem(key, f"expected a list of strings, received {describe(bad[0])}")
                return []
        return value

    def scalars(self, *, skip: tuple[builtins.str, ...] = ()
                ) -> dict[builtins.str, builtins.str | builtins.int | builtins.bool]:
        """Every other key of this table as a free-form value (attributes, account fields)."""
        values: dict[builtins.str, builtins.str | builtins.int | builtins.bool] = {}
        for key in list(self.data):
            if key in skip:
                continue
            value = self.raw(key)
            if isinstance(value, builtins.str | builtins.int | builtins.bool):
                values[key] = value
            else:
                self.problem(key, f"expected text, a number or true/false, "
                                  f"received {describe(value)}")
        return values

    def raw(self, key: builtins.str, default: Any = REQUIRED) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.problem(key, "is required")
                return None
            return default
        return self.data[key]

    def table(self, key: builtins.str, *, required: builtins.bool = False) -> Section:
        value = self._get(key, REQUIRED if required else {}, dict, {})
        return Section(value, self.key_path(key), self.problems, self.base_dir)

    def tables(self, key: builtins.str, *, required: builtins.bool = False) -> list[Section]:
        value = self._get(key, REQUIRED if required else [], list, [])
        sections = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.problem(f"{key}[{i}]", f"expected a table, received {describe(item)}")
                continue
            sections.append(Section(item, f"{self.key_path(key)}[{i}]", self.problems,
                                    self.base_dir))
        return sections

    def path_value(self, key: builtins.str, default: Any = REQUIRED, *,
                   must_exist: builtins.bool = True) -> Path:
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

    def secret(self, key: builtins.str, *, required: builtins.bool = True) -> builtins.str | None:
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


# -- the declared configuration ------------------------------------------------------
#
# Tables are pydantic models: each key declared once with its type, default and
# validator. Validation is strict (TOML already has types: "5" is not 5, 1 is not
# true), unknown keys are errors, and every problem of a file is reported at once
# with its key path. The models are plain data: loading opens nothing but the
# configuration and the files it names.


class SecretMarker:
    """Metadata of a secret field: also readable as KEY_env / KEY_file, never echoed."""


class _Invalid:
    """A secret that could not be resolved; its validator reports `message` at the key."""

    def __init__(self, message: str) -> None:
        self.message = message


def _secret(value: Any) -> str:
    if isinstance(value, _Invalid):
        raise PydanticCustomError("secret", value.message)
    if not isinstance(value, str):
        # Never the value: a password given as a number is still a password.
        raise PydanticCustomError("secret", "expected a string (the value is not shown)")
    return value


Secret = Annotated[str, SecretMarker(), Field(repr=False), PlainValidator(_secret)]
"""A secret string: KEY = "...", KEY_env = "VAR" or KEY_file = "/run/secrets/k"."""


def _scalar(value: Any) -> str | int | bool:
    if isinstance(value, str | int | bool):
        return value
    raise PydanticCustomError("scalar", "expected text, a number or true/false, received "
                                        "{value}", {"value": describe(value)})


Scalar = Annotated[str | int | bool, PlainValidator(_scalar)]
"""A free-form value: a user attribute, an account field."""


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def _path(value: Any, info: ValidationInfo, must_exist: bool) -> Path:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("path", "expected a file path")
    path = Path(value)
    if not path.is_absolute():
        path = _base_dir(info) / path
    if must_exist and not path.exists():
        raise PydanticCustomError("path", "file not found: {path}", {"path": str(path)})
    return path


FilePath = Annotated[Path, PlainValidator(lambda v, info: _path(v, info, True))]
"""An existing file; relative paths are taken from the configuration file's folder."""
NewPath = Annotated[Path, PlainValidator(lambda v, info: _path(v, info, False))]
"""A file that may not exist yet (relative to the configuration file's folder)."""


def problem(message: str, key: str | None = None) -> PydanticCustomError:
    """A cross-key problem found by a model validator, reported at `key` of that table."""
    return PydanticCustomError("config", "{message}", {"message": message, "key": key})


class Model(BaseModel):
    """Base of every configuration table."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              hide_input_in_errors=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        secrets = [name for name, f in cls.model_fields.items() if is_secret(f)]
        if not secrets:
            return data
        data = dict(data)
        for name in secrets:
            variants = [k for k in (name, f"{name}_env", f"{name}_file") if k in data]
            if not variants:
                continue
            if len(variants) > 1:
                for k in variants:
                    data.pop(k)
                data[name] = _Invalid(f"give only one of {', '.join(variants)}")
                continue
            which = variants[0]
            if which == name:
                continue
            data[name] = _read_secret(which, data.pop(which))
        return data


def is_secret(field: FieldInfo) -> bool:
    if any(isinstance(m, SecretMarker) for m in field.metadata):
        return True
    return any(typing.get_origin(arg) is Annotated
               and any(isinstance(m, SecretMarker) for m in typing.get_args(arg)[1:])
               for arg in typing.get_args(field.annotation))


def _read_secret(which: str, ref: Any) -> str | _Invalid:
    if not isinstance(ref, str) or not ref:
        return _Invalid(f"{which} must name {'a variable' if which.endswith('_env') else 'a file'}")
    if which.endswith("_env"):
        if ref not in os.environ:
            return _Invalid(f"{which}: environment variable {ref!r} is not set")
        return os.environ[ref]
    path = Path(ref)
    if not path.is_absolute():
        path = Path(_CONTEXT_DIR.get()) / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return _Invalid(f"{which}: cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        return _Invalid(f"{which}: {path} is not UTF-8")
    return text[:-1] if text.endswith("\n") else text


# The before-validator that reads KEY_file has no access to the validation context in
# every pydantic version; the loader sets the folder for the duration of one validation.
_CONTEXT_DIR: contextvars.ContextVar[str] = contextvars.ContextVar("config_dir", default=".")

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, where: str = "", base_dir: Path | None = None) -> M:
    """Validate one table; raise ConfigError with every problem, keys prefixed by `where`."""
    folder = base_dir or Path.cwd()
    token = _CONTEXT_DIR.set(str(folder))
    try:
        return model.model_validate(data, context={"base_dir": folder})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, model, where)) from None
    finally:
        _CONTEXT_DIR.reset(token)


_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number",
    "bool_type": "true or false", "list_type": "a list", "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table", "tuple_type": "a list",
    "int_from_float": "an integer",
}


def describe_errors(exc: ValidationError, model: type[BaseModel], where: str = "") -> list[str]:
    """pydantic's errors in the gateway's words: `Config value 'a.b[0]': message`."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        ctx = error.get("ctx") or {}
        kind = error["type"]
        value = error.get("input")
        if kind == "config":
            message = str(ctx.get("message", error["msg"]))
            if ctx.get("key"):
                loc.append(str(ctx["key"]))
        elif kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "unknown key" + _suggestion(model, loc)
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, received {describe(value)}"
        elif kind in ("greater_than_equal", "greater_than"):
            bound = ctx.get("ge", ctx.get("gt"))
            message = f"must be at least {bound}, received {describe(value)}"
        elif kind in ("less_than_equal", "less_than"):
            bound = ctx.get("le", ctx.get("lt"))
            message = f"must be at most {bound}, received {describe(value)}"
        elif kind == "literal_error":
            message = f"expected one of {ctx.get('expected', '')}, received {describe(value)}"
        elif kind in ("string_too_short", "too_short"):
            message = "must not be empty"
        elif kind in ("scalar", "path", "secret"):
            message = error["msg"]
        elif kind == "value_error":
            message = str(ctx.get("error", error["msg"]))
        else:
            message = error["msg"]
        problems.append(f"Config value '{_key_path(where, loc)}': {message}")
    return problems


def _key_path(where: str, loc: list[Any]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _suggestion(model: type[BaseModel], loc: list[Any]) -> str:
    """' (did you mean 'x'?)' for a misspelt key, when the table's keys are known."""
    known = _keys_at(model, loc[:-1])
    if not known or not loc or not isinstance(loc[-1], str):
        return " (is it misspelt?)"
    close = difflib.get_close_matches(loc[-1], sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else " (is it misspelt?)"


def _keys_at(model: Any, loc: list[Any]) -> set[str]:
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(str(part))
            current = f.annotation if f is not None else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return set()
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        keys = {f.alias or name for name, f in current.model_fields.items()}
        for name, f in current.model_fields.items():
            if is_secret(f):
                keys |= {f"{name}_env", f"{name}_file"}
        return keys
    return set()


def _unwrap(annotation: Any) -> Any:
    """Optional[X] and Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation

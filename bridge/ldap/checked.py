"""Cross-key rules of a configuration table, checked even when another key is wrong.

pydantic runs a model's after-validators only once every key has validated,
so one bad `timeout` would hide that the same table sends passwords in clear
text, and the operator would fix problems one run at a time. `Checked` runs
its `rules()` in both cases: on the validated table, or on the keys that are
right. Nothing here is LDAP's: it belongs next to `Model` in bridge.config,
and lives here until that module takes it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any, Self

from pydantic import (
    ModelWrapValidatorHandler,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from bridge.config import Model


class Checked(Model):
    """A table with cross-key rules that are checked even when some other key is wrong.

    pydantic runs after-validators only once every key has validated, so a bad
    `timeout` would hide that the same table sends passwords in clear text.
    `rules()` yields the cross-key problems (`problem(message, key)`); it runs on
    the validated table or, when some keys are wrong, on those that are right:
    a rule reads a key only if `self.valid(key)`.
    """

    _invalid: frozenset[str] = PrivateAttr(default=frozenset())
    _input: dict[str, Any] = PrivateAttr(default_factory=dict)

    def valid(self, *names: str) -> bool:
        """Whether these keys validated (always, once the whole table has)."""
        return not self._invalid.intersection(names)

    def given(self, key: str) -> Any:
        """What the file says at `key`, for a rule that can use part of an invalid key."""
        return self._input.get(key)

    def rules(self) -> Iterator[PydanticCustomError]:
        return iter(())

    @model_validator(mode="wrap")
    @classmethod
    def _check_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self],
                     info: ValidationInfo) -> Self:
        try:
            value = handler(data)
        except ValidationError as exc:
            partial = cls._partial(data, exc, info)
            found = list(partial.rules()) if partial is not None else []
            if not found:
                raise
            raise _merged(exc, found) from None
        found = list(value.rules())
        if found:
            raise _merged(None, found)
        return value

    @classmethod
    def _partial(cls, data: Any, exc: ValidationError, info: ValidationInfo) -> Checked | None:
        """The keys that are right, each validated alone; the others marked invalid."""
        if not isinstance(data, dict):
            return None
        data = cls._resolve_secrets(data)  # type: ignore[operator]  # the base's KEY_env
        failed = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        values: dict[str, Any] = {}
        given: set[str] = set()
        invalid: set[str] = set()
        for name, f in cls.model_fields.items():
            key = f.alias or name
            if key in failed or (key not in data and f.is_required()):
                invalid.add(name)
            elif key not in data:
                values[name] = f.get_default(call_default_factory=True)
            else:
                kind: Any = Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation
                adapter: TypeAdapter[Any] = TypeAdapter(kind)
                try:
                    values[name] = adapter.validate_python(data[key], context=info.context)
                except ValidationError:
                    invalid.add(name)
                else:
                    given.add(name)
        partial = cls.model_construct(_fields_set=given, **values)
        partial._invalid = frozenset(invalid)
        partial._input = data
        return partial


_CORE_ERRORS = frozenset(typing.get_args(ErrorType))


def _merged(exc: ValidationError | None, found: list[PydanticCustomError]) -> ValidationError:
    """pydantic's problems of a table and its rules' problems, as one ValidationError."""
    lines: list[InitErrorDetails] = []
    for e in exc.errors(include_url=False) if exc is not None else []:
        kind: Any = e["type"]
        if kind not in _CORE_ERRORS:  # a custom error: rebuilt with its rendered message
            kind = PydanticCustomError(kind, "{message}",
                                       {**(e.get("ctx") or {}), "message": e["msg"]})
        line: InitErrorDetails = {"type": kind, "loc": e["loc"], "input": e["input"]}
        if "ctx" in e and isinstance(kind, str):
            line["ctx"] = e["ctx"]
        lines.append(line)
    lines.extend({"type": p, "loc": (), "input": None} for p in found)
    return ValidationError.from_exception_data("config", lines, hide_input=True)

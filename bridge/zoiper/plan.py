"""A section spec flattened once into a render plan, so a request is mostly lookups.

Each Dialect builds its plan when it is defined (at import), never per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.zoiper.schema import Kind, Option, SchemaError, SectionSpec

__all__ = ["EXTRA", "Plan", "RequiredRule"]

# The key under which a section of a tree holds options the schema does not know.
EXTRA = "@extra"

# (the protocol an account has when it names none, options required per protocol)
RequiredRule = tuple[str, Mapping[str, tuple[str, ...]]]


class Plan:
    """One section: its tags, its known names, and one step per child in document order.

    `required` is set on the account's plan only: the rule _walk applies to every account.
    """

    __slots__ = ("close", "known", "name", "open", "required", "spec", "steps")

    def __init__(self, spec: SectionSpec, account: SectionSpec | None = None,
                 required: RequiredRule | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.open, self.close = f"<{spec.name}>", f"</{spec.name}>"
        self.known = frozenset((*spec.order, EXTRA))
        self.required = required if spec is account else None
        steps: list[tuple[Any, ...]] = []
        for name in spec.order:
            option, sub = spec.options.get(name), spec.sections.get(name)
            tags = (f"<{name}>", f"</{name}>", f"<{name}/>")
            if option is not None:
                steps.append((name, option.check, _fragments(option, *tags), None, False,
                              option.kind is Kind.STRING, *tags))
            else:
                assert sub is not None
                many = sub.item is not None
                plan = Plan(sub.item if sub.item is not None else sub, account, required)
                steps.append((name, None, {}, plan, many, False, *tags))
        self.steps = tuple(steps)


def _fragments(option: Option, open_: str, close: str, empty: str) -> dict[type, dict[Any, str]]:
    """The finished element for every valid input of a finite option, by exact type.

    Built by asking Option.check itself, so the shortcut can never accept more
    than the check would; keying by type keeps 1 from passing for True.
    """
    candidates: list[Any] = [True, False, "true", "false", *option.choices]
    candidates += [int(c) for c in option.choices if c.lstrip("-").isdigit()]
    table: dict[type, dict[Any, str]] = {}
    if option.kind is Kind.STRING or option.kind is Kind.INTEGER:
        return table
    for value in candidates:
        try:
            text = option.check(value)
        except SchemaError:
            continue
        table.setdefault(type(value), {})[value] = f"{open_}{text}{close}" if text else empty
    return table

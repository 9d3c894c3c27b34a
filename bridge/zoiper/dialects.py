"""The Zoiper clients the gateway can provision, each one a Dialect value.

A dialect bundles what rendering, parsing and the TOML mapping need to know
about one client: its schema (root and account specs), which options an
account cannot register without, and the render plan, built once here.

    from bridge.zoiper.dialects import DESKTOP
    render_config(tree, DESKTOP)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge.zoiper import android, desktop, ios
from bridge.zoiper.plan import Plan
from bridge.zoiper.schema import Kind, SectionSpec

__all__ = ["ANDROID", "DESKTOP", "DIALECTS", "IOS", "Dialect", "dialect_named"]


@dataclass(frozen=True)
class Dialect:
    """One client's configuration-data format.

    `required` maps every value of the account's `protocol` option to the
    options such an account cannot register without (blank counts as missing).
    """

    name: str
    title: str
    root: SectionSpec
    account: SectionSpec
    required: Mapping[str, tuple[str, ...]]
    plan: Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        accounts = self.root.section("accounts")
        if accounts is None or accounts.item is not self.account:
            raise ValueError(f"{self.name}: <options> must hold <accounts> of the account spec")
        protocol = self.account.option("protocol")
        if protocol is None or protocol.kind is not Kind.TEXT_ENUMERATION:
            raise ValueError(f"{self.name}: an account needs a 'protocol' text enumeration")
        if set(self.required) != set(protocol.choices):
            raise ValueError(f"{self.name}: required options must be given for exactly the "
                             f"protocols {', '.join(protocol.choices)}")
        for names in self.required.values():
            for name in names:
                if self.account.option(name) is None:
                    raise ValueError(f"{self.name}: required option {name!r} is not an "
                                     f"account option")
        plan = Plan(self.root, self.account, (protocol.default, self.required))
        object.__setattr__(self, "plan", plan)

    def __str__(self) -> str:
        return self.title


ANDROID = Dialect("android", "Zoiper for Android 1.14.3", android.ROOT, android.ACCOUNT,
                  android.REQUIRED)
IOS = Dialect("ios", "Zoiper for iOS 1.14.3", ios.ROOT, ios.ACCOUNT, ios.REQUIRED)
DESKTOP = Dialect("desktop", "Zoiper5 Desktop 1.16.2", desktop.ROOT, desktop.ACCOUNT,
                  desktop.REQUIRED)

DIALECTS: Mapping[str, Dialect] = MappingProxyType({d.name: d for d in (ANDROID, IOS, DESKTOP)})
"""Every dialect by its configuration name."""


def dialect_named(name: str) -> Dialect:
    """The dialect called `name` ("android", "ios", "desktop"); KeyError naming the choices."""
    try:
        return DIALECTS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown Zoiper dialect {name!r}; expected one of: "
                       f"{', '.join(DIALECTS)}") from None

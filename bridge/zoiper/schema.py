"""The building blocks of a Zoiper configuration-data schema.

A dialect (one client version: Android, iOS, Zoiper5 Desktop) is described as
data in its own module (android.py, ios.py, desktop.py) with the builders
below, and bundled as a Dialect value in dialects.py. This module knows the
vendor's value types and how to check one value; it knows no option names.

The Android names that used to live here (ROOT, ACCOUNT, CODEC, ...) are still
importable from this module for existing callers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "CODEC_IDS",
    "Kind",
    "Option",
    "SchemaError",
    "SectionSpec",
    "xml_text_ok",
]

# Everything outside the XML 1.0 `Char` production: most C0 controls, lone
# surrogates, U+FFFE and U+FFFF. Such text cannot be put in a document at all.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DIGITS = re.compile(r"-?[0-9]+")
_NUMERIC = re.compile(r"\s*([+-]?[0-9]+)(?:\.0*)?\s*")
_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})
# Assumed limit: the Android app keeps integers as 32-bit Java ints (applied to every
# dialect: no document gives a wider integer, and a bound keeps odd input cheap).
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_SHOWN = 60  # longest repr of a received value that goes into a message


def xml_text_ok(s: str) -> bool:
    """True if every character of `s` may appear in an XML 1.0 document."""
    return _NOT_XML_CHAR.search(s) is None


class SchemaError(ValueError):
    """A value or a structure the phone would not accept.

    `path` locates the problem ("accounts[0].codecs[2].codec_id"); its last
    part is the option's name. Values of secret options are never shown.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class Kind(enum.Enum):
    """The vendor's value types (it also names date/time, which no option of any dialect uses)."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    STRING = "string"
    ENUMERATION = "enumeration"  # a number from a fixed set
    TEXT_ENUMERATION = "text enumeration"  # a word from a fixed set


# Enum attribute access is slow on 3.11; check() runs per option per request.
_STRING, _BOOLEAN, _ENUMERATION, _TEXT_ENUMERATION = (
    Kind.STRING, Kind.BOOLEAN, Kind.ENUMERATION, Kind.TEXT_ENUMERATION
)


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        # Far beyond any range the phone stores; not worth (or safe) converting.
        return int(value) if len(value) <= 32 else _INT_MAX + 1
    return None


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass(frozen=True)
class Option:
    """One leaf element: its type, allowed values and the phone's own default."""

    name: str
    kind: Kind
    default: str = ""  # as the phone stores it; "" is "nothing"
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    secret: bool = False
    doc: str = ""
    _choice_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _range: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived, not fields: O(1) membership and the effective integer range.
        object.__setattr__(self, "_choice_set", frozenset(self.choices))
        low = _INT_MIN if self.minimum is None else self.minimum
        high = _INT_MAX if self.maximum is None else self.maximum
        object.__setattr__(self, "_range", (low, high))

    def check(self, value: str | int | bool) -> str:
        """Return the canonical text the phone would store, or raise SchemaError."""
        kind, t = self.kind, type(value)
        if kind is _STRING:
            if t is not str:
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise self._error("text", value)
                # Numbers are text here (a phone number stored as INTEGER is common);
                # the 32-bit bound is for integer options only.
                value = str(value)
            assert isinstance(value, str)
            if _NOT_XML_CHAR.search(value) is not None:
                raise self._bad_char(value)
            return value
        if kind is _BOOLEAN:
            if t is bool:
                return "true" if value else "false"
            if isinstance(value, str) and value in ("true", "false"):
                return "true" if value == "true" else "false"
            raise self._error("true or false", value)
        if kind is _TEXT_ENUMERATION:
            if isinstance(value, str) and value in self._choice_set:
                return str(value)
            raise self._error("one of " + ", ".join(self.choices), value)
        # INTEGER and ENUMERATION: a whole number, given as int or as plain digits.
        number = value if isinstance(value, int) and t is int else _whole_number(value)
        if kind is _ENUMERATION:
            text = str(number) if number is not None and -1000 < number < 1000 else ""
            if text not in self._choice_set:
                raise self._error("one of " + ", ".join(self.choices), value)
            return text
        if number is None:
            raise self._error("an integer", value)
        low, high = self._range
        if not low <= number <= high:
            raise self._error(f"an integer from {low} to {high}", value)
        return str(number)

    def coerce(self, value: str | int | bool) -> str | int | bool:
        """A backend's spelling of this option's type, in the form check() takes.

        Databases and directories write booleans as 0/1, 't'/'f', 'yes'/'no' (any
        case, surrounding spaces ignored) and numbers as text: a boolean option
        takes those, an integer or enumeration option takes numeric text (" 5 ",
        "+5", "5.0"). Anything else is a SchemaError; other kinds pass unchanged.
        Only values from backends are coerced: literals in the configuration stay
        strict (TOML has types). check() still runs on the result.
        """
        kind = self.kind
        if kind is _BOOLEAN:
            if type(value) is bool:
                return value
            if type(value) is int and value in (0, 1):
                return value == 1
            if isinstance(value, str):
                word = value.strip().lower()
                if word in _TRUE:
                    return True
                if word in _FALSE:
                    return False
            raise self._error("a boolean (true/false, 1/0, t/f, yes/no)", value)
        if (kind is Kind.INTEGER or kind is _ENUMERATION) and isinstance(value, str):
            m = _NUMERIC.fullmatch(value)
            if m is None:
                raise self._error("an integer", value)
            return int(m.group(1)) if len(m.group(1)) <= 32 else _INT_MAX + 1
        return value

    def _error(self, expected: str, value: object) -> SchemaError:
        if self.secret:
            return SchemaError(self.name, f"expected {expected}")
        return SchemaError(self.name, f"expected {expected}, got {_show(value)}")

    def _bad_char(self, text: str) -> SchemaError:
        found = _NOT_XML_CHAR.search(text)
        assert found is not None
        where = f"U+{ord(found.group()):04X} at position {found.start()}"
        if self.secret:
            where = "a character"
        return SchemaError(self.name, f"expected text XML can carry; {where} is not allowed")


@dataclass(frozen=True)
class SectionSpec:
    """An element that holds other elements.

    `options` and `sections` are in document order; `order` interleaves both
    names the way the phone's own documents do (an account has its codecs in
    the middle of its options). A list container (`accounts`, `codecs`) has
    no options of its own, only an `item` spec repeated for every entry.
    """

    name: str
    options: Mapping[str, Option] = field(default_factory=lambda: MappingProxyType({}))
    sections: Mapping[str, SectionSpec] = field(default_factory=lambda: MappingProxyType({}))
    item: SectionSpec | None = None
    order: tuple[str, ...] = ()

    def option(self, name: str) -> Option | None:
        return self.options.get(name)

    def section(self, name: str) -> SectionSpec | None:
        return self.sections.get(name)


def _section(name: str, *children: Option | SectionSpec) -> SectionSpec:
    options = {c.name: c for c in children if isinstance(c, Option)}
    sections = {c.name: c for c in children if isinstance(c, SectionSpec)}
    assert len(options) + len(sections) == len(children), f"duplicate child in {name}"
    return SectionSpec(
        name,
        MappingProxyType(options),
        MappingProxyType(sections),
        order=tuple(c.name for c in children),
    )


def _list(name: str, item: SectionSpec) -> SectionSpec:
    return SectionSpec(name, item=item, order=(item.name,))


def _bool(name: str, default: bool, doc: str) -> Option:
    return Option(name, Kind.BOOLEAN, "true" if default else "false", doc=doc)


def _int(name: str, default: int, doc: str, minimum: int | None = None,
         maximum: int | None = None) -> Option:
    return Option(name, Kind.INTEGER, str(default), minimum=minimum, maximum=maximum, doc=doc)


def _str(name: str, doc: str, default: str = "", *, secret: bool = False) -> Option:
    return Option(name, Kind.STRING, default, secret=secret, doc=doc)


def _words(name: str, choices: str, default: str, doc: str) -> Option:
    """A text enumeration; default "" where the vendor names no default."""
    return Option(name, Kind.TEXT_ENUMERATION, default, tuple(choices.split()), doc=doc)


def _enum(name: str, choices: str, default: str, doc: str) -> Option:
    """A numeric enumeration (the vendor's "enumeration": a number from a fixed set)."""
    return Option(name, Kind.ENUMERATION, default, tuple(choices.split()), doc=doc)


def _port(name: str, default: int, doc: str) -> Option:
    return _int(name, default, doc, minimum=1, maximum=65535)


CODEC_IDS: Mapping[str, str] = MappingProxyType({
    "-1": "unknown/invalid",
    "0": "G.711 mu-law (PCMU)",
    "1": "GSM",
    "6": "G.711 a-law (PCMA)",
    "7": "G.722",
    "16": "G.729",
    "18": "MJPEG (video)",
    "24": "Speex narrowband, 8 kHz",
    "25": "Speex wideband, 16 kHz",
    "26": "Speex ultra-wideband, 32 kHz",
    "27": "iLBC 30 ms",
    "28": "iLBC 20 ms",
    "29": "G.726, 32 kbit/s",
    "30": "H.263+ (video)",
    "31": "VP8 (video)",
    "32": "H.264 (video)",
    "33": "telephone-event (RFC 2833/4733), 8 kHz",
    "34": "Opus, 8 kHz",
    "35": "Opus, 16 kHz",
    "36": "Opus, 24 kHz",
    "37": "Opus, 48 kHz",
    "38": "AMR",
    "39": "AMR-WB",
    "40": "H.264, hardware codec (video)",
    "41": "telephone-event, 16 kHz",
    "42": "telephone-event, 32 kHz",
    "43": "telephone-event, 48 kHz",
})
"""Every codec id the phones know, with a human label for logs and docs.

The three vendor documents list the same ids with the same meanings.
"""

# The Android schema used to be defined here; callers still import it from here.
_ANDROID_NAMES = frozenset(
    {"ACCOUNT", "ACCOUNTS", "CODEC", "CODECS", "DIAGNOSTICS", "ROOT", "STUN", "ZRTP"}
)


def __getattr__(name: str) -> SectionSpec:
    # Lazy, because android.py is built with the helpers above (no import cycle).
    if name in _ANDROID_NAMES:
        from bridge.zoiper import android

        spec: SectionSpec = getattr(android, name)
        return spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

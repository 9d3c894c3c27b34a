"""Putting what a phone typed into a DN or a filter without changing its meaning.

Templates are filled by bridge.placeholders, whose DN_VALUE, DN and FILTER
destinations use these. Both escapers escape more than the RFCs require,
never less: any octet may be written as a backslash and two hex digits. The DN form is the one slapd
prints (`\\2C`), so a DN built here compares equal to one it returns. Leading
and trailing spaces are escaped in filters too: ldap3's filter parser strips
them otherwise, and both clients must send the same bytes.
"""

from __future__ import annotations

import re

_FILTER_SPECIAL = frozenset("\\*()\x00")
_DN_SPECIAL = frozenset('"+,;<>\\=\x00')
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]+)")


def _hex(ch: str) -> str:
    return "".join(f"\\{b:02X}" for b in ch.encode("utf-8"))


def _control(ch: str) -> bool:
    return ch < " " or ch == "\x7f"


# what either escaper would change: specials, controls, and the edge characters (checked
# apart); most names have none, and are returned as they are without a pass per character
_FILTER_PLAIN = re.compile(r"[^\\*()\x00-\x1f\x7f]*")
_DN_PLAIN = re.compile(r'[^"+,;<>\\=\x00-\x1f\x7f]*')


def escape_filter_value(value: str) -> str:
    """RFC 4515 assertion value: `*`, `(`, `)`, `\\`, NUL, controls and edge spaces as \\XX."""
    if _FILTER_PLAIN.fullmatch(value) and not (value.startswith(" ") or value.endswith(" ")):
        return value
    last = len(value) - 1
    return "".join(
        _hex(ch).lower() if ch in _FILTER_SPECIAL or _control(ch)
        or (ch == " " and i in (0, last)) else ch
        for i, ch in enumerate(value))


def escape_dn_value(value: str) -> str:
    """RFC 4514 attribute value: specials, a leading `#` or space, a trailing space as \\XX."""
    if _DN_PLAIN.fullmatch(value) and not (value.startswith(("#", " ")) or value.endswith(" ")):
        return value
    last = len(value) - 1
    return "".join(
        _hex(ch) if ch in _DN_SPECIAL or _control(ch)
        or (i == 0 and ch in "# ") or (i == last and ch == " ") else ch
        for i, ch in enumerate(value))


def ad_data_code(message: str) -> str | None:
    """The `data 52e` sub-code of an Active Directory bind failure, lower-cased."""
    m = _AD_DATA.search(message)
    return m.group(1).lower() if m else None


_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)", re.DOTALL)


def _unescape_dn_value(raw: str) -> str:
    def octets(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))  # one octet, as a latin-1 placeholder
        return m.group(2).encode().decode("latin-1")

    text = _DN_ESCAPE.sub(octets, raw.encode().decode("latin-1"))
    return text.encode("latin-1").decode("utf-8", "replace")


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by a backslash."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def parse_dn(dn: str) -> list[list[tuple[str, str]]]:
    """RDNs as lists of (attribute type, unescaped value); `\\2C` and `\\,` give the same."""
    rdns = []
    for rdn in _split(dn, ","):
        avas = []
        for ava in _split(rdn, "+"):
            name, _, value = ava.partition("=")
            avas.append((name.strip(" "), _unescape_dn_value(_trim(value))))
        rdns.append(avas)
    return rdns


def dn_key(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A comparable form of a DN: types and values case-folded, escapes resolved.

    Good enough to compare group DNs written by an operator with those a
    server returns (both case-insensitive in practice); not a full RFC 4517
    distinguishedNameMatch.
    """
    return tuple(tuple(sorted((t.casefold(), v.casefold()) for t, v in rdn))
                 for rdn in parse_dn(dn) if rdn != [("", "")])


_ATTRIBUTE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*|[0-9]+(\.[0-9]+)+")
_DN_RAW_VALUE = re.compile(r'#(?:[0-9A-Fa-f]{2})+|(?:[^\\"+,;<>\x00]|\\[0-9A-Fa-f]{2}'
                           r'|\\[ "#+,;<=>\\])*')


def is_dn(text: str) -> bool:
    """Whether `text` is a non-empty DN: TYPE=VALUE parts, specials in values escaped.

    For a DN placed as it is (a search base of `{identity.dn}`): one that came
    from somewhere other than the directory must not smuggle in extra parts.
    """
    if not text.strip(" "):
        return False
    for rdn in _split(text, ","):
        for ava in _split(rdn, "+"):
            name, eq, value = ava.partition("=")
            if not eq or not _ATTRIBUTE_TYPE.fullmatch(name.strip(" ")) \
                    or not _DN_RAW_VALUE.fullmatch(_trim(value)):
                return False
    return True


def _trim(value: str) -> str:
    """A raw value without the spaces around it; an escaped trailing space is part of it."""
    value = value.lstrip(" ")
    while value.endswith(" ") and not value.endswith("\\ "):
        value = value[:-1]
    return value


def rdn_value(dn: str) -> str:
    """The value of the first RDN: the group's name in `cn=voip,ou=groups,...`."""
    rdns = parse_dn(dn)
    return rdns[0][0][1] if rdns and rdns[0] else ""

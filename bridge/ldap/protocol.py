"""The slice of LDAPv3 (RFC 4511) and RFC 4515 filters that the gateway speaks.

Pure functions and a stream decoder, no I/O, so the wire format can be tested
byte for byte and the asyncio client stays a thin state machine. Only what the
gateway sends is encoded (simple bind, unbind, search, extended requests) and
only what a server answers to those is decoded. The decoder is strict: one-byte
tags, definite lengths of at most four length octets, a size cap per message;
anything else is `ProtocolError`, after which the connection must be dropped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.ldap.client import LdapResult

# ---- protocolOp tags (RFC 4511 4.2-4.12, [APPLICATION n]) ---------------------------------
BIND_REQUEST = 0x60
BIND_RESPONSE = 0x61
UNBIND_REQUEST = 0x42
SEARCH_REQUEST = 0x63
SEARCH_RESULT_ENTRY = 0x64
SEARCH_RESULT_DONE = 0x65
SEARCH_RESULT_REFERENCE = 0x73
EXTENDED_REQUEST = 0x77
EXTENDED_RESPONSE = 0x78
INTERMEDIATE_RESPONSE = 0x79
# responses that are an LDAPResult (bind; search done; modify, add, delete, modDN, compare)
_RESULT_OPS = frozenset({BIND_RESPONSE, SEARCH_RESULT_DONE, 0x67, 0x69, 0x6B, 0x6D, 0x6F})

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"
NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"

MAX_MESSAGE_ID = 2**31 - 1
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_FILTER_DEPTH = 64  # nesting of &, |, !: deeper filters are refused, not recursed into


class ProtocolError(ValueError):
    """Bytes from the server that are not a well-formed LDAP message we accept."""


# ---- BER encoding ---------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + _length(n) + content


def _integer(tag: int, value: int) -> bytes:
    # minimal two's complement (X.690 8.3)
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return _tlv(tag, body)


def _message(message_id: int, op: bytes) -> bytes:
    if not 0 < message_id <= MAX_MESSAGE_ID:
        raise ValueError(f"message id out of range: {message_id}")
    return _tlv(0x30, _integer(0x02, message_id) + op)


def encode_bind_request(message_id: int, name: str | bytes, password: str | bytes) -> bytes:
    """LDAPv3 simple BindRequest; an empty name and password is the anonymous bind."""
    dn = name.encode() if isinstance(name, str) else name
    pw = password.encode() if isinstance(password, str) else password
    body = b"\x02\x01\x03" + _tlv(0x04, dn) + _tlv(0x80, pw)
    return _message(message_id, _tlv(BIND_REQUEST, body))


def encode_unbind_request(message_id: int) -> bytes:
    return _message(message_id, b"\x42\x00")


def encode_extended_request(message_id: int, oid: str, value: bytes | None = None) -> bytes:
    body = _tlv(0x80, oid.encode("ascii"))
    if value is not None:
        body += _tlv(0x81, value)
    return _message(message_id, _tlv(EXTENDED_REQUEST, body))


def encode_starttls_request(message_id: int) -> bytes:
    return encode_extended_request(message_id, STARTTLS_OID)


def encode_search_request(
    message_id: int,
    base: str,
    scope: int,
    filter: str | bytes,
    attributes: Iterable[str] = (),
    *,
    size_limit: int = 0,
    time_limit: int = 0,
) -> bytes:
    """SearchRequest with derefAliases=never and typesOnly=false.

    `filter` is an RFC 4515 string, or bytes already returned by `compile_filter`
    (callers that reuse one filter skip the parse).
    """
    if scope not in (0, 1, 2):
        raise ValueError(f"invalid scope: {scope}")
    if not (0 <= size_limit <= MAX_MESSAGE_ID and 0 <= time_limit <= MAX_MESSAGE_ID):
        raise ValueError("size and time limits must be within 0..2**31-1")
    compiled = filter if isinstance(filter, bytes) else compile_filter(filter)
    head, tail = search_parts(base, scope, tuple(attributes), size_limit, time_limit)
    return _message(message_id, _tlv(SEARCH_REQUEST, head + compiled + tail))


@functools.lru_cache(maxsize=256)
def search_parts(base: str, scope: int, attributes: tuple[str, ...], size_limit: int,
                 time_limit: int) -> tuple[bytes, bytes]:
    """A SearchRequest's body before and after its filter: the same for every login of one
    configured search, so encoded once (the caller has checked scope and limits)."""
    attrs = b"".join(_tlv(0x04, a.encode()) for a in attributes)
    head = b"".join((
        _tlv(0x04, base.encode()),
        bytes((0x0A, 1, scope)),
        b"\x0a\x01\x00",  # derefAliases: neverDerefAliases
        _integer(0x02, size_limit),
        _integer(0x02, time_limit),
        b"\x01\x01\x00",  # typesOnly: FALSE
    ))
    return head, _tlv(0x30, attrs)


# ---- RFC 4515 string filters ----------------------------------------------------------------

_ATTR_RE = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+)(?:;[A-Za-z0-9-]+)*\Z"
)
_OID_RE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+)\Z")
_HEX = frozenset("0123456789abcdefABCDEF")


def compile_filter(text: str) -> bytes:
    """Compile an RFC 4515 filter string to its BER `Filter`; ValueError when malformed.

    Strict: the outer parentheses are required, no whitespace is skipped (it
    belongs to values), `\\` must be followed by two hex digits, `**` and empty
    `(&)`/`(|)` are refused. Values are UTF-8; escapes may produce any octets.
    """
    if not isinstance(text, str):
        raise TypeError("filter must be a str")
    parser = _FilterParser(text)
    out = parser.parse_filter(0)
    if parser.pos != len(text):
        raise ValueError(f"invalid filter: unexpected characters at position {parser.pos}")
    assert isinstance(out, bytes)  # no holes outside template mode
    return out


# An assertion value as the parser sees it: after "=" (also of "~=", ">=", "<=", ":="), up to
# the item's ")"; one with "*" (presence, substrings, or an error) stays in the template.
_VALUE = re.compile(r"=([^()*]*)\)")
_TEMPLATES: dict[str, _Node | None] = {}
_MAX_TEMPLATES = 1024


def compile_filter_cached(text: str) -> bytes:
    """`compile_filter(text)`, parsing each filter *shape* only once.

    Why: the gateway sends the same few filters with different values on every
    login (the user search, group lookups), and parsing them was ~60 µs of a
    request. The values are cut out (`_VALUE`), what is left is parsed once
    into a template with the values left open (`_Hole`), and each request only
    unescapes its values and fills them in. The bytes are compile_filter's;
    anything unusual (a value the parser would refuse, a shape that does not
    parse) is handed to compile_filter itself, for its exact error.
    """
    if not isinstance(text, str):
        raise TypeError("filter must be a str")
    pieces = _VALUE.split(text)
    shape = "=\0)".join(pieces[0::2])
    if shape in _TEMPLATES:
        template = _TEMPLATES[shape]
    else:
        template = _compile_template(shape, len(pieces) // 2)
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.clear()
        _TEMPLATES[shape] = template
    if template is None:
        return compile_filter(text)
    if isinstance(template, bytes):
        return template
    try:
        values = [_unescape(raw, 0) for raw in pieces[1::2]]
    except ValueError:
        return compile_filter(text)  # raises, with the position
    return template.fill(values)


def _compile_template(shape: str, values: int) -> _Node | None:
    """`shape` parsed with its NUL values left open; None when it is not a filter."""
    parser = _FilterParser(shape, template=True)
    try:
        out = parser.parse_filter(0)
    except ValueError:
        return None
    if parser.pos != len(shape) or parser.holes != values:
        return None
    return out


def _unescape(raw: str, where: int) -> bytes:
    if "\\" not in raw:
        if "\0" in raw or "(" in raw:
            raise ValueError(f"invalid filter: unescaped special character in value at {where}")
        try:
            return raw.encode()
        except UnicodeEncodeError:
            raise ValueError(f"invalid filter: value at {where} is not valid Unicode") from None
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\\":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise ValueError(f"invalid filter: bad escape at position {where + i}")
            out.append(int(pair, 16))
            i += 3
            continue
        if c in "\0(":
            raise ValueError(f"invalid filter: unescaped special character at {where + i}")
        try:
            out += c.encode()
        except UnicodeEncodeError:
            raise ValueError(f"invalid filter: invalid character at {where + i}") from None
        i += 1
    return bytes(out)


class _Hole:
    """An assertion value left open in a compiled filter template: TLV `tag`, value `index`."""

    __slots__ = ("index", "tag")

    def __init__(self, tag: int, index: int) -> None:
        self.tag = tag
        self.index = index

    def fill(self, values: Sequence[bytes]) -> bytes:
        return _tlv(self.tag, values[self.index])


class _Wrap:
    """A constructed TLV with at least one open value inside."""

    __slots__ = ("parts", "tag")

    def __init__(self, tag: int, parts: Sequence[_Node]) -> None:
        self.tag = tag
        self.parts = tuple(parts)

    def fill(self, values: Sequence[bytes]) -> bytes:
        return _tlv(self.tag, b"".join([p if isinstance(p, bytes) else p.fill(values)
                                        for p in self.parts]))


_Node = bytes | _Hole | _Wrap


def _wrap(tag: int, parts: Sequence[_Node]) -> _Node:
    if all(isinstance(p, bytes) for p in parts):
        return _tlv(tag, b"".join(parts))  # type: ignore[arg-type]
    return _Wrap(tag, parts)


class _FilterParser:
    __slots__ = ("holes", "pos", "text")

    def __init__(self, text: str, template: bool = False) -> None:
        self.text = text
        self.pos = 0
        # template mode: a value that is exactly NUL (never valid in a filter) is left open
        self.holes = 0 if template else -1

    def _fail(self, why: str) -> ValueError:
        return ValueError(f"invalid filter: {why} at position {self.pos}")

    def _value(self, tag: int, raw: str, where: int) -> _Node:
        if raw == "\0" and self.holes >= 0:
            self.holes += 1
            return _Hole(tag, self.holes - 1)
        return _tlv(tag, _unescape(raw, where))

    def parse_filter(self, depth: int) -> _Node:
        text = self.text
        if depth > MAX_FILTER_DEPTH:
            raise self._fail("nested too deeply")
        if self.pos >= len(text) or text[self.pos] != "(":
            raise self._fail("expected '('")
        self.pos += 1
        if self.pos >= len(text):
            raise self._fail("unexpected end")
        c = text[self.pos]
        if c in "&|":
            self.pos += 1
            parts = []
            while self.pos < len(text) and text[self.pos] == "(":
                parts.append(self.parse_filter(depth + 1))
            if not parts:
                raise self._fail(f"'{c}' needs at least one filter")
            out = _wrap(0xA0 if c == "&" else 0xA1, parts)
        elif c == "!":
            self.pos += 1
            out = _wrap(0xA2, [self.parse_filter(depth + 1)])
        else:
            out = self._item()
        if self.pos >= len(text) or text[self.pos] != ")":
            raise self._fail("expected ')'")
        self.pos += 1
        return out

    def _item(self) -> _Node:
        text = self.text
        start = self.pos
        end = text.find(")", start)
        if end < 0:
            raise self._fail("missing ')'")
        item = text[start:end]
        # the attribute description ends at the first operator character
        m = re.search(r"[=~<>:]", item)
        if m is None:
            raise self._fail("missing operator")
        op_at = m.start()
        attr = item[:op_at]
        op = item[op_at]
        if op == ":":
            out = self._extensible(attr, item, op_at, start)
        else:
            if not _ATTR_RE.match(attr):
                raise self._fail("invalid attribute description")
            if op in "~<>":
                if item[op_at + 1 : op_at + 2] != "=":
                    raise self._fail("expected '=' after '" + op + "'")
                raw = item[op_at + 2 :]
                vpos = start + op_at + 2
                if "*" in raw:
                    raise self._fail("unescaped '*' in value")
                tag = {"~": 0xA8, ">": 0xA5, "<": 0xA6}[op]
                out = _wrap(tag, [_tlv(0x04, attr.encode()), self._value(0x04, raw, vpos)])
            else:
                raw = item[op_at + 1 :]
                vpos = start + op_at + 1
                out = self._equal(attr, raw, vpos)
        self.pos = end
        return out

    def _equal(self, attr: str, raw: str, vpos: int) -> _Node:
        a = attr.encode()
        if raw == "*":
            return _tlv(0x87, a)
        if "*" not in raw:
            return _wrap(0xA3, [_tlv(0x04, a), self._value(0x04, raw, vpos)])
        parts = raw.split("*")
        subs = []
        offset = vpos
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i == 0:
                if part:
                    subs.append(_tlv(0x80, _unescape(part, offset)))
            elif i == last:
                if part:
                    subs.append(_tlv(0x82, _unescape(part, offset)))
            else:
                if not part:
                    raise ValueError(f"invalid filter: empty substring ('**') at {offset - 1}")
                subs.append(_tlv(0x81, _unescape(part, offset)))
            offset += len(part) + 1
        return _tlv(0xA4, _tlv(0x04, a) + _tlv(0x30, b"".join(subs)))

    def _extensible(self, attr: str, item: str, colon: int, start: int) -> _Node:
        # attr [":dn"] [":" rule] ":=" value   or   [":dn"] ":" rule ":=" value
        assign = item.find(":=", colon)
        if assign < 0:
            raise self._fail("extensible match needs ':='")
        tokens = item[colon + 1 : assign].split(":") if assign > colon else []
        dn = False
        if tokens and tokens[0].lower() == "dn":
            dn = True
            tokens.pop(0)
        if len(tokens) > 1:
            raise self._fail("invalid extensible match")
        rule = tokens[0] if tokens else ""
        if tokens and not _OID_RE.match(rule):
            raise self._fail("invalid matching rule")
        if attr and not _ATTR_RE.match(attr):
            raise self._fail("invalid attribute description")
        if not attr and not rule:
            raise self._fail("extensible match needs an attribute or a matching rule")
        raw = item[assign + 2 :]
        if "*" in raw:
            raise self._fail("unescaped '*' in value")
        body: list[_Node] = []
        if rule:
            body.append(_tlv(0x81, rule.encode()))
        if attr:
            body.append(_tlv(0x82, attr.encode()))
        body.append(self._value(0x83, raw, start + assign + 2))
        if dn:
            body.append(b"\x84\x01\xff")
        return _wrap(0xA9, body)


# ---- decoding -------------------------------------------------------------------------------


@dataclass(slots=True)
class LdapMessage:
    """One decoded response. Which fields are set depends on `op`."""

    message_id: int
    op: int
    result: LdapResult | None = None  # BindResponse, SearchResultDone, ExtendedResponse, ...
    dn: str = ""  # SearchResultEntry
    attributes: list[tuple[str, list[bytes]]] | None = None  # SearchResultEntry
    response_name: str | None = None  # ExtendedResponse
    response_value: bytes | None = None  # ExtendedResponse

    @property
    def is_notice_of_disconnection(self) -> bool:
        return self.message_id == 0 and self.op == EXTENDED_RESPONSE


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at `pos`, which must fit in `end`."""
    if pos + 2 > end:
        raise ProtocolError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ProtocolError("multi-byte tags are not used by LDAP")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise ProtocolError("indefinite length")
        if k > 4 or pos + k > end:
            raise ProtocolError("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    stop = pos + n
    if stop > end:
        raise ProtocolError("truncated element")
    return tag, pos, stop


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    t, start, stop = _header(buf, pos, end)
    if t != tag:
        raise ProtocolError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return start, stop


def _int(buf: bytes, start: int, stop: int) -> int:
    if not 0 < stop - start <= 5:
        raise ProtocolError("bad integer")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _result(buf: bytes, pos: int, end: int) -> tuple[LdapResult, int]:
    s, e = _expect(buf, pos, end, 0x0A)
    code = _int(buf, s, e)
    s, pos = _expect(buf, e, end, 0x04)
    matched = _text(buf[s:pos])
    s, pos = _expect(buf, pos, end, 0x04)
    message = _text(buf[s:pos])
    if pos < end and buf[pos] == 0xA3:  # referral: skipped
        pos = _header(buf, pos, end)[2]
    return LdapResult(code, message, matched), pos


def _entry(msg: LdapMessage, buf: bytes, pos: int, end: int) -> None:
    s, pos = _expect(buf, pos, end, 0x04)
    msg.dn = _text(buf[s:pos])
    s, e = _expect(buf, pos, end, 0x30)
    if e != end:
        raise ProtocolError("trailing data in SearchResultEntry")
    attrs: list[tuple[str, list[bytes]]] = []
    pos = s
    while pos < e:
        ps, pe = _expect(buf, pos, e, 0x30)
        ts, te = _expect(buf, ps, pe, 0x04)
        vs, ve = _expect(buf, te, pe, 0x31)
        if ve != pe:
            raise ProtocolError("trailing data in PartialAttribute")
        values = []
        while vs < ve:
            s2, e2 = _expect(buf, vs, ve, 0x04)
            values.append(buf[s2:e2])
            vs = e2
        attrs.append((_text(buf[ts:te]), values))
        pos = pe
    msg.attributes = attrs


_SHORT_RESULT_OPS = frozenset({BIND_RESPONSE, SEARCH_RESULT_DONE, EXTENDED_RESPONSE})
_RESULT_CACHE: dict[int, LdapResult] = {}  # code -> result without DN or message (immutable)


def parse_message(buf: bytes) -> LdapMessage:
    """Decode the content of one LDAPMessage SEQUENCE (without its outer header)."""
    end = len(buf)
    # Fast path for the answer to nearly every request: a result with empty matchedDN and
    # diagnosticMessage (02 0n <id> | op 07 0a 01 <code> 04 00 04 00), no controls.
    if 12 <= end <= 15 and buf[0] == 0x02 and 1 <= buf[1] <= 4:
        k = 2 + buf[1]
        if (end == k + 9 and buf[k + 1] == 7 and buf[k] in _SHORT_RESULT_OPS
                and buf[k + 2] == 0x0A and buf[k + 3] == 1 and buf[k + 4] < 0x80
                and buf[k + 5 :] == b"\x04\x00\x04\x00" and buf[2] < 0x80):
            code = buf[k + 4]
            result = _RESULT_CACHE.get(code)
            if result is None:
                result = _RESULT_CACHE[code] = LdapResult(code)
            return LdapMessage(int.from_bytes(buf[2:k], "big"), buf[k], result)
    s, e = _expect(buf, 0, end, 0x02)
    message_id = _int(buf, s, e)
    if not 0 <= message_id <= MAX_MESSAGE_ID:
        raise ProtocolError("message id out of range")
    op, pos, op_end = _header(buf, e, end)
    if op_end != end and buf[op_end] != 0xA0:  # only Controls may follow; they are ignored
        raise ProtocolError("unexpected data after protocolOp")
    if op_end != end and _header(buf, op_end, end)[2] != end:
        raise ProtocolError("trailing data after controls")
    msg = LdapMessage(message_id, op)
    if op in _RESULT_OPS:
        msg.result, pos = _result(buf, pos, op_end)
        if op == BIND_RESPONSE and pos < op_end and buf[pos] == 0x87:  # serverSaslCreds
            pos = _header(buf, pos, op_end)[2]
    elif op == SEARCH_RESULT_ENTRY:
        _entry(msg, buf, pos, op_end)
        pos = op_end
    elif op == EXTENDED_RESPONSE:
        msg.result, pos = _result(buf, pos, op_end)
        if pos < op_end and buf[pos] == 0x8A:
            s, pos = _expect(buf, pos, op_end, 0x8A)
            msg.response_name = buf[s:pos].decode("ascii", "replace")
        if pos < op_end and buf[pos] == 0x8B:
            s, pos = _expect(buf, pos, op_end, 0x8B)
            msg.response_value = buf[s:pos]
    elif op in (SEARCH_RESULT_REFERENCE, INTERMEDIATE_RESPONSE):
        pos = op_end  # not used by the gateway: skipped
    else:
        raise ProtocolError(f"unexpected protocolOp 0x{op:02x}")
    if pos != op_end:
        raise ProtocolError(f"trailing data in protocolOp 0x{op:02x}")
    return msg


class Decoder:
    """Incremental framing: feed() whatever the stream delivered, get complete messages.

    A partial message is kept in one bytearray (appends are amortised linear, so a large
    search result arriving in many reads is not copied quadratically) and never holds
    much more memory than its bytes: a list of the reads would cost an object per read,
    some 20 times the message in 2-byte reads, whatever `max_message_size` says.
    """

    __slots__ = ("_buffer", "_need", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._need = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[LdapMessage]:
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._need:
                return []
            data = bytes(self._buffer)
            self._buffer = bytearray()
        out: list[LdapMessage] = []
        pos, n = 0, len(data)
        limit = self.max_message_size
        while pos < n:
            if data[pos] != 0x30:
                raise ProtocolError(f"expected an LDAPMessage SEQUENCE, got 0x{data[pos]:02x}")
            if pos + 2 > n:
                self._stash(data, pos, pos + 2)
                break
            length = data[pos + 1]
            hdr = 2
            if length & 0x80:
                k = length & 0x7F
                if k == 0:
                    raise ProtocolError("indefinite length")
                if k > 4:
                    raise ProtocolError("message too large")
                if pos + 2 + k > n:
                    self._stash(data, pos, pos + 2 + k)
                    break
                length = int.from_bytes(data[pos + 2 : pos + 2 + k], "big")
                hdr += k
            if length > limit:
                raise ProtocolError(f"message of {length} bytes exceeds the {limit} byte limit")
            stop = pos + hdr + length
            if stop > n:
                self._stash(data, pos, stop)
                break
            out.append(parse_message(data[pos + hdr : stop]))
            pos = stop
        return out

    def _stash(self, data: bytes, pos: int, need_end: int) -> None:
        self._buffer = bytearray(memoryview(data)[pos:])
        self._need = need_end - pos


def decode_all(data: bytes, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[LdapMessage]:
    """Decode a buffer that must hold only complete messages (tests, tools)."""
    decoder = Decoder(max_message_size)
    out = decoder.feed(data)
    if decoder.buffered:
        raise ProtocolError("truncated message")
    return out


__all__ = [
    "BIND_RESPONSE",
    "EXTENDED_RESPONSE",
    "NOTICE_OF_DISCONNECTION_OID",
    "SEARCH_RESULT_DONE",
    "SEARCH_RESULT_ENTRY",
    "SEARCH_RESULT_REFERENCE",
    "STARTTLS_OID",
    "WHOAMI_OID",
    "Decoder",
    "LdapMessage",
    "ProtocolError",
    "compile_filter",
    "decode_all",
    "encode_bind_request",
    "encode_extended_request",
    "encode_search_request",
    "encode_starttls_request",
    "encode_unbind_request",
    "parse_message",
]

"""The BER/LDAPv3 codec, byte for byte. ldap3's pyasn1 encoder serves as an independent oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldap3.operation.bind import bind_operation
from ldap3.operation.extended import extended_operation
from ldap3.operation.search import compile_filter as ldap3_compile_filter
from ldap3.operation.search import parse_filter, search_operation
from ldap3.protocol.rfc4511 import (
    BindResponse,
    ExtendedResponse,
    Filter,
    LDAPMessage,
    MessageID,
    PartialAttribute,
    PartialAttributeList,
    ProtocolOp,
    ResultCode,
    SearchResultDone,
    SearchResultEntry,
    SearchResultReference,
    UnbindRequest,
)
from ldap3.utils.asn1 import encode as ldap3_encode
from pyasn1.codec.ber import decoder as ber_decoder

from bridge.ldap import protocol as p
from bridge.ldap.client import LdapResult
from bridge.ldap.escape import escape_filter_value

# ---- oracle helpers -----------------------------------------------------------------------


def oracle_filter(text: str) -> bytes:
    node = parse_filter(text, None, False, False, None, False).elements[0]
    return ldap3_encode(ldap3_compile_filter(node))


def oracle_message(message_id: int, op_name: str, op: object) -> bytes:
    msg = LDAPMessage()
    msg["messageID"] = MessageID(message_id)
    msg["protocolOp"] = ProtocolOp().setComponentByName(op_name, op)
    return ldap3_encode(msg)


def decode_filter(data: bytes) -> Filter:
    value, rest = ber_decoder.decode(data, asn1Spec=Filter())
    assert rest == b""
    return value


def result_fields(op: object, code: int, diag: str = "", matched: str = "") -> object:
    op["resultCode"] = ResultCode(code)  # type: ignore[index]
    op["matchedDN"] = matched  # type: ignore[index]
    op["diagnosticMessage"] = diag  # type: ignore[index]
    return op


# ---- requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("message_id", [1, 127, 128, 255, 256, 65535, 2**31 - 1])
@pytest.mark.parametrize(("name", "password"), [
    ("uid=alice,ou=people,dc=example,dc=org", "wonderland-ldap"),
    ("uid=dave,ou=people,dc=example,dc=org", "p&ss+w%rd #ünï€"),
    ("cn=" + "x" * 300, "y" * 200),  # long-form lengths
])
def test_bind_request_matches_ldap3(message_id: int, name: str, password: str) -> None:
    request = bind_operation(3, "SIMPLE", name, password)
    expected = oracle_message(message_id, "bindRequest", request)
    assert p.encode_bind_request(message_id, name, password) == expected


def test_anonymous_bind_and_unbind_bytes() -> None:
    assert p.encode_bind_request(1, "", b"").hex() == "300c020101600702010304008000"
    assert p.encode_unbind_request(3).hex() == "30050201034200"
    assert p.encode_unbind_request(3) == oracle_message(3, "unbindRequest", UnbindRequest())


def test_starttls_and_extended_requests_match_ldap3() -> None:
    assert p.encode_starttls_request(1) == oracle_message(
        1, "extendedReq", extended_operation(p.STARTTLS_OID))
    assert p.encode_extended_request(9, p.WHOAMI_OID, b"\x01\x02") == oracle_message(
        9, "extendedReq", extended_operation(p.WHOAMI_OID, b"\x01\x02", no_encode=True))


def test_message_id_range() -> None:
    for bad in (0, -1, 2**31):
        with pytest.raises(ValueError, match="message id"):
            p.encode_bind_request(bad, "", b"")


@pytest.mark.parametrize(("scope", "flt", "attrs", "size", "time"), [
    (2, "(uid=alice)", ["telephoneNumber", "displayName", "mail"], 0, 0),
    (0, "(objectClass=*)", [], 1, 5),
    (1, "(&(objectClass=inetOrgPerson)(|(uid=a*)(mail=*@example.org)))", ["1.1"], 500, 3600),
    (2, "(member=cn=Smith\\5c2C John,ou=people,dc=example,dc=org)", ["cn"], 2**31 - 1, 128),
    (2, "(cn=" + "a" * 400 + ")", ["x" * 200] * 3, 0, 0),
])
def test_search_request_matches_ldap3(scope: int, flt: str, attrs: list[str], size: int,
                                      time: int) -> None:
    base = "ou=people,dc=example,dc=org"
    req = search_operation(base, flt, scope, 0, attrs, size, time, False, False, False)
    expected = oracle_message(77, "searchRequest", req)
    assert p.encode_search_request(77, base, scope, flt, attrs, size_limit=size,
                                   time_limit=time) == expected
    # a precompiled filter gives the same bytes
    assert p.encode_search_request(77, base, scope, p.compile_filter(flt), attrs,
                                   size_limit=size, time_limit=time) == expected


def test_search_request_rejects_bad_scope_and_limits() -> None:
    with pytest.raises(ValueError, match="scope"):
        p.encode_search_request(1, "", 3, "(a=b)")
    with pytest.raises(ValueError, match="limits"):
        p.encode_search_request(1, "", 2, "(a=b)", size_limit=-1)
    with pytest.raises(ValueError, match="invalid filter"):
        p.encode_search_request(1, "", 2, "a=b")


# ---- filters -------------------------------------------------------------------------------

ORACLE_FILTERS = [
    "(uid=alice)",
    "(&(objectClass=person)(|(uid=a)(mail=b*)))",
    "(!(cn=x))",
    "(!(&(a=1)(!(b=2))))",
    "(cn=*)",
    "(cn=a*)",
    "(cn=*c)",
    "(cn=*b*)",
    "(cn=a*b*c*d)",
    "(cn;lang-de=x)",
    "(2.5.4.3=x)",
    "(uidNumber>=1000)",
    "(uidNumber<=1000)",
    "(cn~=jon)",
    "(cn=)",
    "(memberOf:1.2.840.113556.1.4.1941:=CN=Voip,OU=Groups,DC=example,DC=org)",
    "(cn:caseExactMatch:=Alice)",
    "(cn:=x)",
    "(cn=\\2a\\28\\29\\5c\\00)",
    "(cn=\\2A\\5C)",
    "(cn=zoë€)",
    "(cn=\\c3\\a9\\ff)",
    "(labeledURI=sip:101@pbx.example.org SIP)",
    "(cn=a\\2a*\\29*b)",
    "(|(member=uid=alice,ou=people,dc=example,dc=org)(uniqueMember=x)(memberUid=alice))",
]


@pytest.mark.parametrize("text", ORACLE_FILTERS)
def test_filter_matches_ldap3(text: str) -> None:
    assert p.compile_filter(text) == oracle_filter(text)


@pytest.mark.parametrize(("text", "expected"), [
    # dnAttributes TRUE is 0xFF (DER; ldap3 writes 0x01, equally valid BER)
    ("(cn:dn:2.5.13.5:=John)", "a9178108322e352e31332e358202636e83044a6f686e8401ff"),
    ("(:dn:2.5.13.5:=John)", "a9138108322e352e31332e3583044a6f686e8401ff"),
    ("(cn:DN:=x)", "a90a8202636e8301788401ff"),
    ("(:caseExactMatch:=x)", "a913810e636173654578616374" "4d61746368830178"),
    ("(uid=a)", "a30804037569640401" "61"),
    ("(uid=*)", "8703756964"),
    ("(uid=a*b*c)", "a410040375696430" "09800161810162820163"),
    ("(!(uid=*))", "a2058703756964"),
])
def test_filter_known_bytes(text: str, expected: str) -> None:
    assert p.compile_filter(text).hex() == expected


def test_extensible_match_structure_via_ldap3_decoder() -> None:
    f = decode_filter(p.compile_filter("(memberOf:dn:1.2.840.113556.1.4.1941:=CN=a\\2cb)"))
    m = f["extensibleMatch"]
    assert str(m["matchingRule"]) == "1.2.840.113556.1.4.1941"
    assert str(m["type"]) == "memberOf"
    assert bytes(m["matchValue"]) == b"CN=a,b"
    assert bool(m["dnAttributes"]) is True


def test_escapes_become_octets() -> None:
    f = decode_filter(p.compile_filter("(cn=\\2a\\28\\29\\5c\\00ü)"))
    assert bytes(f["equalityMatch"]["assertionValue"]) == b"*()\\\x00\xc3\xbc"


@pytest.mark.parametrize("value", ["*", ")(uid=*", "\\", "\0", "alice)(|(uid=*", "a*b", "(",
                                   "\\2a", "zoë", "#ops+dev,team=1", "o'brien"])
def test_escape_filter_value_keeps_one_equality(value: str) -> None:
    f = decode_filter(p.compile_filter(f"(uid={escape_filter_value(value)})"))
    assert str(f.getName()) == "equalityMatch"
    assert bytes(f["equalityMatch"]["assertionValue"]) == value.encode()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_escape_filter_value_property(value: str) -> None:
    f = decode_filter(p.compile_filter(f"(cn={escape_filter_value(value)})"))
    assert str(f.getName()) == "equalityMatch"
    assert bytes(f["equalityMatch"]["assertionValue"]) == value.encode()


MALFORMED = [
    "", "uid=x", "(uid=x", "(uid=x))", "((uid=x))", "(uid=x)(uid=y)", " (uid=x)", "(uid=x) ",
    "( uid=x)", "(u id=x)", "(&)", "(|)", "(!)", "(!(a=b)(c=d))", "(&(a=b)c=d)",
    "(uid=a\\2)", "(uid=a\\zz)", "(uid=a\\)", "(uid=\\g0)", "(uid=**)", "(uid=a**b)",
    "(=x)", "(1uid=x)", "(uid_x=y)", "(-uid=x)", "(uid;=x)", "(01.2=x)",
    "(cn~x)", "(cn>x)", "(cn<x)", "(cn>=a*)", "(cn<=*)", "(cn~=*)",
    "(cn:=a*)", "(:=x)", "(:dn:=x)", "(cn:dn:rule:extra:=x)", "(cn:bad rule:=x)", "(cn:x)",
    "(cn::=x)", "(cn:dn:=x*)", "(uid=a(b)", "(uid=a\x00b)", "(uid=\ud800)", "(uid)", "(uid",
    "(", ")", "(&(uid=a)", "(!uid=a)",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_filters_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="invalid filter"):
        p.compile_filter(text)


def test_filter_nesting_is_bounded() -> None:
    ok = "(!" * 60 + "(a=b)" + ")" * 60
    assert p.compile_filter(ok)
    deep = "(!" * 10_000 + "(a=b)" + ")" * 10_000
    with pytest.raises(ValueError, match="nested too deeply"):
        p.compile_filter(deep)


def test_filter_must_be_str() -> None:
    with pytest.raises(TypeError):
        p.compile_filter(b"(a=b)")  # type: ignore[arg-type]


# ---- responses --------------------------------------------------------------------------


def bind_response(mid: int, code: int, diag: str = "", matched: str = "") -> bytes:
    return oracle_message(mid, "bindResponse", result_fields(BindResponse(), code, diag, matched))


def search_entry(mid: int, dn: str, attrs: dict[str, list[bytes]]) -> bytes:
    entry = SearchResultEntry()
    entry["object"] = dn
    pal = PartialAttributeList()
    for i, (name, values) in enumerate(attrs.items()):
        pa = PartialAttribute()
        pa["type"] = name
        for j, v in enumerate(values):
            pa["vals"][j] = v
        pal[i] = pa
    entry["attributes"] = pal
    return oracle_message(mid, "searchResEntry", entry)


def search_done(mid: int, code: int, diag: str = "") -> bytes:
    return oracle_message(mid, "searchResDone", result_fields(SearchResultDone(), code, diag))


def search_ref(mid: int) -> bytes:
    ref = SearchResultReference()
    ref[0] = "ldap://other.example.org/dc=example,dc=org"
    return oracle_message(mid, "searchResRef", ref)


def extended_response(mid: int, code: int, name: str | None = None,
                      value: bytes | None = None, diag: str = "") -> bytes:
    resp = result_fields(ExtendedResponse(), code, diag)
    if name is not None:
        resp["responseName"] = name  # type: ignore[index]
    if value is not None:
        resp["responseValue"] = value  # type: ignore[index]
    return oracle_message(mid, "extendedResp", resp)


def test_decode_bind_responses() -> None:
    data = bind_response(1, 0) + bind_response(2, 49, "bad ünï", "dc=example,dc=org")
    m1, m2 = p.decode_all(data)
    assert (m1.message_id, m1.op, m1.result) == (1, p.BIND_RESPONSE, LdapResult(0))
    assert m2.result == LdapResult(49, "bad ünï", "dc=example,dc=org")


@pytest.mark.parametrize("mid", [1, 127, 128, 65535, 2**31 - 1])
@pytest.mark.parametrize("code", [0, 49, 53, 127, 128, 4096])
def test_short_results_fast_path_agrees(mid: int, code: int) -> None:
    data = bind_response(mid, code) + search_done(mid, code) + extended_response(mid, code)
    assert p.decode_all(data) == [p.LdapMessage(mid, op, LdapResult(code)) for op in
                                  (p.BIND_RESPONSE, p.SEARCH_RESULT_DONE, p.EXTENDED_RESPONSE)]


def test_decode_search_sequence() -> None:
    attrs = {"telephoneNumber": [b"105", b"+49 30 5550105"], "displayName": ["Zoë".encode()],
             "jpegPhoto": [bytes(range(256)) * 300], "empty": []}
    data = (search_entry(5, "uid=zoë,ou=people,dc=example,dc=org", attrs) + search_ref(5)
            + search_done(5, 4, "size limit exceeded"))
    entry, ref, done = p.decode_all(data)
    assert entry.op == p.SEARCH_RESULT_ENTRY
    assert entry.dn == "uid=zoë,ou=people,dc=example,dc=org"
    assert entry.attributes == list(attrs.items())
    assert ref.op == p.SEARCH_RESULT_REFERENCE
    assert done.op == p.SEARCH_RESULT_DONE
    assert done.result == LdapResult(4, "size limit exceeded")


def test_decode_extended_and_notice_of_disconnection() -> None:
    whoami, notice = p.decode_all(
        extended_response(3, 0, value=b"dn:uid=alice")
        + extended_response(0, 52, p.NOTICE_OF_DISCONNECTION_OID, diag="shutting down"))
    assert whoami.response_value == b"dn:uid=alice" and whoami.response_name is None
    assert not whoami.is_notice_of_disconnection
    assert notice.is_notice_of_disconnection
    assert notice.response_name == p.NOTICE_OF_DISCONNECTION_OID
    assert notice.result == LdapResult(52, "shutting down")


def test_invalid_utf8_in_dn_and_diagnostic_is_replaced() -> None:
    raw = bind_response(1, 49, "x").replace(b"\x04\x01x", b"\x04\x01\xff")
    (m,) = p.decode_all(raw)
    assert m.result is not None and m.result.message == "\ufffd"


def test_decoder_byte_by_byte_and_in_chunks() -> None:
    stream = (bind_response(1, 0)
              + search_entry(2, "cn=big", {"data": [b"x" * 70_000, b"y" * 300]})
              + search_done(2, 0))
    expected = p.decode_all(stream)
    for size in (1, 2, 3, 7, 64, 1000, 65536):
        decoder = p.Decoder()
        got: list[p.LdapMessage] = []
        for i in range(0, len(stream), size):
            got += decoder.feed(stream[i : i + size])
        assert got == expected, size
        assert decoder.buffered == 0


def test_large_message_in_many_chunks_is_not_quadratic() -> None:
    data = search_entry(2, "cn=big", {"data": [b"z" * (8 * 1024 * 1024)]})
    decoder = p.Decoder()
    out: list[p.LdapMessage] = []
    for i in range(0, len(data), 4096):  # 2048 chunks
        out += decoder.feed(data[i : i + 4096])
    assert len(out) == 1 and out[0].attributes is not None
    assert len(out[0].attributes[0][1][0]) == 8 * 1024 * 1024


def test_non_minimal_long_form_lengths_are_accepted() -> None:
    # Active Directory writes 4-byte lengths everywhere
    msg = bytes.fromhex("3084000000100201076184000000070a010004000400")
    (m,) = p.decode_all(msg)
    assert (m.message_id, m.result) == (7, LdapResult(0))


def test_controls_after_protocol_op_are_ignored() -> None:
    body = bytes.fromhex("020101" "61070a0100040004 00".replace(" ", ""))
    control = bytes.fromhex("a00f300d040b312e322e3834302e313233")
    data = bytes((0x30, len(body) + len(control))) + body + control
    (m,) = p.decode_all(data)
    assert m.result == LdapResult(0)


@pytest.mark.parametrize(("hexdata", "why"), [
    ("3080020101610700", "indefinite"),
    ("31050201014200", "SEQUENCE"),
    ("3085000000000100", "too large"),
    ("3006020101610700", "truncated"),  # inner BindResponse claims 7 bytes, only 1 there
    ("300c0201016107020100040004000000", "expected tag"),  # resultCode is not ENUMERATED
    ("300e0201016109" "0a010004000400" "0500", "trailing"),
    ("300c02010162070a010004000400", "unexpected protocolOp"),  # modify request 0x62
    ("300c0200" "61080a01000400040000", "bad integer"),  # empty message id
    ("300d020101" "1f0107" "0a010004000400", "multi-byte"),
    ("300c020101610701010004000400", "expected tag"),  # resultCode is a BOOLEAN
    ("300e020101" "61070a010004000400" "0500", "unexpected data after protocolOp"),
])
def test_malformed_responses_raise(hexdata: str, why: str) -> None:
    with pytest.raises(p.ProtocolError, match=why):
        p.decode_all(bytes.fromhex(hexdata))


def test_oversized_message_is_refused_from_its_header() -> None:
    decoder = p.Decoder(max_message_size=1024)
    with pytest.raises(p.ProtocolError, match="exceeds"):
        decoder.feed(bytes.fromhex("30820401"))  # 1025 bytes announced: refused before reading
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.Decoder().feed(bytes.fromhex("308401000001"))  # 16 MiB + 1 with the default cap


def test_truncated_stream_is_kept_until_complete() -> None:
    data = bind_response(1, 0)
    decoder = p.Decoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.buffered == len(data) - 1
    with pytest.raises(p.ProtocolError, match="truncated"):
        p.decode_all(data[:-1])
    assert decoder.feed(data[-1:])[0].result == LdapResult(0)


# ---- filters parsed once per shape (issue 16) --------------------------------------------


def _same(text: str) -> None:
    """compile_filter_cached gives compile_filter's bytes, or its exact error; twice (the
    second time from the cached shape)."""
    try:
        expected: bytes | str = p.compile_filter(text)
    except ValueError as exc:
        expected = str(exc)
    for _ in range(2):
        try:
            got: bytes | str = p.compile_filter_cached(text)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, text


@pytest.mark.parametrize("text", ORACLE_FILTERS + MALFORMED)
def test_cached_filters_match_compile_filter(text: str) -> None:
    _same(text)


_FILTER_ATOMS = st.sampled_from(["uid", "cn", "2.5.4.3", "cn;x-y", "", "1a", "a:dn", "a:dn:",
                                 "a:1.2.3", ":dn:1.2", "objectClass"])
_FILTER_OPS = st.sampled_from(["=", "~=", ">=", "<=", ":=", ":dn:=", "=*", "<", "==", ""])
_FILTER_VALUES = st.one_of(
    st.text(max_size=8),                                            # raw, often malformed
    st.text(max_size=8).map(escape_filter_value),                   # as the gateway sends
    st.sampled_from(["*", "a*b", "\\2a", "\\zz", "\0", "a=b", "x:=y", "(", "", "\\5c\\"]),
)


@st.composite
def _filters(draw: st.DrawFn, depth: int = 0) -> str:
    if depth < 3 and draw(st.booleans()):
        op = draw(st.sampled_from(["&", "|", "!"]))
        kids = draw(st.lists(_filters(depth + 1), min_size=0 if op != "!" else 1, max_size=3))
        return f"({op}{''.join(kids)})"
    return f"({draw(_FILTER_ATOMS)}{draw(_FILTER_OPS)}{draw(_FILTER_VALUES)})"


@given(_filters())
def test_cached_filters_match_compile_filter_property(text: str) -> None:
    _same(text)


def test_one_shape_many_values_shares_one_template() -> None:
    p._TEMPLATES.clear()
    for name in ("alice", "bob", "a*b", "x)(uid=*", "zoë"):
        text = f"(&(objectClass=person)(uid={escape_filter_value(name)}))"
        assert p.compile_filter_cached(text) == p.compile_filter(text)
    assert len(p._TEMPLATES) == 1


def _filter_reference(value: str) -> str:
    """escape_filter_value's rule, one character at a time (as before its fast path)."""
    last = len(value) - 1
    return "".join("".join(f"\\{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
                   if ch in "\\*()\x00" or ch < " " or ch == "\x7f"
                   or (ch == " " and i in (0, last)) else ch for i, ch in enumerate(value))


def _dn_reference(value: str) -> str:
    last = len(value) - 1
    return "".join("".join(f"\\{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
                   if ch in '"+,;<>\\=\x00' or ch < " " or ch == "\x7f"
                   or (i == 0 and ch in "# ") or (i == last and ch == " ")
                   else ch for i, ch in enumerate(value))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
       | st.text(alphabet=" #*()\\\x00\x01\x7f=+,;<>\"ab", max_size=8))
def test_escapers_fast_path_changes_nothing(value: str) -> None:
    from bridge.ldap.escape import escape_dn_value

    assert escape_filter_value(value) == _filter_reference(value)
    assert escape_dn_value(value) == _dn_reference(value)

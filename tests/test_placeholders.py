"""bridge.placeholders: one syntax, and every escaper checked by parsing its output back.

Each property places an arbitrary value (any code point, lone surrogates and
the destination's specials included) where its escaper says, parses the result
with that destination's own parser (our LDAP DN parser and BER filter compiler,
urllib, h11 for a header on the wire, json, SQLite) and requires the original
value back, or a refusal that names the field and not the value.
"""

from __future__ import annotations

import json
import posixpath
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import h11
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge import placeholders as P
from bridge.breaker import CLOSED, CircuitBreaker
from bridge.errors import InternalError
from bridge.ldap.escape import escape_dn_value, is_dn, parse_dn
from bridge.ldap.protocol import compile_filter
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.passwords import hash_password
from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway

X = P.Field("identity", "x")
ONLY_X = P.parse("{identity.x}")
SPECIALS = [*"\x00\r\n\t \\*()/.,+=#;<>\"'&?%{}:", "..", "\u2003", "\ud800", "ü", "€"]
# Any code point, lone surrogates included, with the specials of every destination often.
values = st.lists(st.one_of(st.sampled_from(SPECIALS),
                            st.characters(blacklist_categories=())), max_size=12).map("".join)
PROPERTY = settings(max_examples=300, deadline=None)


def lookup_of(value: Scalar) -> P.Lookup:
    return P.Values(Credentials("typed", "pw"), Identity("canonical", {"x": value})).lookup


def place(escaper: P.Escaper, value: str) -> str | None:
    """The escaped value, or None when refused (the refusal checked to name only the field)."""
    try:
        return ONLY_X.render(lookup_of(value), escaper)
    except P.UnsafeValue as exc:
        assert exc.field == X and "{identity.x}" in exc.detail
        assert isinstance(exc, InternalError)
        return None


def encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- the syntax ----------------------------------------------------------------------


@given(st.text())
def test_any_text_with_doubled_braces_is_that_literal(text: str) -> None:
    parsed = P.parse(text.replace("{", "{{").replace("}", "}}"))
    assert parsed.literal == text and parsed.fields == ()


def test_fields_and_literals_in_order() -> None:
    parsed = P.parse("sip:{account.user}@{account.domain}{{x}}")
    assert parsed.parts == ("sip:", P.Field("account", "user"), "@",
                            P.Field("account", "domain"), "{x}")
    assert P.parse("{identity.x}").single == X and P.parse("a{identity.x}").single is None


@pytest.mark.parametrize(("text", "allow", "aliases", "message"), [
    ("{", P.SCOPES, None, "unmatched '{' (write {{ for a literal brace)"),
    ("a}", P.SCOPES, None, "unmatched '}' (write }} for a literal brace)"),
    ("{user}", P.SCOPES, None, "placeholder {user} must be one of {identity.NAME}, "
                               "{account.NAME}, {login.NAME} (write {{ and }} for literal braces)"),
    ("{login.token}", P.SCOPES, None, "placeholder {login.*} must be {login.username} or "
                                      "{login.password}"),
    ("{account.x}", ("identity", "login"), None,
     "{account.x} is not available here (only {identity.*}, {login.*})"),
    ("{login.password}", ("login.username",), {"username": P.Field("login", "username")},
     "{login.password} is not available here (only {login.username}, {username})"),
    ("{uid}", ("login.username",), {"username": P.Field("login", "username")},
     "unknown placeholder {uid}; allowed: {login.username}, {username} (write {{ and }} for "
     "literal braces)"),
    ("{x}", (), None, "{x}: placeholders are not allowed here"),
])
def test_problems_name_the_placeholder_and_what_is_allowed(text, allow, aliases,
                                                           message) -> None:
    with pytest.raises(P.TemplateError) as caught:
        P.parse(text, allow, aliases)
    assert str(caught.value).startswith(message)


def test_an_alias_is_its_field() -> None:
    aliases = {"username": P.Field("login", "username"), "dn": P.Field("identity", "dn")}
    parsed = P.parse("uid={username},{dn}", ("login.username", "identity"), aliases)
    assert parsed.fields == (P.Field("login", "username"), P.Field("identity", "dn"))
    assert parsed == P.parse("uid={login.username},{identity.dn}", ("login", "identity"))


def test_values_come_from_their_scope_and_a_missing_one_says_which() -> None:
    values = P.Values(Credentials("typed", "pw"), Identity("canon", {"n": 7}),
                      Account({"line": "1001"}))
    text = P.parse("{login.username} {identity.username} {identity.n} {account.line} "
                   "{login.password}")
    assert text.render(values.lookup, P.PLAIN) == "typed canon 7 1001 pw"
    assert P.parse("{identity.n}").value(values.lookup, P.JSON) == 7  # typed
    for missing in ("{identity.nope}", "{account.nope}"):
        with pytest.raises(P.MissingField, match=re.escape(missing)):
            P.parse(missing).render(values.lookup, P.PLAIN)
    with pytest.raises(P.MissingField):  # no account yet (a login request)
        P.parse("{account.line}").render(P.Values(Credentials("a", "b")).lookup, P.PLAIN)


# -- escapers: placed, parsed back ---------------------------------------------------


@PROPERTY
@given(values)
@example("\x00")
@example(" #lead, trail ")
def test_dn_value(value: str) -> None:
    placed = place(P.DN_VALUE, value)
    if placed is None:
        assert "\x00" in value or not encodable(value)
        return
    dn = f"cn={placed},ou=people,dc=example"
    assert is_dn(dn)
    assert parse_dn(dn) == [[("cn", value)], [("ou", "people")], [("dc", "example")]]


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(["cn", "ou", "uid", "dc"]), values), min_size=1,
                max_size=4))
def test_a_whole_dn_is_placed_as_it_is_and_cannot_grow(rdns: list[tuple[str, str]]) -> None:
    if any("\x00" in v or not encodable(v) for _, v in rdns):
        return
    dn = ",".join(f"{t}={escape_dn_value(v)}" for t, v in rdns)
    assert place(P.DN, dn) == dn
    assert parse_dn(f"ou=phones,{dn}") == [[("ou", "phones")]] + [[rdn] for rdn in rdns]


@pytest.mark.parametrize("text", ["", "alice", "uid=a,b", "cn=x\x00,dc=y", 'cn="x', "cn=a\\"])
def test_what_is_not_a_dn_is_refused_as_a_dn(text: str) -> None:
    assert place(P.DN, text) is None


def _assertion_value(ber: bytes) -> bytes:
    """The value of an equalityMatch filter `(cn=...)` in BER."""
    assert ber[0] == 0xA3
    pos = 2 if ber[1] < 0x80 else 2 + (ber[1] & 0x7F)
    assert ber[pos:pos + 4] == b"\x04\x02cn"
    pos += 4
    assert ber[pos] == 0x04
    size, pos = ber[pos + 1], pos + 2
    if size >= 0x80:
        width = size & 0x7F
        size, pos = int.from_bytes(ber[pos:pos + width], "big"), pos + width
    assert pos + size == len(ber)
    return ber[pos:]


@PROPERTY
@given(values)
@example("*)(uid=*")
@example(" alice ")
def test_filter_value(value: str) -> None:
    placed = place(P.FILTER, value)
    if placed is None:
        assert not encodable(value)
        return
    # the strict RFC 4515 compiler the asyncio client sends: one equality, the exact octets
    assert _assertion_value(compile_filter(f"(cn={placed})")) == value.encode("utf-8")
    assert not re.search(r"[()*\x00]", placed)


@PROPERTY
@given(values)
@example("../x")
@example("a\\..\\b")
@example("a/b?c=d#e")
def test_path_segment(value: str) -> None:
    segment = P.parse("{identity.x}")
    try:
        placed = P.path_segment(segment, lookup_of(value))
    except P.UnsafeValue as exc:
        assert exc.field == X
        pieces = re.split(r"[/\\]", value)
        assert value == "" or "." in pieces or ".." in pieces or not encodable(value)
        return
    url = httpx.URL(f"http://h/api/{placed}/accounts")
    assert url.raw_path.count(b"/") == 3  # one segment, whatever the value
    assert unquote(url.raw_path.decode("ascii").split("/")[2], errors="strict") == value
    # a server that decodes %2F and %5C before resolving dot segments still stays below /api/
    decoded = unquote(url.raw_path.decode("ascii")).replace("\\", "/")
    assert posixpath.normpath(decoded).startswith("/api/")


@PROPERTY
@given(values)
def test_query_and_form_values(value: str) -> None:
    for escaper in (P.QUERY, P.FORM):
        placed = place(escaper, value)
        if placed is None:
            assert not encodable(value)
            continue
        assert parse_qsl(f"a=1&k={placed}&b=2", keep_blank_values=True, errors="strict") == [
            ("a", "1"), ("k", value), ("b", "2")]
        if escaper is P.QUERY:
            assert httpx.URL(f"http://h/p?k={placed}").params["k"] == value


def _through_h11(header: bytes) -> bytes:
    """The header sent by an HTTP/1.1 client and read back by a server (h11, httpx's parser)."""
    client = h11.Connection(h11.CLIENT)
    wire = client.send(h11.Request(method="GET", target="/",
                                   headers=[("Host", "h"), ("X-Value", header)]))
    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    return dict(event.headers)[b"x-value"]


@PROPERTY
@given(values)
@example("evil\r\nX-Admin: 1")
@example("tab\tinside")
def test_header_value(value: str) -> None:
    template = P.parse("a {identity.x} z")
    try:
        placed = P.header_value(template, lookup_of(value))
    except P.UnsafeValue as exc:
        assert exc.field == X
        assert re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value) or not encodable(value)
        return
    assert _through_h11(placed).decode("utf-8") == f"a {value} z"


def test_a_header_value_loses_only_the_spaces_http_ignores() -> None:
    assert P.header_value(ONLY_X, lookup_of(" \ttoken\t ")) == b"token"
    assert _through_h11(b"token") == b"token"


@PROPERTY
@given(st.one_of(values, st.integers(), st.booleans()))
def test_json_value(value: Scalar) -> None:
    try:
        placed = ONLY_X.value(lookup_of(value), P.JSON)
        text = P.parse("<{identity.x}>").value(lookup_of(value), P.JSON)
    except P.UnsafeValue:
        assert isinstance(value, str) and not encodable(value)
        return
    body = json.dumps({"v": placed, "t": text}, ensure_ascii=False).encode("utf-8")
    assert json.loads(body) == {"v": value, "t": f"<{P.text_of(value)}>"}
    assert type(json.loads(body)["v"]) is type(value)  # a lone field keeps its type


# -- SQL -----------------------------------------------------------------------------


def test_to_sql_numbers_each_field_once_in_order() -> None:
    template = P.parse("SELECT a FROM t WHERE u = {identity.username} AND l = {login.username} "
                       "OR v = {identity.username}")
    sql = P.to_sql(template)
    assert sql.text == "SELECT a FROM t WHERE u = :p0 AND l = :p1 OR v = :p0"
    assert sql.params == {"p0": P.Field("identity", "username"),
                          "p1": P.Field("login", "username")}
    escaped = P.to_sql(P.parse("SELECT 'a:b', x::text FROM t WHERE u = {login.username}"),
                       literal=lambda s: s.replace(":", "\\:"))
    assert escaped.text == "SELECT 'a\\:b', x\\:\\:text FROM t WHERE u = :p0"


def test_a_field_inside_quotes_is_refused() -> None:
    with pytest.raises(P.TemplateError, match=r"\{identity\.x\} is inside quotes"):
        P.to_sql(P.parse("SELECT a FROM t WHERE u = '{identity.x}'"))
    assert P.to_sql(P.parse("SELECT 'it''s' FROM t WHERE u = {identity.x}")).params


@PROPERTY
@given(st.one_of(values, st.integers(min_value=-2**63, max_value=2**63 - 1)))
def test_sql_parameters_are_data(value: Scalar) -> None:
    sql = P.to_sql(P.parse("SELECT {identity.x}, typeof({identity.x}), 'lit'"))
    try:
        params = sql.bind(lookup_of(value))
    except P.UnsafeValue as exc:
        assert exc.field == X
        assert isinstance(value, str) and ("\x00" in value or not encodable(value))
        return
    with sqlite3.connect(":memory:") as conn:
        row = conn.execute(sql.text, params).fetchone()
    conn.close()
    assert row == (value, "text" if isinstance(value, str) else "integer", "lit")


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(("escaper", "bad"), [
    (P.DN_VALUE, "\x00"), (P.HEADER, "\r\n"), (P.HEADER, "\x7f"), (P.PLAIN, "\ud800"),
    (P.QUERY, "\udfff"), (P.SQL_PARAMETER, "\x00"),
])
def test_a_refusal_names_the_field_and_the_place_never_the_value(escaper, bad) -> None:
    value = f"secret-{bad}-value"
    with pytest.raises(P.UnsafeValue) as caught:
        ONLY_X.render(lookup_of(value), escaper)
    assert caught.value.detail.startswith(f"placeholder: the value of {{identity.x}} cannot be "
                                          f"placed in {escaper.where} (")
    assert "secret" not in caught.value.detail and caught.value.__cause__ is None
    assert caught.value.__context__ is None  # a UnicodeEncodeError would carry the text


def test_an_unsafe_value_gives_the_breaker_no_verdict() -> None:
    breaker = CircuitBreaker("backend", failure_threshold=1, cooldown=60)
    for _ in range(3):
        with pytest.raises(P.UnsafeValue), breaker.guard():
            P.path_segment(ONLY_X, lookup_of(".."))
    assert breaker.state == CLOSED and breaker.failures == 0


# -- end to end: a backend's value that cannot be placed is a 500 ---------------------


class _Api(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        _Api.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = json.dumps({"accounts": [{"sip_user": "1001", "sip_password": "Sip-Pw-1001",
                                         "domain": "sip.example.com"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


USERS = {  # name: (customer, team): what the users file (the authenticator) returns
    "fine": ("c-1", "ops"),
    "dots": ("..", "ops"),
    "crlf": ("c-3", "ops\r\nX-Admin: 1"),
}
PASSWORD = "Pl4ceholder-pw"
INTERNAL = "Provisioning failed because of a server error. Please try again later."


def test_a_value_that_cannot_be_placed_is_a_500_through_the_gateway(api: str,
                                                                     tmp_path: Path) -> None:
    hashed = hash_password(PASSWORD, 10)
    (tmp_path / "users.toml").write_text("".join(
        f'[users.{name}]\npassword = "{hashed}"\ncustomer = {json.dumps(customer)}\n'
        f'team = {json.dumps(team)}\n' for name, (customer, team) in USERS.items()))
    config = tmp_path / "config.toml"
    config.write_text(f"""
[auth]
type = "file"
path = "users.toml"

[source]
type = "http"
url = "{api}/customers/{{identity.customer}}/lines"
accounts_path = "accounts"
[source.headers]
X-Team = "{{identity.team}}"

[mapping.account]
username = "{{account.sip_user}}"
password = "{{account.sip_password}}"
SIP_domain = "{{account.domain}}"
""")
    with Gateway(config, tmp_path) as gw:
        answers = {name: httpx.get(gw.base_url + "/provision", timeout=10,
                                   params={"user": name, "password": PASSWORD})
                   for name in USERS}
        log = gw.output()
    assert answers["fine"].status_code == 200, answers["fine"].text
    assert parse_config(answers["fine"].content)["accounts"][0]["username"] == "1001"
    for name in ("dots", "crlf"):
        assert answers[name].status_code == 500, answers[name].text
        assert parse_error(answers[name].content) == INTERNAL
    assert [(path, headers["x-team"]) for path, headers in _Api.seen] == [
        ("/customers/c-1/lines", "ops")]  # the other two were never sent
    logged = [line for line in log.splitlines() if "UnsafeValue" in line]
    assert len(logged) == 2
    assert "the value of {identity.customer} cannot be placed in a URL path segment" in logged[0]
    assert "the value of {identity.team} cannot be placed in a header value" in logged[1]
    assert "X-Admin" not in log and "Admin" not in "".join(logged)

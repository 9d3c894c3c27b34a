"""Property tests: whatever arrives, the answer is a valid configuration or an error document."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import create_app
from bridge.config import Section
from bridge.errors import BadRequest, InternalError
from bridge.mapping import ConfigMapping
from bridge.models import Account, Credentials, Identity
from bridge.params import QuerySettings, credentials_from_query
from bridge.passwords import hash_password
from bridge.settings import from_dict
from bridge.zoiper.document import parse_config, parse_error, render_config
from bridge.zoiper.schema import SchemaError

# Every code point, lone surrogates included: backends do hand those over.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40)
SCALARS = st.one_of(ANY_TEXT, st.integers(-(2**40), 2**40), st.booleans())


@given(st.binary(max_size=300), st.booleans())
def test_query_parser_returns_credentials_or_bad_request(raw, plus_space):
    settings = QuerySettings(plus="space" if plus_space else "literal")
    try:
        creds = credentials_from_query(raw, settings)
    except BadRequest:
        return
    assert creds.username and creds.password


@given(ANY_TEXT.filter(bool), ANY_TEXT.filter(bool))
def test_encoded_credentials_round_trip(username, password):
    raw = f"user={quote(username, safe='', errors='surrogatepass')}" \
          f"&password={quote(password, safe='', errors='surrogatepass')}"
    try:
        creds = credentials_from_query(raw.encode(), QuerySettings())
    except BadRequest:
        # only for what the parser refuses on purpose: controls, lone surrogates (not UTF-8)
        assert any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF
                   for c in username + password)
        return
    assert (creds.username, creds.password) == (username, password)


MAPPING = ConfigMapping.from_config(Section({
    "account": {
        "name": "{identity.displayName} {account.name}",
        "username": "{account.user}",
        "password": "{login.password}",
        "SIP_domain": "{account.domain}",
        "SIP_transport_type": "{account.transport}",
        "SIP_keep_alive_timeout": "{account.keepalive}",
        "register_on_startup": "{account.register}",
        "stun": {"stun_port": "{account.stun_port}"},
        "extra": {"SIP_future": "{account.name}"},
    },
}))


@given(
    st.fixed_dictionaries({}, optional={
        "name": SCALARS, "user": SCALARS, "domain": SCALARS, "transport": SCALARS,
        "keepalive": SCALARS, "register": SCALARS, "stun_port": SCALARS,
    }),
    ANY_TEXT,
    ANY_TEXT,
)
def test_mapping_and_renderer_give_a_valid_document_or_a_clean_error(fields, display, pw):
    identity = Identity("alice", {"displayName": display})
    try:
        tree = MAPPING.build(identity, [Account(fields)], Credentials("alice", pw))
        document = render_config(tree)
    except (SchemaError, InternalError):
        return
    parsed = parse_config(document, allow_extra=True)
    account = parsed["accounts"][0]
    assert account["password"] == pw
    name = fields["name"]
    assert account["name"] == f"{display} {str(name).lower() if isinstance(name, bool) else name}"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("prop")
    (folder / "users.toml").write_text(
        f'[users.alice]\npassword = "{hash_password("wonderland", 10)}"\n')
    settings = from_dict({
        "auth": {"type": "file", "path": "users.toml"},
        "source": {"type": "static", "accounts": [{"domain": "sip.example.com"}]},
        "limits": {"username_failures": 0, "address_failures": 0, "lockout_window": 0},
        "mapping": {"account": {"username": "{login.username}", "password": "{login.password}",
                                "SIP_domain": "{account.domain}"}},
    }, base_dir=folder)
    return create_app(settings)


async def call(app, method: str, query: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw ASGI request: any bytes in the query string, as a hostile client may send."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": "/provision", "raw_path": b"/provision",
             "query_string": query, "root_path": "", "headers": [(b"host", b"gw")],
             "client": ("192.0.2.9", 5000), "server": ("127.0.0.1", 8080)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([b"user=alice&password=wonderland", b"user=alice&password=x", b""]),
       st.binary(max_size=200),
       st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_app_always_answers_a_document(app, prefix, noise, method):
    status, headers, body = asyncio.run(call(app, method, prefix + b"&" + noise))
    assert headers["content-type"] == "application/xml; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert status in {200, 400, 401, 405}
    if status == 200:
        assert parse_config(body)["accounts"][0]["username"] == "alice"
    else:
        assert parse_error(body)

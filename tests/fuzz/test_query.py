"""Fuzzing the query-string parser (bridge/params.py): whatever a phone or a scanner sends,
`parse_query` and `credentials_from_query` return values or raise BadRequest, and what they
return is what the rest of the gateway relies on (non-empty, bounded, no control
characters, valid Unicode).

    .venv/bin/python -m pytest tests/fuzz -q                               # seconds
    BRIDGE_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest tests/fuzz -q   # a long run
"""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import BadRequest
from bridge.params import QuerySettings, credentials_from_query, parse_query
from tests.fuzz import budget, mutated, seeds

SEEDS = seeds("query")
TOKENS = [b"%", b"%2", b"%zz", b"%C3", b"%c3%28", b"%ED%A0%80", b"%F4%90%80%80", b"%ff", b"%00",
          b"%1F", b"%7F", b"%2B", b"%20", b"%26", b"%3D", b"+", b"&", b"=", b"&&", b"==",
          b"\xff", b"\xc3\xbc", b"user=", b"password=", b"version=", b"version=1.14",
          b"version=99999.1", b"\xef\xbb\xbf", b"%EF%BC%A1"]
QUERIES = st.one_of(mutated(SEEDS, TOKENS), st.binary(max_size=300),
                    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")))
SETTINGS = [QuerySettings(), QuerySettings(plus="literal")]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@budget(300)
@given(QUERIES, st.booleans())
def test_parse_query_returns_text_or_bad_request(raw, plus_is_space):
    try:
        params = parse_query(raw, plus_is_space)
    except BadRequest:
        return
    for key, value in params.items():
        assert isinstance(key, str) and isinstance(value, str)
        assert utf8(key) and utf8(value)   # no lone surrogates slipped through


@budget(300)
@given(QUERIES, st.sampled_from(SETTINGS))
def test_credentials_are_valid_or_a_bad_request(raw, settings):
    try:
        creds = credentials_from_query(raw, settings, client="192.0.2.1")
    except BadRequest:
        return
    assert len(raw) <= settings.max_query_length
    for value, limit in ((creds.username, settings.max_username_length),
                         (creds.password, settings.max_password_length)):
        assert value and len(value) <= limit and utf8(value)
        assert not CONTROL.search(value)
    assert creds.client == "192.0.2.1"


@pytest.mark.parametrize("raw", [
    b"%" * 4096, b"&" * 4096, b"=" * 4096, b"%ff" * 1365, b"+" * 4096,
    b"user=" + b"%41" * 1364, b"a=" * 2048,
])
def test_the_longest_queries_allowed_give_credentials_or_bad_request(raw):
    for settings in SETTINGS:
        with contextlib.suppress(BadRequest):
            credentials_from_query(raw, settings)


def test_a_query_past_the_limit_is_refused_before_it_is_parsed():
    with pytest.raises(BadRequest, match="longer than"):
        credentials_from_query(b"&" * (10 * 1024 * 1024), QuerySettings())

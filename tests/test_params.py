from urllib.parse import quote, quote_plus, urlencode

import pytest

from bridge.errors import BadRequest
from bridge.params import QuerySettings, credentials_from_query, parse_version

DEFAULT = QuerySettings()
LITERAL = QuerySettings(plus="literal")

TRICKY = ["p&ss", "a+b", "100%", "x#y", "k=v", "semi;colon", "sp ace", "ünï€😀", " lead", "trail "]


@pytest.mark.parametrize("password", TRICKY)
@pytest.mark.parametrize("quoter", [quote, quote_plus])
def test_percent_encoded_credentials_arrive_exactly(password, quoter):
    query = urlencode({"user": "zoë+1", "password": password, "version": "1.14"},
                      quote_via=quoter)
    creds = credentials_from_query(query.encode(), DEFAULT)
    assert creds.username == "zoë+1"
    assert creds.password == password
    assert creds.version == "1.14"


def test_raw_plus_is_a_space_by_default_and_kept_in_literal_mode():
    raw = b"user=alice&password=a+b%20c%2Bd"
    assert credentials_from_query(raw, DEFAULT).password == "a b c+d"
    assert credentials_from_query(raw, LITERAL).password == "a+b c+d"


def test_parameter_names_are_configurable():
    settings = QuerySettings(username="u", password="p", version="v")
    creds = credentials_from_query(b"u=bob&p=secret&v=1.14&user=ignored", settings)
    assert (creds.username, creds.password, creds.version) == ("bob", "secret", "1.14")


@pytest.mark.parametrize("query", [
    b"", b"user=alice", b"password=x", b"user=&password=x", b"user=alice&password=",
    b"user=alice&password=x&user=mallory",          # ambiguous
    b"user=alice&password=%FF%FE",                   # not UTF-8
    b"user=alice%00&password=x",                     # NUL
    b"user=alice&password=a%0Ab",                    # newline
    b"user=alice&password=a%7Fb",                    # DEL
    b"user=alice&password=x&version=abc",            # malformed version
    b"user=alice&password=x&version=1.14;DROP",
])
def test_bad_requests(query):
    with pytest.raises(BadRequest):
        credentials_from_query(query, DEFAULT)


def test_length_limits():
    settings = QuerySettings(max_username_length=5, max_password_length=5, max_query_length=64)
    with pytest.raises(BadRequest):
        credentials_from_query(b"user=abcdef&password=x", settings)
    with pytest.raises(BadRequest):
        credentials_from_query(b"user=a&password=abcdef", settings)
    with pytest.raises(BadRequest):
        credentials_from_query(b"user=a&password=b&pad=" + b"x" * 64, settings)
    assert credentials_from_query(b"user=abcde&password=abcde", settings).username == "abcde"


@pytest.mark.parametrize(("value", "expected"), [
    (None, (1, 14)), ("", (1, 14)), ("1.14", (1, 14)), ("1.9", (1, 9)), ("2.0.1", (2, 0, 1)),
    ("15", (15,)),
])
def test_versions(value, expected):
    assert parse_version(value) == expected


@pytest.mark.parametrize("value", ["abc", "1.", ".1", "1..4", "1.14-beta", "1 .14", "99999"])
def test_malformed_versions(value):
    with pytest.raises(BadRequest):
        parse_version(value)


def test_credentials_repr_hides_password():
    creds = credentials_from_query(b"user=alice&password=hunter2secret", DEFAULT)
    assert "hunter2secret" not in repr(creds)

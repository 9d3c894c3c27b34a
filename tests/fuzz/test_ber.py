"""Fuzzing the LDAP decoder (bridge/ldap/protocol.py): whatever a server or a man in the
middle sends, the decoder returns messages or raises ProtocolError, quickly, without
allocating more than the input (or its configured message cap) calls for.

    .venv/bin/python -m pytest tests/fuzz -q                               # seconds
    BRIDGE_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest tests/fuzz -q   # a long run

Failures hypothesis finds are kept in .hypothesis/ and replayed first next time.
"""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ldap.client import LdapResult
from bridge.ldap.protocol import (
    MAX_MESSAGE_ID,
    Decoder,
    LdapMessage,
    ProtocolError,
    decode_all,
    parse_message,
)
from tests.fuzz import budget, mutated, seeds

SEEDS = seeds("ldap")
TOKENS = [
    b"\x84\xff\xff\xff\xff", b"\x84\x7f\xff\xff\xff", b"\x84\x00\xff\xff\xff",  # 4 GB, 2 GB, 16 MB
    b"\x85\x01\x00\x00\x00\x00", b"\x80", b"\x81\x00", b"\x82\xff\xff", b"\x1f\x81\x01",
    b"\x30\x00", b"\x02\x00", b"\x02\x05\x80\x00\x00\x00\x00", b"\x0a\x01\x31",
    b"\x04\x00", b"\x31\x00", b"\xa0\x00", b"\x87\x00", b"\x8a\x00", b"\x8b\x00",
]
MESSAGES = st.one_of(mutated(SEEDS, TOKENS), st.binary(max_size=200),
                     st.lists(st.sampled_from(SEEDS), max_size=5).map(b"".join))
CAP = 4096  # a small message cap, so that "claims more than the cap" is easy to reach


def check(messages: list[LdapMessage]) -> None:
    """What the client may rely on in a decoded message."""
    for m in messages:
        assert 0 <= m.message_id <= MAX_MESSAGE_ID
        assert 0 <= m.op <= 0xFF
        assert m.result is None or isinstance(m.result, LdapResult)
        assert isinstance(m.dn, str)
        for name, values in m.attributes or []:
            assert isinstance(name, str) and all(isinstance(v, bytes) for v in values)


def outcome(data: bytes, cap: int = CAP) -> list[LdapMessage] | str:
    try:
        messages = decode_all(data, cap)
    except ProtocolError:
        return "error"
    check(messages)
    return messages


@budget(300)
@given(MESSAGES)
def test_decoder_returns_messages_or_protocol_error_within_bounded_memory(data):
    tracemalloc.start()  # around the decoder only: tracing hypothesis would be slow
    try:
        outcome(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a few copies of the input and the objects made of it; never what a length field claims
    assert peak <= 64 * len(data) + 16384, (peak, len(data))


@budget(300)
@given(mutated(SEEDS, TOKENS))
def test_parse_message_raises_only_protocol_error(data):
    # the content of one LDAPMessage, as the framing hands it over (the fast path included)
    content = data[2:] if len(data) > 2 and data[1] < 0x80 else data
    with contextlib.suppress(ProtocolError):
        check([parse_message(content)])


@budget(200)
@given(MESSAGES, st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_any_chunking_of_a_stream_decodes_as_the_whole_does(data, sizes):
    whole = outcome(data)
    decoder = Decoder(CAP)
    got: list[LdapMessage] = []
    pos, i = 0, 0
    try:
        while pos < len(data):
            size = sizes[i % len(sizes)]
            got += decoder.feed(data[pos : pos + size])
            pos += size
            i += 1
            # never more buffered than one message the cap allows
            assert decoder.buffered <= CAP + 6
        chunked: list[LdapMessage] | str = got if not decoder.buffered else "error"
    except ProtocolError:
        chunked = "error"
    assert chunked == whole


@pytest.mark.parametrize("length", [
    b"\x84\x7f\xff\xff\xff",   # 2 GB
    b"\x84\xff\xff\xff\xff",   # 4 GB
    b"\x84\x01\x00\x00\x01",   # just over the default 16 MB cap
])
def test_a_length_claiming_gigabytes_is_refused_at_once(length):
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="exceeds"):   # refused, not waited for
        decoder.feed(b"\x30" + length + b"\x02\x01\x01")
    assert decoder.buffered == 0


def test_inner_lengths_past_the_message_are_refused():
    # a bind response whose matchedDN claims 2 GB inside a 16-byte message
    with pytest.raises(ProtocolError):
        decode_all(b"\x30\x10\x02\x01\x01\x61\x0b\x0a\x01\x00\x04\x84\x7f\xff\xff\xff\x04\x00")


def test_every_seed_is_a_valid_message_or_a_request_the_client_never_receives():
    for seed in SEEDS:
        result = outcome(seed, 16 * 1024 * 1024)
        assert result == "error" or len(result) == 1
    assert sum(outcome(seed) != "error" for seed in SEEDS) >= len(SEEDS) - 3


@budget(50, deadline=5)  # thousands of feeds under tracemalloc: slow, but no hang
@given(st.integers(1, 64 * 1024), st.lists(st.integers(1, 8), min_size=1, max_size=8))
def test_a_message_trickling_in_holds_no_more_memory_than_its_bytes(claimed, sizes):
    """A server sending a big message a few bytes per read must cost its bytes, not a
    Python object per read (found by this test: the partial message was a list of chunks,
    about 20 times its size in 2-byte reads, so a 16 MB cap meant 350 MB)."""
    decoder = Decoder()
    stream = b"\x30\x84" + claimed.to_bytes(4, "big") + bytes(claimed)
    end = min(len(stream) - 1, 2000)  # the message never completes
    pos, i = 0, 0
    tracemalloc.start()
    try:
        while pos < end:
            chunk = bytes(stream[pos : min(end, pos + sizes[i % len(sizes)])])
            assert decoder.feed(chunk) == []
            pos, i = pos + len(chunk), i + 1
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert decoder.buffered == pos
    assert held <= 2 * decoder.buffered + 4096, (held, decoder.buffered)

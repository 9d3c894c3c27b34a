"""Fuzzing the parsers that read what strangers send: seeds, mutations, example budgets.

The seed corpus is in `corpus/` (`ldap/*.ber`: LDAPMessages as slapd sent them, rebuilt by
`python -m tests.fuzz.capture`; `query/*.txt`: raw query strings). Hypothesis mutates them
the way a byte-level fuzzer would (bit flips, interesting bytes, length fields claiming
gigabytes, cuts, splices) besides drawing plain random bytes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "corpus"


def seeds(kind: str) -> list[bytes]:
    found = [path.read_bytes() for path in sorted((CORPUS / kind).iterdir())]
    assert found, f"empty seed corpus {CORPUS / kind}"
    return found


def budget(default: int, deadline: float = 1.0) -> settings:
    """`default` examples in the normal suite; BRIDGE_FUZZ_EXAMPLES=N for a long run.

    The deadline is how a hang shows up: an example that takes a second has found one.
    """
    examples = int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", default))
    return settings(max_examples=examples, deadline=timedelta(seconds=deadline),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes], tokens: list[bytes]) -> bytes:
    """One seed, changed a few times; `tokens` are the format's interesting fragments."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(
            ("flip", "byte", "insert", "token", "delete", "cut", "splice", "repeat")))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and at < len(data):
            data[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0x81, 0x84, 0xFF)))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(tokens))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            other = draw(st.sampled_from(corpus))
            data[at:] = other[draw(st.integers(0, len(other))):]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    return bytes(data)

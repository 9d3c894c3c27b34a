"""The admission policy on its own: the listener's clock and counts given by hand, so every
rule is checked exactly (tests/test_listener.py checks it on a real gateway)."""

from __future__ import annotations

from bridge.admission import MIN_ADMITTED, QUIET_GAP, TRUST_AFTER, Admission

WAIT = 2.0  # max_queue_time


def test_a_burst_after_a_quiet_spell_is_admitted_until_its_rate_is_known():
    admission = Admission()
    assert admission.admits(5000, 0, 100.0, WAIT)           # the spell begins
    assert admission.admits(5000, MIN_ADMITTED - 1, 100.3, WAIT)  # 31 answers: not yet known
    # 32 answers in 0.4 s: 80 a second, so 160 in flight is 2 s of waiting
    assert admission.admits(159, MIN_ADMITTED, 100.4, WAIT)
    assert not admission.admits(160, MIN_ADMITTED, 100.4, WAIT)


def test_a_slow_backend_is_judged_after_trust_after_at_the_latest():
    admission = Admission()
    assert admission.admits(100, 0, 10.0, WAIT)
    assert admission.admits(100, 5, 10.0 + TRUST_AFTER / 2, WAIT)
    # 10 answers in TRUST_AFTER seconds: 10 a second, 20 in flight is the bound
    assert admission.admits(19, 10, 10.0 + TRUST_AFTER, WAIT)
    assert not admission.admits(20, 10, 10.0 + TRUST_AFTER, WAIT)


def test_the_rate_follows_the_last_second_not_the_whole_spell():
    admission = Admission()
    admission.admits(40, 0, 0.0, WAIT)
    admission.admits(40, 500, 0.5, WAIT)     # 1,000 a second at first
    admission.admits(40, 1000, 1.0, WAIT)    # mark
    admission.admits(40, 1010, 1.5, WAIT)    # then the backend slows down: 20 a second
    # judged from the mark at 1.0 s: 20 answers in 1.0 s, not 1,020 in 2.0 s
    assert not admission.admits(41, 1020, 2.0, WAIT)
    assert admission.admits(39, 1020, 2.0, WAIT)


def test_a_quiet_gap_starts_a_new_spell():
    admission = Admission()
    admission.admits(40, 0, 0.0, WAIT)
    assert not admission.admits(1000, 40, 1.0, WAIT)   # 40 a second: 80 at most
    # nothing busy for longer than QUIET_GAP: the old rate says nothing of the new burst
    assert admission.admits(1000, 40, 1.0 + QUIET_GAP + 0.1, WAIT)


def test_the_first_turn_of_a_spell_is_admitted():
    """The loop's clock is cached per turn: a spell can begin and be asked again at once."""
    admission = Admission()
    assert admission.admits(1000, 0, 5.0, WAIT)
    assert admission.admits(1000, MIN_ADMITTED * 10, 5.0, WAIT)

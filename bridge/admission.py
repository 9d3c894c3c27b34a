"""Admission by expected wait: the per-worker bound on requests in flight that follows how
fast the worker finishes them (`[server] max_queue_time`, used by bridge/listener.py).

Pure bookkeeping, no I/O: the listener passes the worker's counts and the loop's clock.
"""

from __future__ import annotations

MIN_ADMITTED = 32     # requests in flight per worker never refused for time
RATE_WINDOW = 0.5     # the rate of finished requests is measured over the last 0.5-1 s
TRUST_AFTER = 1.0     # a busy spell's rate is trusted after MIN_ADMITTED finished, or this
QUIET_GAP = 1.0       # a worker below MIN_ADMITTED this long starts a new busy spell


class Admission:
    """Refuses what would only queue: the per-worker bound on requests in flight follows
    how fast the worker finishes them.

    A fixed bound cannot fit every backend: 1,000 requests in flight are 0.5 s of work
    against a local directory and 8 s against one 20 ms away behind a pool of 8, where the
    phones admitted in a restart storm all advanced together and waited 6-9 s
    (bench/storm.py). By Little's law a new request waits about in_flight / rate; past
    `max_queue_time` it gets an immediate 503 + Retry-After and the phone keeps its
    configuration, so the ones admitted are served in bounded time.

    The rate is only a worker's capacity while it is busy (MIN_ADMITTED or more in
    flight): what a quiet worker finishes is what it was asked. And the first answers of a
    busy spell come one backend round trip after it began, whatever the capacity. So a busy
    spell admits everything until it has finished MIN_ADMITTED requests (or for TRUST_AFTER
    seconds), then judges by what it finished since it became busy, over the last one to two
    RATE_WINDOWs: a burst against a fast backend is served whole, one against a slow
    backend is cut after its first few dozen answers.
    """

    __slots__ = ("last", "marks", "trusted")

    def __init__(self) -> None:
        self.last = -QUIET_GAP           # the latest call: every call is a busy moment
        self.marks = [(0.0, 0)]          # (time, requests finished) at most RATE_WINDOW apart
        self.trusted = False             # the busy spell's rate says something yet

    def admits(self, in_flight: int, finished: int, now: float, max_queue_time: float) -> bool:
        if now - self.last > QUIET_GAP:
            self.marks = [(now, finished)]
            self.trusted = False
        self.last = now
        since, finished_then = self.marks[0]
        elapsed = now - since  # 0 within the loop turn that began the spell (a cached clock)
        if elapsed <= 0:
            return True
        if not self.trusted:
            if finished - finished_then < MIN_ADMITTED and elapsed < TRUST_AFTER:
                return True
            self.trusted = True
        if now - self.marks[-1][0] >= RATE_WINDOW:
            self.marks = [self.marks[-1], (now, finished)]
        return in_flight < (finished - finished_then) / elapsed * max_queue_time

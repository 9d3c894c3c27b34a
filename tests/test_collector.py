"""The collector runs full passes only while no request is in flight (bridge.app.Collections)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from bridge import app


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The generation of every collection while the test runs; short full-pass spacing."""
    monkeypatch.setattr(app, "GC_FULL_EVERY", 0.2)
    monkeypatch.setattr(app, "GC_FULL_FORCED", 60.0)
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.set_threshold(*app.GC_THRESHOLDS)  # as in a worker: no full pass by itself
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)


async def test_full_passes_wait_for_no_request_in_flight(passes: list[int]) -> None:
    collector = app.Collections(asyncio.get_running_loop(), check_every=0.05)
    try:
        busy = asyncio.create_task(asyncio.sleep(1.0))  # a request in flight
        await asyncio.sleep(0.6)
        assert 0 in passes  # young passes go on
        assert 2 not in passes  # no full pass while a task is alive
        await busy
        await asyncio.sleep(0.4)
        assert 2 in passes  # and one as soon as none is
    finally:
        collector.cancel()


async def test_a_full_pass_is_forced_under_endless_load(passes: list[int],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "GC_FULL_FORCED", 0.3)
    collector = app.Collections(asyncio.get_running_loop(), check_every=0.05)
    busy = asyncio.create_task(asyncio.sleep(1.0))
    try:
        await asyncio.sleep(0.6)
        assert 2 in passes  # cyclic garbage cannot grow for ever
    finally:
        collector.cancel()
        busy.cancel()


async def test_an_idle_worker_backs_off(passes: list[int]) -> None:
    collector = app.Collections(asyncio.get_running_loop(), check_every=10)
    try:
        await asyncio.sleep(0.5)
        assert collector.pause == app.GC_YOUNG_IDLE  # not 1,000 wake-ups a second
        young = passes.count(0)
        assert young < 30, young
    finally:
        collector.cancel()

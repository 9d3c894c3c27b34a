"""SIGHUP: a new configuration in every worker, no request lost; an invalid one changes nothing.

Workers never outlive their supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway import Gateway
from tests.ops.conftest import DEMO_USER, demo_copy, provision

OLD, NEW = b"<voicemail_check_extension>*97<", b"<voicemail_check_extension>*98<"
# the users file gains a user whose password hash is cheap (ln=10): re-read on reload
NEW_USER = """
[users.queen]
password = "{hash}"
displayName = "The Queen"
"""


class Load(threading.Thread):
    """Provisioning requests back to back, each on a new connection, until stopped."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.results: list[tuple[float, int, bytes]] = []  # (sent at, status, marker)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            sent = time.monotonic()
            try:
                response = provision(self.base_url)
            except httpx.TransportError as exc:
                self.results.append((sent, 0, repr(exc).encode()))
                continue
            marker = NEW if NEW in response.content else OLD if OLD in response.content else b"?"
            self.results.append((sent, response.status_code, marker))

    def since(self, t: float) -> list[tuple[float, int, bytes]]:
        return [r for r in self.results if r[0] >= t]


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def cheap_hash(password: str) -> str:
    from bridge.passwords import hash_password

    return hash_password(password, 10)


def test_sighup_under_load_reloads_every_worker_and_drops_nothing(tmp_path: Path):
    config = demo_copy(tmp_path)
    with Gateway(config, tmp_path, extra_args=("--workers", "2")) as gw:
        wait_for(lambda: _ok(gw.base_url))
        load = Load(gw.base_url)
        load.start()
        try:
            wait_for(lambda: len(load.results) >= 5)
            assert provision(gw.base_url, user="queen", password="red-queen").status_code == 401
            config.write_text(config.read_text().replace('"*97"', '"*98"'))
            users = tmp_path / "users.toml"
            users.write_text(users.read_text() + NEW_USER.format(hash=cheap_hash("red-queen")))
            assert gw.process is not None
            gw.process.send_signal(signal.SIGHUP)
            wait_for(lambda: gw.output().count("configuration reloaded from") == 2)
            after = time.monotonic()
            wait_for(lambda: len(load.since(after)) >= 10)
            # the users file was read again: the new user is served
            # authenticated (404: a login without SIP accounts, like the demo's hatter)
            assert provision(gw.base_url, user="queen", password="red-queen").status_code == 404
            assert provision(gw.base_url, user="queen", password="wrong!").status_code == 401

            # an invalid file: logged by the supervisor, nothing changes
            config.write_text(config.read_text() + "\n[server]\nno_such_key = 1\n")
            gw.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "not reloaded" in gw.output())
            invalid = time.monotonic()
            wait_for(lambda: len(load.since(invalid)) >= 10)
        finally:
            load.stopped.set()
            load.join(20)
        output = gw.output()
    failed = [r for r in load.results if r[1] != 200]
    assert failed == [], f"failed requests: {failed[:5]}"
    assert {marker for _, _, marker in load.since(after)} == {NEW}
    assert {marker for _, _, marker in load.results} == {OLD, NEW}  # it did serve the old
    assert "no_such_key" in output
    assert output.count("configuration reloaded from") == 2  # the invalid one: not passed on


def test_single_process_reloads_and_keeps_serving_past_an_invalid_file(tmp_path: Path):
    config = demo_copy(tmp_path)
    with Gateway(config, tmp_path) as gw:
        wait_for(lambda: _ok(gw.base_url))
        assert gw.process is not None
        good = config.read_text()
        config.write_text(good.replace('type = "file"', 'type = "filez"'))
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "not reloaded" in gw.output())
        assert "filez" in gw.output()
        response = provision(gw.base_url)
        assert response.status_code == 200 and OLD in response.content

        config.write_text(good.replace('"*97"', '"*98"'))
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded from" in gw.output())
        response = provision(gw.base_url)
        assert response.status_code == 200 and NEW in response.content
        assert gw.process.poll() is None


def test_workers_stop_when_the_supervisor_dies(tmp_path: Path):
    config = demo_copy(tmp_path)
    gw = Gateway(config, tmp_path, extra_args=("--workers", "2")).start()
    try:
        wait_for(lambda: _ok(gw.base_url))
        assert gw.process is not None
        workers = _children(gw.process.pid)
        assert len(workers) >= 2
        gw.process.kill()  # SIGKILL: no chance to pass anything on
        gw.process.wait(10)
        wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30)
    finally:
        for pid in _children(gw.process.pid) if gw.process else []:
            os.kill(pid, signal.SIGKILL)
        gw.stop()


def _ok(base_url: str) -> bool:
    try:
        return provision(base_url, **DEMO_USER).status_code == 200
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    """Worker processes (multiprocessing's resource tracker aside)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found
            if b"spawn_main" in _cmdline(c) and b"resource_tracker" not in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_worker_restarted_after_an_invalid_edit_serves_the_last_valid_file(tmp_path: Path):
    config = demo_copy(tmp_path)
    with Gateway(config, tmp_path, extra_args=("--workers", "2")) as gw:
        wait_for(lambda: _ok(gw.base_url))
        assert gw.process is not None
        config.write_text(config.read_text().replace('"*97"', '"*98"'))
        gw.process.send_signal(signal.SIGHUP)
        try:
            wait_for(lambda: gw.output().count("configuration reloaded from") == 2)
        except AssertionError:
            raise AssertionError(gw.output()) from None
        config.write_text("[server]\nno_such_key = 1\n")  # rejected by the supervisor
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "not reloaded" in gw.output())
        worker = _children(gw.process.pid)[0]
        time.sleep(max(0.0, 5.5 - _age(worker)))  # past the start-up grace
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: "restarting" in gw.output())
        wait_for(lambda: gw.output().count("Started server process") == 3)
        answers = [provision(gw.base_url) for _ in range(8)]
        assert gw.process.poll() is None
    assert [a.status_code for a in answers] == [200] * 8
    assert all(NEW in a.content for a in answers)


def _age(pid: int) -> float:
    """Seconds since `pid` started."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def test_a_sighup_during_start_up_is_not_lost(tmp_path: Path):
    """A worker still starting its backends when the supervisor forwards a SIGHUP used to
    ignore it and serve the old file while its siblings served the new one (seen once in CI
    as a reload count of 1 of 2). Now it is remembered and the reload runs once the handler
    exists. Driven here in the test's own main thread, with a generation that records it."""
    import asyncio

    from bridge.reload import Reloader, hold_sighup
    from bridge.settings import load

    config = demo_copy(tmp_path)
    reloads: list[object] = []

    class Recorded:
        settings = load(config)
        routes: list[object] = []
        token_paths: list[str] = []
        quiet_paths: set[str] = set()

        async def start(self) -> None:
            if not reloads:  # the first generation: the signal arrives while it starts
                os.kill(os.getpid(), signal.SIGHUP)

        async def close(self, grace: float) -> None:
            pass

        def successor(self, settings: object) -> Recorded:
            reloads.append(settings)
            return Recorded()

        def trusts(self, peer: str | None) -> bool:
            return False

    async def serve() -> None:
        reloader = Reloader(Recorded(), config, [], set())  # type: ignore[arg-type]
        async with reloader.serving():
            for _ in range(250):
                if reloads:
                    break
                await asyncio.sleep(0.02)

    previous = signal.getsignal(signal.SIGHUP)
    try:
        hold_sighup()
        asyncio.run(serve())
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert len(reloads) == 1


def test_a_reload_while_a_worker_starts_keeps_the_gateway(tmp_path: Path):
    """A spawned worker is a new interpreter, where SIGHUP ends the process until a handler
    exists; the supervisor forwarded a reload that came as soon as the first worker answered
    to the second one still importing, which died, and a worker dying at start-up stops the
    gateway (2 runs in 4 by hand; twice in CI as this file's invalid-edit test timing out).
    Workers now start with SIGHUP blocked until they can remember it."""
    config = demo_copy(tmp_path)
    with Gateway(config, tmp_path, extra_args=("--workers", "2")) as gw:
        assert gw.process is not None
        gw.process.send_signal(signal.SIGHUP)  # the first worker answers; the other may not
        wait_for(lambda: gw.output().count("configuration reloaded from") == 2)
        assert gw.process.poll() is None, gw.output()
        assert "exited" not in gw.output()
        assert provision(gw.base_url).status_code == 200

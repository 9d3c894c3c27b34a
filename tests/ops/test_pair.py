"""Two gateways behind one address (deploy/nginx.conf's upstream): their limits are one limit
through Redis, and stopping or killing one of them under load fails no request, neither one
sent through the front nor one sent to the other instance directly.

Everything is real: Redis on 127.0.0.1:6379 (a prefix of this test's own, removed after),
Debian's nginx with the shipped site, and each gateway a `zoiper-bridge serve` process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from bridge.passwords import hash_password
from tests.conftest import unavailable
from tests.gateway import Gateway, free_port
from tests.ops.conftest import demo_copy
from tests.ops.test_nginx import nginx, site

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
PASSWORD = "Pair-Secret+42&ü"   # alice's; characters that the URL encodes
STATE_SECRET = "pair-state-key-" + uuid.uuid4().hex
USERS = """
[users.alice]
password = "{alice}"
displayName = "Alice Liddell"

[users.hatter]
password = "{hatter}"
displayName = "The Hatter"
"""
# deploy/nginx.conf's format: ... "GET /provision" status bytes time request_id upstreams
ACCESS = re.compile(r'"GET /provision" (\d{3}) \d+ \S+ (\S+) (.+)$')
LIMITS = """
[limits]
username_failures = 4
address_failures = 6
bypass_failures = 0
backoff_base = 0
lockout_window = 0
"""


@dataclass
class Pair:
    """Gateway `a` (`--workers 2`, its own process group) and `b` (one process) behind nginx."""

    folder: Path
    front: str          # https://127.0.0.1:PORT/provision
    ca: ssl.SSLContext
    a: Gateway
    b: Gateway
    shared_keys: Callable[[], int]   # how many keys the pair holds in Redis now
    guesses: list[str] = field(default_factory=list)  # every wrong password sent

    def get(self, user: str, password: str, base: str | None = None) -> httpx.Response:
        """One request on a new connection, to the front or to `base` (an instance)."""
        if password != PASSWORD:
            self.guesses.append(password)
        url = self.front if base is None else base + "/provision"
        return httpx.get(url, params={"user": user, "password": password}, verify=self.ca,
                         timeout=20)

    def served_by(self, request_id: str) -> set[str]:
        """Which instances logged this request id ("a", "b")."""
        return {name for name, gw in (("a", self.a), ("b", self.b))
                if f"request_id={request_id}" in gw.output()}

    def front_log(self) -> list[tuple[str, str, str]]:
        """The site's access lines: (status, request id, the instances tried)."""
        text = (self.folder / "logs" / "provisioning.log").read_text()
        lines = [ACCESS.search(line) for line in text.splitlines()]
        assert all(lines), text
        return [(m[1], m[2], m[3]) for m in lines if m]


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"no Redis at {REDIS_URL}: {exc}")
    return client


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def serving(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    binary = nginx()
    store = redis_client()
    prefix = f"test-pair-{uuid.uuid4().hex}:"
    config = demo_copy(tmp_path, 'trusted_proxies = ["127.0.0.1"]')
    (tmp_path / "users.toml").write_text(USERS.format(alice=hash_password(PASSWORD, 10),
                                                      hatter=hash_password("hatter-pw", 10)))
    config.write_text(config.read_text() + LIMITS + f"""
[state]
backend = "redis"
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"
secret = "{STATE_SECRET}"
""")
    env = {"TMPDIR": str(tmp_path)}  # a killed supervisor's metrics folder stays in here
    a = Gateway(config, tmp_path, env, ("--workers", "2"), new_session=True)
    b = Gateway(config, tmp_path, env)
    port = free_port()
    main = site(tmp_path, port, [a.port, b.port])
    check = subprocess.run([binary, "-t", "-c", str(main), "-p", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = None
    try:
        a.start()
        b.start()
        wait_for(lambda: serving(a.base_url) and serving(b.base_url))
        proc = subprocess.Popen([binary, "-c", str(main), "-p", str(tmp_path)],
                                stderr=subprocess.PIPE)

        def listening() -> bool:
            assert proc is not None and proc.poll() is None, "nginx exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(listening, 10)
        yield Pair(tmp_path, f"https://127.0.0.1:{port}/provision",
                   ssl.create_default_context(cafile=str(tmp_path / "ca.pem")), a, b,
                   lambda: sum(1 for _ in store.scan_iter(match=prefix + "*")))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(10)
        for gw in (a, b):
            gw.stop()
        keys = list(store.scan_iter(match=prefix + "*"))
        if keys:
            store.delete(*keys)
        store.close()


def no_secret_in_logs(pair: Pair) -> None:
    """Neither nginx (access and error logs) nor either gateway wrote a password."""
    logs = list(pair.folder.rglob("*.log"))
    names = {p.name for p in logs}
    assert {"provisioning.log", "error.log", f"gateway-{pair.a.port}.log",
            f"gateway-{pair.b.port}.log"} <= names, names
    written = "".join(p.read_text(errors="replace") for p in logs)
    assert "request_id=" in written and "/provision" in written  # the logs did log
    for secret in {PASSWORD, *pair.guesses}:
        for form in (secret, str(httpx.QueryParams({"p": secret}))[2:]):
            assert form not in written, f"{form!r} leaked"
    assert "password=" not in written


def test_the_pair_counts_failures_once_whichever_instance_answers(pair: Pair) -> None:
    def through_front(user: str, password: str) -> tuple[int, str]:
        response = pair.get(user, password)
        served = pair.served_by(response.headers["x-request-id"])
        assert len(served) == 1, served
        return response.status_code, served.pop()

    # one user's wrong passwords, spread by nginx over both instances: the limit (4) is
    # reached at 4 in total, not at 4 on each
    answers = [through_front("alice", f"Guess-{i}-pw") for i in range(7)]
    assert [status for status, _ in answers] == [401] * 4 + [429] * 3
    assert {gw for _, gw in answers[:4]} == {"a", "b"}   # both counted failures ...
    assert {gw for _, gw in answers[4:]} == {"a", "b"}   # ... and both refuse
    for base in (pair.a.base_url, pair.b.base_url):    # the right password waits too
        limited = pair.get("alice", PASSWORD, base)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert pair.shared_keys() > 0  # the counts are in Redis, under this test's prefix

    # the address: 4 failures so far (429s are not failures); 2 more for another user
    # close it (6) for everyone from there, on both instances
    answers = [through_front("hatter", f"Hatter-guess-{i}") for i in range(2)]
    assert [status for status, _ in answers] == [401, 401]
    assert {gw for _, gw in answers} == {"a", "b"}
    answers = [through_front("hatter", "hatter-pw") for _ in range(2)]
    assert [status for status, _ in answers] == [429, 429]
    assert {gw for _, gw in answers} == {"a", "b"}
    for base in (pair.a.base_url, pair.b.base_url):
        assert pair.get("hatter", "hatter-pw", base).status_code == 429

    no_secret_in_logs(pair)


@dataclass
class Result:
    sent: float
    status: int          # 0: no answer (the exception is in `error`)
    request_id: str = ""
    error: str = ""


class Load(threading.Thread):
    """Valid provisioning requests back to back on one client until stopped."""

    def __init__(self, url: str, ca: ssl.SSLContext, fresh_connections: bool) -> None:
        super().__init__(daemon=True)
        self.url, self.ca, self.fresh = url, ca, fresh_connections
        self.results: list[Result] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        params = {"user": "alice", "password": PASSWORD}
        with httpx.Client(verify=self.ca, timeout=30) as client:
            while not self.stopped.is_set():
                sent = time.monotonic()
                try:
                    if self.fresh:
                        response = httpx.get(self.url, params=params, timeout=30)
                    else:
                        response = client.get(self.url, params=params)
                except httpx.TransportError as exc:
                    self.results.append(Result(sent, 0, error=repr(exc)))
                    continue
                self.results.append(Result(sent, response.status_code,
                                           response.headers.get("x-request-id", "")))

    def since(self, t: float) -> list[Result]:
        return [r for r in self.results if r.sent >= t]


def live_members(group: int) -> list[int]:
    """The processes of a process group that still run (zombies not counted)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_group(gw: Gateway) -> None:
    """SIGKILL to the supervisor and its workers at once: the host or container died."""
    assert gw.process is not None
    os.killpg(gw.process.pid, signal.SIGKILL)
    gw.process.wait(10)


def terminate(gw: Gateway) -> None:
    """SIGTERM to the supervisor (systemctl stop): the workers finish what they took."""
    assert gw.process is not None
    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(30) == 0


@pytest.mark.parametrize("stop", [kill_group, terminate], ids=["sigkill", "sigterm"])
def test_stopping_one_instance_under_load_fails_no_request(pair: Pair,
                                                           stop: Callable[[Gateway], None],
                                                           ) -> None:
    assert pair.a.process is not None
    group = pair.a.process.pid
    assert len(live_members(group)) >= 3  # the supervisor and its two workers
    front = [Load(pair.front, pair.ca, fresh_connections=False) for _ in range(4)]
    direct = Load(pair.b.base_url + "/provision", pair.ca, fresh_connections=True)
    loads = [*front, direct]
    for load in loads:
        load.start()

    def front_results() -> list[Result]:
        return [r for load in front for r in load.results]

    try:
        wait_for(lambda: len(front_results()) >= 80 and len(direct.results) >= 10, 120)
        stopped_at = time.monotonic()
        stop(pair.a)
        stopped_after = time.monotonic()
        wait_for(lambda: sum(len(load.since(stopped_after)) for load in front) >= 150
                 and len(direct.since(stopped_after)) >= 20, 120)
    finally:
        for load in loads:
            load.stopped.set()
        for load in loads:
            load.join(60)

    results = front_results()
    failed = [r for r in results + direct.results if r.status != 200]
    assert failed == [], f"{len(failed)} failed of {len(results) + len(direct.results)}: " \
                         f"{failed[:5]}"
    before = [r for r in results if r.sent < stopped_at]
    after = [r for r in results if r.sent >= stopped_after]
    # both served before; afterwards the survivor served everything sent through the front
    assert {gw for r in before for gw in pair.served_by(r.request_id)} == {"a", "b"}
    assert len(after) >= 150
    assert all(pair.served_by(r.request_id) == {"b"} for r in after)
    # no worker of the stopped instance is left, and the survivor still serves
    wait_for(lambda: not live_members(group), 30)
    assert pair.b.process is not None and pair.b.process.poll() is None

    time.sleep(0.2)  # nginx writes its access line after the response
    lines = pair.front_log()
    assert len(lines) == len(results)
    assert {status for status, _, _ in lines} == {"200"}
    assert {rid for _, rid, _ in lines} == {r.request_id for r in results}
    retried = [tried for _, _, tried in lines if "," in tried]
    assert retried, "no request was passed on to the next instance"
    assert all(tried.endswith(f"127.0.0.1:{pair.b.port}") for tried in retried)
    no_secret_in_logs(pair)

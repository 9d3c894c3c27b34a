"""One failover and hold-back policy (bridge/ldap/failover.py), the same in both LDAP clients.

The policy on its own first (plain objects, real time), then both clients
against real servers: the slapd fixture, and TCP listeners on loopback that
accept and then never answer (a hung slapd, a black-holing load balancer) or
close at once, in each TLS mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.ldap.aio import AsyncLdapClient
from bridge.ldap.client import (
    LdapClient,
    LdapResult,
    LdapTimeout,
    LdapUnavailable,
    Scope,
    ServerSettings,
    TlsMode,
)
from bridge.ldap.failover import Failover, ServiceTurn, SetupFailed, Skipped
from bridge.ldap.threaded import Ldap3Client
from tests.ldap.slapd import PEOPLE_DN, SERVICE_DN, USERS, Slapd, bind_count
from tests.ldap.test_aio import fully_paused

pytestmark = pytest.mark.slow

ALICE = USERS["alice"]
assert ALICE.password is not None
PASSWORD: str = ALICE.password
HOST = "127.0.0.1"
CLIENTS = ["asyncio", "ldap3"]
MODES = [TlsMode.NONE, TlsMode.STARTTLS, TlsMode.LDAPS]
CONNECT_TIMEOUT, TIMEOUT, DOWN_FOR = 0.4, 0.6, 1.0
BUDGET = CONNECT_TIMEOUT + TIMEOUT  # what a request may wait for its connection and answer
SLACK = 0.5  # scheduling on a busy machine


# ---- the policy on its own ---------------------------------------------------------------------


@dataclass(frozen=True)
class Uri:
    uri: str


A, B = Uri("ldap://a:389"), Uri("ldap://b:389")


def test_a_down_server_is_skipped_until_down_for_has_passed(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.ldap")
    failover = Failover([A, B], down_for=0.2)
    walk = failover.walk(5)
    assert walk.next() == A
    walk.failed(A, SetupFailed("no answer to bind within 1s", timeout=True))
    assert walk.next() == B
    walk.connected(B)
    assert failover.down() == {A.uri: "no answer to bind within 1s"}
    for _ in range(3):  # every new walk goes straight to B, and the mark is logged once
        assert failover.walk(5).next() == B
    assert caplog.text.count("skipping it for 0.2s") == 1
    time.sleep(0.25)
    walk = failover.walk(5)
    assert walk.next() == A  # tried again
    walk.connected(A)
    assert failover.down() == {}
    assert "LDAP server ldap://a:389 is reachable again" in caplog.text


@pytest.mark.parametrize(("timeouts", "expected"), [
    ((True, True), LdapTimeout), ((True, False), LdapUnavailable),
    ((False, False), LdapUnavailable)])
def test_a_walk_ends_in_a_timeout_only_when_every_server_tried_timed_out(
        timeouts: tuple[bool, bool], expected: type[Exception]) -> None:
    failover = Failover([A, B])
    walk = failover.walk(5)
    for server, timeout in zip((A, B), timeouts, strict=True):
        assert walk.next() == server
        walk.failed(server, SetupFailed(f"failure of {server.uri}", timeout=timeout))
    assert walk.next() is None
    error = walk.error()
    assert type(error) is expected
    assert "failure of ldap://a:389" in str(error) and "failure of ldap://b:389" in str(error)
    # the next walk tries nothing: every server is down, LdapUnavailable at once
    walk = failover.walk(5)
    assert walk.next() is None
    assert type(walk.error()) is LdapUnavailable and "skipped for" in str(walk.error())


def test_a_skipped_server_is_not_marked_down() -> None:
    failover = Failover([A, B])
    walk = failover.walk(5)
    assert walk.next() == A
    walk.failed(A, Skipped("busy elsewhere"))
    assert failover.down() == {}


def test_a_walk_stops_when_its_budget_is_spent() -> None:
    failover = Failover([A, B])
    walk = failover.walk(0.05)
    assert walk.next() == A
    assert walk.bound(10) <= 0.05
    time.sleep(0.06)
    walk.failed(A, SetupFailed("no answer", timeout=True))
    assert walk.next() is None  # B is not down, but there is no time left to try it
    assert failover.down() == {A.uri: "no answer"}
    assert isinstance(walk.error(), LdapTimeout) and "budget" in str(walk.error())
    assert walk.bound(10) > 0  # never 0: that would mean "no timeout"


def test_one_connection_at_a_time_tries_the_service_account() -> None:
    """Eight threads at once: one probe, seven wait for its answer, then all are held back."""
    failover = Failover([A], down_for=5, service_dn="cn=svc")
    barrier = threading.Barrier(8)

    def ask(_: int) -> ServiceTurn[Uri]:
        barrier.wait()
        return failover.service_turn(A)

    with ThreadPoolExecutor(8) as pool:
        turns = list(pool.map(ask, range(8)))
    probes = [t for t in turns if t.probe]
    waiting = [t for t in turns if t.wait is not None]
    assert len(probes) == 1 and len(waiting) == 7
    assert not any(t.wait.done() for t in waiting if t.wait)
    error = probes[0].refused(LdapResult(49, "invalid credentials"))
    assert "service account 'cn=svc' rejected by ldap://a:389" in str(error)
    assert all(t.wait is not None and t.wait.done() for t in waiting)
    for _ in range(3):
        with pytest.raises(LdapUnavailable, match="no service bind to ldap://a:389"):
            failover.service_turn(A)
    assert failover.down() == {}  # the account's problem, not the server's


def test_an_abandoned_probe_passes_to_the_next_connection() -> None:
    failover = Failover([A], service_dn="cn=svc")
    with failover.service_turn(A) as first:  # e.g. its connection failed: no answer
        assert first.probe
        second = failover.service_turn(A)
        assert second.wait is not None and not second.wait.done()
    assert second.wait.done()
    third = failover.service_turn(A)
    assert third.probe
    third.accepted()
    later = failover.service_turn(A)
    assert not later.probe and later.wait is None  # known good: everybody binds


def test_a_server_marked_down_meanwhile_is_skipped_by_a_waiting_connection() -> None:
    failover = Failover([A, B], service_dn="cn=svc")
    with failover.service_turn(A):
        failover.mark_down(A, "StartTLS: no answer within 0.4s", timeout=True)
    with pytest.raises(Skipped, match="StartTLS: no answer") as info:
        failover.service_turn(A)
    assert info.value.timeout


# ---- both clients against real servers ---------------------------------------------------------


class Listener:
    """A TCP listener on loopback that accepts, then never answers ("hang") or closes ("close").

    Nothing is read or written: for a TLS client a hanging listener never sends its
    ServerHello, for StartTLS never its response, for clear text never a bind response.
    """

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.accepted = 0
        self._sock = socket.create_server((HOST, 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def uri(self, tls: TlsMode) -> str:
        return f"{'ldaps' if tls is TlsMode.LDAPS else 'ldap'}://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "close":
                conn.close()
            else:
                self._held.append(conn)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        for conn in self._held:
            conn.close()


def slapd_uri(s: Slapd, tls: TlsMode) -> str:
    return s.ldaps_uri if tls is TlsMode.LDAPS else s.uri


def settings_for(s: Slapd, tls: TlsMode, uris: list[str], **kw: object) -> ServerSettings:
    values: dict[str, object] = {
        "ca_file": str(s.ca_file), "service_dn": s.service_dn,
        "service_password": s.service_password, "connect_timeout": CONNECT_TIMEOUT,
        "timeout": TIMEOUT, "down_for": DOWN_FOR}
    values.update(kw)
    return ServerSettings(uris=uris, tls=tls, **values)  # type: ignore[arg-type]


def make_client(kind: str, settings: ServerSettings, threads: int = 4) -> LdapClient:
    return AsyncLdapClient(settings) if kind == "asyncio" else Ldap3Client(settings,
                                                                            threads=threads)


def failover_of(client: LdapClient) -> Failover[Any]:
    assert isinstance(client, AsyncLdapClient | Ldap3Client)
    return client.failover


@contextlib.asynccontextmanager
async def running(kind: str, settings: ServerSettings,
                  threads: int = 4) -> AsyncIterator[LdapClient]:
    client = make_client(kind, settings, threads)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def find_bob(client: LdapClient) -> int:
    return len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", ["cn"]))


@pytest.mark.parametrize("tls", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_hanging_first_server_is_failed_over(slapd: Slapd, kind: str,
                                                     tls: TlsMode) -> None:
    """The request that meets the hang is still answered, by the next server, within budget."""
    with Listener("hang") as hang:
        settings = settings_for(slapd, tls, [hang.uri(tls), slapd_uri(slapd, tls)])
        async with running(kind, settings) as client:
            failover = failover_of(client)
            t0 = time.monotonic()
            assert (await client.bind(ALICE.dn, PASSWORD)).ok
            assert time.monotonic() - t0 < BUDGET + SLACK
            assert list(failover.down()) == [hang.uri(tls)]
            seen = hang.accepted
            assert seen >= 1
            # while it is down, new connections (the first search connection) skip it
            assert await find_bob(client) == 1
            assert (await client.bind(ALICE.dn, "not-her-password")).code == 49  # a result
            assert hang.accepted == seen  # not contacted: no time lost on it
            # once down_for has passed, new connections try it again, and fail over again
            await asyncio.sleep(DOWN_FOR + 0.1)
            results = await asyncio.gather(*(client.bind(ALICE.dn, PASSWORD)
                                             for _ in range(4)))
            assert all(r.ok for r in results)
            assert hang.accepted > seen
            assert list(failover.down()) == [hang.uri(tls)]


@pytest.mark.parametrize("tls", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_closing_first_server_is_failed_over(slapd: Slapd, kind: str,
                                                     tls: TlsMode) -> None:
    with Listener("close") as closing:
        settings = settings_for(slapd, tls, [closing.uri(tls), slapd_uri(slapd, tls)])
        async with running(kind, settings) as client:
            assert (await client.bind(ALICE.dn, PASSWORD)).ok
            assert await find_bob(client) == 1
            assert list(failover_of(client).down()) == [closing.uri(tls)]
            mark = failover_of(client)._down[closing.uri(tls)]
            assert not mark.timeout, mark  # found closed at once, not by waiting for a timeout
            seen = closing.accepted
            results = await asyncio.gather(*(client.bind(ALICE.dn, PASSWORD)
                                             for _ in range(4)))
            assert all(r.ok for r in results)
            assert closing.accepted == seen


@pytest.mark.parametrize("tls", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_hanging_second_server_costs_nothing(slapd: Slapd, kind: str,
                                                     tls: TlsMode) -> None:
    with Listener("hang") as hang:
        settings = settings_for(slapd, tls, [slapd_uri(slapd, tls), hang.uri(tls)])
        async with running(kind, settings) as client:
            for _ in range(3):
                assert (await client.bind(ALICE.dn, PASSWORD)).ok
                assert await find_bob(client) == 1
            results = await asyncio.gather(*(client.bind(ALICE.dn, PASSWORD)
                                             for _ in range(4)))
            assert all(r.ok for r in results)
            assert hang.accepted == 0  # never contacted: it cannot have added any latency
            assert failover_of(client).down() == {}


@pytest.mark.parametrize("tls", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", CLIENTS)
async def test_every_server_down_is_unavailable_at_once_after_the_first_look(
        slapd: Slapd, kind: str, tls: TlsMode) -> None:
    with Listener("hang") as hang, Listener("close") as closing:
        settings = settings_for(slapd, tls, [hang.uri(tls), closing.uri(tls)])
        async with running(kind, settings) as client:
            t0 = time.monotonic()
            with pytest.raises(LdapUnavailable) as info:  # not a wrong password: an outage
                await client.bind(ALICE.dn, PASSWORD)
            assert time.monotonic() - t0 < BUDGET + SLACK
            assert hang.uri(tls) in str(info.value) and closing.uri(tls) in str(info.value)
            seen = hang.accepted, closing.accepted
            for request in (lambda: client.bind(ALICE.dn, "wrong"), lambda: find_bob(client)):
                t0 = time.monotonic()
                with pytest.raises(LdapUnavailable, match="skipped for"):
                    await request()
                assert time.monotonic() - t0 < 0.3  # no I/O at all (the counts below)
            assert (hang.accepted, closing.accepted) == seen


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_lone_hanging_server_is_a_clean_timeout(slapd: Slapd, kind: str) -> None:
    """Nowhere to fail over to: LdapTimeout within the budget, then LdapUnavailable at once."""
    with Listener("hang") as hang:
        settings = settings_for(slapd, TlsMode.NONE, [hang.uri(TlsMode.NONE)])
        async with running(kind, settings) as client:
            for request in (lambda: client.bind(ALICE.dn, "wrong"), lambda: find_bob(client)):
                t0 = time.monotonic()
                with pytest.raises(LdapTimeout, match=hang.uri(TlsMode.NONE)):
                    await request()
                assert time.monotonic() - t0 < BUDGET + SLACK
                with pytest.raises(LdapUnavailable, match="skipped for"):
                    await request()
                await asyncio.sleep(DOWN_FOR + 0.1)


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_timeout_on_a_proven_connection_does_not_mark_the_server_down(
        private_slapd: Slapd, kind: str) -> None:
    """One slow answer is the request's timeout; the server stays in use once it answers."""
    settings = settings_for(private_slapd, TlsMode.NONE, [private_slapd.uri],
                            reset_after_bind=False, pool_size=1)
    async with running(kind, settings, threads=1) as client:
        assert (await client.bind(ALICE.dn, PASSWORD)).ok
        assert await find_bob(client) == 1
        with fully_paused(private_slapd):
            t0 = time.monotonic()
            with pytest.raises(LdapTimeout):
                await client.bind(ALICE.dn, PASSWORD)
            assert time.monotonic() - t0 < TIMEOUT + SLACK
        assert failover_of(client).down() == {}
        assert (await client.bind(ALICE.dn, PASSWORD)).ok  # at once, no down_for wait
        assert await find_bob(client) == 1


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_refused_service_account_is_held_back_alike(
        monitored_slapd: Slapd, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """One service bind per down_for however many searches, until the directory accepts it."""
    caplog.set_level(logging.INFO, logger="bridge.ldap")
    s = monitored_slapd
    configured = "the-password-the-gateway-has"
    monitor = s.monitor()
    # Only a healthy slapd here: generous timeouts, so a loaded machine cannot fail it.
    settings = settings_for(s, TlsMode.STARTTLS, [s.uri], service_password=configured,
                            down_for=0.5, connect_timeout=5.0, timeout=5.0)

    async def searches(client: LdapClient, n: int) -> list[int | BaseException]:
        return await asyncio.gather(*(find_bob(client) for _ in range(n)),
                                    return_exceptions=True)

    async with running(kind, settings) as client:
        before = bind_count(monitor)
        results = await searches(client, 12)  # at once: one tries, the others wait for it
        assert all(isinstance(r, LdapUnavailable) and "service account" in str(r)
                   for r in results), results
        assert bind_count(monitor) - before == 1
        with pytest.raises(LdapUnavailable, match="no service bind to"):
            await find_bob(client)  # held back: at once, no bind
        assert bind_count(monitor) - before == 1
        assert failover_of(client).down() == {}  # not a server outage: user binds go on
        assert (await client.bind(ALICE.dn, PASSWORD)).ok
        await asyncio.sleep(0.6)
        before = bind_count(monitor)
        results = await searches(client, 12)  # down_for is over: one bind again, for all
        assert all(isinstance(r, LdapUnavailable) for r in results), results
        assert bind_count(monitor) - before == 1
        # the operator gives the account the password the gateway has
        monitor.modify(SERVICE_DN, {"userPassword": [("MODIFY_REPLACE", [configured])]})
        assert monitor.result["result"] == 0, monitor.result
        await asyncio.sleep(0.6)
        assert await searches(client, 6) == [1] * 6
    monitor.unbind()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # logged once, not per request, thread or retry
    assert s.uri in errors[0] and SERVICE_DN in errors[0]
    assert f"accepts the service account {SERVICE_DN!r} again" in caplog.text
    assert configured not in caplog.text

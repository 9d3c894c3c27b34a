"""AsyncLdapClient against a real slapd; a scripted fake server for what slapd cannot do."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from bridge.ldap import aio
from bridge.ldap import protocol as p
from bridge.ldap.aio import AsyncLdapClient
from bridge.ldap.client import (
    Entry,
    LdapOperationError,
    LdapTimeout,
    LdapUnavailable,
    Scope,
    SearchRequest,
    ServerSettings,
    TlsMode,
)
from bridge.ldap.escape import escape_filter_value
from tests.ldap.slapd import (
    GROUPS,
    GROUPS_DN,
    PEOPLE_DN,
    USERS,
    Slapd,
    bind_count,
    bound_as,
    free_port,
)

pytestmark = pytest.mark.slow

ALICE, DAVE, ERIN, ZOE = USERS["alice"], USERS["dave"], USERS["erin"], USERS["zoë"]
HOST = "127.0.0.1"


def make_settings(s: Slapd, *, tls: TlsMode = TlsMode.STARTTLS, uris: list[str] | None = None,
                  **kw: object) -> ServerSettings:
    if uris is None:
        uris = [s.ldaps_uri if tls is TlsMode.LDAPS else s.uri]
    values: dict[str, object] = {
        "ca_file": str(s.ca_file), "service_dn": s.service_dn,
        "service_password": s.service_password, "timeout": 3.0, "connect_timeout": 2.0}
    values.update(kw)
    return ServerSettings(uris=uris, tls=tls, **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def client_for(settings: ServerSettings, **kw: float) -> AsyncIterator[AsyncLdapClient]:
    """`kw`: ServerSettings fields to change, e.g. down_for."""
    client = AsyncLdapClient(dataclasses.replace(settings, **kw))  # type: ignore[arg-type]
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def wait_idle(client: AsyncLdapClient, count: int = 1) -> None:
    """Anonymous rebinds run RESET_DELAY after a connection went idle, in the background:
    wait until `count` connections are idle and none of them is still bound as a user."""
    pool = client._bind_pool
    for _ in range(400):
        if len(pool.idle) >= count and not any(c.bound_as_user for c in pool.idle):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("bind connection did not return to the pool (reset)")


async def whoami_on_idle(client: AsyncLdapClient) -> list[bytes]:
    out = []
    for conn in list(client._bind_pool.idle):
        mid = conn.take_id()
        reply = await conn.send(mid, p.encode_extended_request(mid, p.WHOAMI_OID),
                                p.EXTENDED_RESPONSE, "whoami")
        assert reply.result is not None and reply.result.code == 0
        out.append(reply.response_value or b"")
    return out


@contextlib.contextmanager
def fully_paused(s: Slapd) -> Iterator[None]:
    """SIGSTOP, and wait until every slapd thread has stopped: a thread still running could
    otherwise answer a request sent right after kill() returned."""
    pid = s.pid
    assert pid is not None
    with s.paused():
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            states = set()
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    states.add((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states <= {"T", "t"}:
                break
            time.sleep(0.005)
        yield


def dead_uri() -> str:
    return f"ldap://{HOST}:{free_port()}"


# ---- binds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [TlsMode.NONE, TlsMode.STARTTLS, TlsMode.LDAPS])
async def test_bind_success_and_invalid_credentials(slapd: Slapd, tls: TlsMode) -> None:
    async with client_for(make_settings(slapd, tls=tls)) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert (await client.bind(ALICE.dn, "not-her-password")).code == 49
        assert (await client.bind(DAVE.dn, DAVE.password)).ok  # p&ss+w%rd #ünï€
        assert (await client.bind(DAVE.dn, DAVE.password[:-1])).code == 49
        assert (await client.bind(USERS["nopass"].dn, "anything")).code == 49
        assert (await client.bind(f"uid=ghost,{PEOPLE_DN}", "x")).code == 49
        conn = next(iter(client._conns))
        assert (conn.transport.get_extra_info("ssl_object") is not None) == (tls is not
                                                                             TlsMode.NONE)


class FakeLdap:
    """A scripted LDAP server: `script(connection_no, request_no, message_id, op)` answers."""

    def __init__(self, script: Callable[[int, int, int, int], bytes | str | None],
                 delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay  # seconds before each answer: a directory far away
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def uri(self) -> str:
        assert self.server is not None
        return f"ldap://{HOST}:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> FakeLdap:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        for w in self.writers:
            w.close()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        no = self.connections
        self.connections += 1
        self.writers.append(writer)
        n = 0
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(2)
                length = head[1]
                if length & 0x80:
                    length = int.from_bytes(await reader.readexactly(length & 0x7F), "big")
                body = await reader.readexactly(length)
                mid = int.from_bytes(body[2 : 2 + body[1]], "big")
                op = body[2 + body[1]]
                if op == p.UNBIND_REQUEST:
                    break
                action = self.script(no, n, mid, op)
                n += 1
                if action == "close":
                    break
                if isinstance(action, bytes):
                    if self.delay:
                        asyncio.get_running_loop().call_later(self.delay, writer.write, action)
                    else:
                        writer.write(action)
        writer.close()


def tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 128
    return bytes((tag, len(content))) + content


def reply(mid: int, op: int, code: int = 0) -> bytes:
    result = bytes((0x0A, 1, code)) + b"\4\0\4\0"
    return tlv(0x30, tlv(0x02, mid.to_bytes(4, "big")) + tlv(op, result))


NOTICE = tlv(0x30, b"\x02\x01\x00" + tlv(0x78, b"\x0a\x01\x34\x04\x00\x04\x00"
                                          + tlv(0x8A, p.NOTICE_OF_DISCONNECTION_OID.encode())))


def plain(uri: str, **kw: object) -> ServerSettings:
    values: dict[str, object] = {"timeout": 1.0, "connect_timeout": 1.0, "reset_after_bind": False}
    values.update(kw)
    return ServerSettings(uris=[uri], tls=TlsMode.NONE, **values)  # type: ignore[arg-type]


async def test_empty_password_and_bad_filter_are_refused_without_io() -> None:
    async with FakeLdap(lambda *a: None) as fake, client_for(plain(fake.uri)) as client:
        with pytest.raises(ValueError, match="empty password"):
            await client.bind(ALICE.dn, "")
        with pytest.raises(ValueError, match="invalid filter"):
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=a)(uid=*)", ["cn"])
        await asyncio.sleep(0.05)
        assert fake.connections == 0


async def test_start_needs_no_directory() -> None:
    uri = dead_uri()
    async with client_for(plain(uri)) as client:  # start() succeeded with nothing listening
        t0 = time.monotonic()
        with pytest.raises(LdapUnavailable, match=uri):
            await client.bind(ALICE.dn, ALICE.password)
        assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("reset", [True, False])
async def test_reset_after_bind_leaves_connection_anonymous(slapd: Slapd, reset: bool) -> None:
    async with client_for(make_settings(slapd, reset_after_bind=reset)) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        await wait_idle(client)
        expected = b"" if reset else f"dn:{ALICE.dn}".encode()
        assert await whoami_on_idle(client) == [expected]
        # a failed bind leaves the connection anonymous by itself (no reset sent)
        assert (await client.bind(ALICE.dn, "wrong")).code == 49
        await wait_idle(client)
        assert await whoami_on_idle(client) == [b""]


async def test_back_to_back_binds_save_the_reset(monitored_slapd: Slapd,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """reset_after_bind: a connection goes from bind to bind without an anonymous rebind
    between them; one left idle past RESET_DELAY is anonymous again (slapd's monitor)."""
    monkeypatch.setattr(aio, "RESET_DELAY", 0.5)  # long: "back to back" on a loaded machine
    monitor = monitored_slapd.monitor()
    try:
        async with client_for(make_settings(monitored_slapd, pool_size=4)) as client:
            assert (await client.bind(DAVE.dn, DAVE.password)).ok  # the connection's setup
            await wait_idle(client)
            before = bind_count(monitor)
            for user in (ALICE, DAVE) * 5:
                assert (await client.bind(user.dn, user.password)).ok
            assert len(client._conns) == 1
            # the last user stays bound while idle, for at most RESET_DELAY
            assert bound_as(monitor).count(DAVE.dn) == 1
            assert bind_count(monitor) - before == 10  # the users' binds, no rebind between
            t0 = time.monotonic()
            await wait_idle(client)
            assert time.monotonic() - t0 >= 0.4
            assert bind_count(monitor) - before == 11  # the one deferred rebind
            assert DAVE.dn not in bound_as(monitor)
            assert await whoami_on_idle(client) == [b""]
    finally:
        monitor.unbind()


async def test_nothing_but_a_bind_runs_as_the_previous_user(
        slapd: Slapd, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection still bound as alice (reset deferred) given to a bind that fails is
    anonymous, and the search of a bind_and_search only runs after its own bind succeeded."""
    monkeypatch.setattr(aio, "RESET_DELAY", 30.0)  # no rebind during this test
    own = SearchRequest(ALICE.dn, Scope.BASE, "(objectClass=*)", ["uid", "userPassword"])
    async with client_for(make_settings(slapd, pool_size=1)) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert await whoami_on_idle(client) == [f"dn:{ALICE.dn}".encode()]
        result, entries = await client.bind_and_search(DAVE.dn, "wrong", own)
        assert (result.code, entries) == (49, [])
        assert not client._bind_pool.idle[0].bound_as_user
        assert await whoami_on_idle(client) == [b""]
        result, entries = await client.bind_and_search(DAVE.dn, DAVE.password, own)
        # as dave: alice's entry without the password hash that only alice may read
        assert result.ok and [e.dn for e in entries] == [ALICE.dn]
        assert entries[0].values("uid") and not entries[0].values("userPassword")
        assert await whoami_on_idle(client) == [f"dn:{DAVE.dn}".encode()]
        assert len(client._conns) == 1


async def test_a_bound_connection_is_reset_after_the_delay(slapd: Slapd) -> None:
    """The default RESET_DELAY: a few milliseconds, then the idle connection is anonymous."""
    async with client_for(make_settings(slapd)) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        t0 = time.monotonic()
        await wait_idle(client)
        assert aio.RESET_DELAY <= time.monotonic() - t0 < 1.0
        assert await whoami_on_idle(client) == [b""]


async def test_200_concurrent_binds_on_a_pool_of_8(slapd: Slapd) -> None:
    users = [(ALICE, True), (ALICE, False), (DAVE, True), (DAVE, False), (ZOE, True)]
    jobs = [users[i % len(users)] for i in range(200)]
    async with client_for(make_settings(slapd, pool_size=8)) as client:
        results = await asyncio.gather(*(
            client.bind(u.dn, u.password if good else u.password + "x") for u, good in jobs))
        assert [r.code for r in results] == [0 if good else 49 for _, good in jobs]
        assert len(client._conns) <= 8
        # connections went straight from bind to bind under load; none is left bound as a user
        await wait_idle(client, len(client._conns))
        assert set(await whoami_on_idle(client)) == {b""}


async def test_waiting_for_a_connection_is_bounded(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd, pool_size=1, timeout=0.2)) as client:
        pool = client._bind_pool
        held = await client._acquire(pool)  # the only connection is busy
        t0 = time.monotonic()
        with pytest.raises(LdapTimeout, match="no free LDAP bind connection"):
            await client.bind(ALICE.dn, ALICE.password)
        assert 0.15 < time.monotonic() - t0 < 1.0
        client._release(pool, held)
        assert (await client.bind(ALICE.dn, ALICE.password)).ok


async def test_waiters_are_served_in_order(slapd: Slapd) -> None:
    done: list[int] = []

    async def one(client: AsyncLdapClient, i: int) -> None:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        done.append(i)

    async with client_for(make_settings(slapd, pool_size=1)) as client:
        await asyncio.gather(*(one(client, i) for i in range(50)))
        assert done == list(range(50))
        assert len(client._conns) == 1


async def test_cancelled_waiter_does_not_leak_its_slot(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd, pool_size=1)) as client:
        pool = client._bind_pool
        held = await client._acquire(pool)
        waiting = asyncio.create_task(client.bind(ALICE.dn, ALICE.password))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # handed over and cancelled in the same loop iteration: passed on, not lost
        waiting = asyncio.create_task(client.bind(ALICE.dn, ALICE.password))
        await asyncio.sleep(0.01)
        client._release(pool, held)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        await wait_idle(client)
        assert pool.used == 0 and not pool.waiters


async def test_a_distant_directory_is_bounded_by_pool_size_over_latency() -> None:
    # 1,000 concurrent binds, 20 ms away, 50 connections: ~1000 / 50 * 20 ms = 0.4 s
    def script(conn: int, n: int, mid: int, op: int) -> bytes:
        return reply(mid, p.BIND_RESPONSE)

    async with FakeLdap(script, delay=0.02) as fake, \
            client_for(plain(fake.uri, pool_size=50, timeout=5.0)) as client:
        t0 = time.monotonic()
        results = await asyncio.gather(*(client.bind(ALICE.dn, "pw") for _ in range(1000)))
        elapsed = time.monotonic() - t0
        assert all(r.ok for r in results)
        assert fake.connections == 50
        assert 0.38 < elapsed < 2.0, elapsed


# ---- searches -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["*", ")(uid=*", "*)(uid=*))(|(uid=*", "\\", "\0", "alice*",
                                   "alice)(|(uid=*", "\\2a", "(", "a\0*"])
async def test_escaped_user_input_never_widens(slapd: Slapd, value: str) -> None:
    async with client_for(make_settings(slapd)) as client:
        flt = f"(&(objectClass=inetOrgPerson)(uid={escape_filter_value(value)}))"
        assert await client.search(PEOPLE_DN, Scope.SUBTREE, flt, ["uid"]) == []


async def test_search_finds_exactly_the_user(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd)) as client:
        for uid in ("alice", "o'brien", "zoë", "#ops+dev,team=1", "jsmith"):
            flt = f"(uid={escape_filter_value(uid)})"
            entries = await client.search(PEOPLE_DN, Scope.SUBTREE, flt, ["uid"])
            assert [e.dn for e in entries] == [USERS[uid].dn]
            assert entries[0].values("uid") == [uid.encode()]


async def test_group_member_searches(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd)) as client:
        dn = escape_filter_value(ALICE.dn)
        flt = f"(|(member={dn})(uniqueMember={dn})(memberUid=alice))"
        entries = await client.search(GROUPS_DN, Scope.ONELEVEL, flt, ["cn"])
        assert sorted(e.dn for e in entries) == sorted(
            GROUPS[g].dn for g in ("voip", "phones-unique", "sipusers"))
        smith = escape_filter_value(USERS["jsmith"].dn)  # cn=Smith\2C John\2B1,...
        entries = await client.search(GROUPS_DN, Scope.SUBTREE, f"(member={smith})", ["cn"])
        assert [e.dn for e in entries] == [GROUPS["voip"].dn]
        assert entries[0].values("CN") == [b"voip"]


async def test_attributes_multi_valued_and_non_ascii(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd)) as client:
        (erin,) = await client.search(ERIN.dn, Scope.BASE, "(objectClass=*)",
                                      ["telephoneNumber", "displayName", "userPassword"])
        assert erin.values("telephoneNumber") == [b"105", b"+49 30 5550105"]
        assert erin.values("userpassword") == []  # hidden from the service account
        (zoe,) = await client.search(PEOPLE_DN, Scope.SUBTREE, "(displayName=Zoë Saldaña)",
                                     ["displayName", "mail", "labeledURI"])
        assert zoe.dn == ZOE.dn
        assert zoe.attributes == {"displayname": ["Zoë Saldaña".encode()],
                                  "mail": [b"zoe@example.org"],
                                  "labeleduri": [b"sip:107@pbx.example.org SIP"]}
        twins = await client.search(PEOPLE_DN, Scope.SUBTREE, "(mail=twins@example.org)", ["1.1"])
        assert sorted(e.dn for e in twins) == sorted(USERS[u].dn for u in ("twin1", "twin2"))
        assert all(e == Entry(e.dn, {}) for e in twins)


async def test_size_limit_returns_partial_results(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd)) as client:
        entries = await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=*)", ["uid"], size_limit=2)
        assert len(entries) == 2


async def test_search_errors(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd)) as client:
        with pytest.raises(LdapOperationError) as info:
            await client.search(f"ou=nowhere,{slapd.base_dn}", Scope.SUBTREE, "(uid=*)", [])
        assert info.value.result.code == 32
        # the connection stays usable after an error answer
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1


async def test_anonymous_searches_without_service_account(slapd: Slapd) -> None:
    async with client_for(make_settings(slapd, service_dn=None, service_password=None)) as c:
        assert len(await c.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", ["cn"])) == 1


@pytest.mark.parametrize("password", ["Wrong-Service-Secret", None])
async def test_service_account_rejected_is_unavailable(slapd: Slapd, password: str | None) -> None:
    settings = make_settings(slapd, service_password=password)
    async with client_for(settings) as client:
        with pytest.raises(LdapUnavailable, match="service account") as info:
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])
        assert "Wrong-Service-Secret" not in str(info.value)
        assert client.failover.down() == {}  # a configuration error, not a server outage
        assert (await client.bind(ALICE.dn, ALICE.password)).ok  # binds do not need it


async def test_rejected_service_account_is_held_back(caplog: pytest.LogCaptureFixture) -> None:
    """A wrong service password: one failed bind per down_for, however many searches."""
    caplog.set_level(logging.INFO, logger="bridge.ldap")
    binds: list[int] = []
    accept = False

    def script(conn: int, n: int, mid: int, op: int) -> bytes:
        if op == p.BIND_REQUEST:
            binds.append(conn)
            return reply(mid, p.BIND_RESPONSE, 0 if accept else 49)
        return reply(mid, p.SEARCH_RESULT_DONE)

    secret = "Wrong-Service-Secret"

    async def searches(client: AsyncLdapClient, n: int) -> list[BaseException | list[Entry]]:
        return await asyncio.gather(*(client.search("o=x", Scope.BASE, "(objectClass=*)", [])
                                      for _ in range(n)), return_exceptions=True)

    async with FakeLdap(script) as fake:
        uri = fake.uri
        settings = plain(uri, service_dn="cn=svc,o=x", service_password=secret)
        async with client_for(settings, down_for=0.3) as client:
            # at once, before anything is known: one connection tries, the others wait for it
            results = await searches(client, 20)
            assert all(isinstance(r, LdapUnavailable) and "service account" in str(r)
                       for r in results), results
            assert len(binds) == 1
            for _ in range(5):  # held back: answered at once, no bind
                with pytest.raises(LdapUnavailable, match="no service bind to"):
                    await client.search("o=x", Scope.BASE, "(objectClass=*)", [])
            assert len(binds) == 1
            assert client.failover.down() == {}  # not a server outage: user binds go on
            await asyncio.sleep(0.35)  # down_for is over: one bind again, for 20 searches
            assert all(isinstance(r, LdapUnavailable) for r in await searches(client, 20))
            assert len(binds) == 2
            accept = True  # the operator fixed the password
            await asyncio.sleep(0.35)
            assert await searches(client, 5) == [[]] * 5
            assert len(binds) >= 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text  # logged once, not per request or per retry
    assert uri in errors[0].getMessage() and "cn=svc,o=x" in errors[0].getMessage()
    assert "accepts the service account 'cn=svc,o=x' again" in caplog.text
    assert secret not in caplog.text


async def test_bind_and_search_runs_as_the_user(slapd: Slapd) -> None:
    """The search after the bind runs on the user's connection, which is reset afterwards."""
    own = SearchRequest(ALICE.dn, Scope.BASE, "(objectClass=*)", ["uid", "userPassword"])
    async with client_for(make_settings(slapd)) as client:
        result, entries = await client.bind_and_search(ALICE.dn, ALICE.password, own)
        assert result.ok and [e.dn for e in entries] == [ALICE.dn]
        assert entries[0].values("userPassword")  # only alice herself may read it
        await wait_idle(client)
        assert await whoami_on_idle(client) == [b""]
        result, entries = await client.bind_and_search(ALICE.dn, "wrong", own)
        assert (result.code, entries) == (49, [])
        # an error answer to the search: raised, and the connection is still reset
        elsewhere = SearchRequest(f"ou=nowhere,{slapd.base_dn}", Scope.BASE, "(uid=*)", [])
        with pytest.raises(LdapOperationError):
            await client.bind_and_search(ALICE.dn, ALICE.password, elsewhere)
        await wait_idle(client)
        assert await whoami_on_idle(client) == [b""]
        with pytest.raises(ValueError, match="invalid filter"):
            await client.bind_and_search(ALICE.dn, ALICE.password,
                                         SearchRequest(ALICE.dn, Scope.BASE, "uid=x", []))


# ---- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("tls", [TlsMode.STARTTLS, TlsMode.LDAPS])
async def test_wrong_ca_is_unavailable(slapd: Slapd, other_ca: str, tls: TlsMode) -> None:
    async with client_for(make_settings(slapd, tls=tls, ca_file=other_ca)) as client:
        with pytest.raises(LdapUnavailable, match="certificate verify failed"):
            await client.bind(ALICE.dn, ALICE.password)
        with pytest.raises(LdapUnavailable, match="skipped"):
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])
    settings = make_settings(slapd, tls=tls, ca_file=other_ca, verify=False)
    async with client_for(settings) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok


@pytest.mark.parametrize("tls", [TlsMode.STARTTLS, TlsMode.LDAPS])
async def test_tls_name_is_checked(slapd: Slapd, tls: TlsMode) -> None:
    async with client_for(make_settings(slapd, tls=tls, tls_name="wrong.example.org")) as client:
        with pytest.raises(LdapUnavailable, match=r"wrong\.example\.org"):
            await client.bind(ALICE.dn, ALICE.password)
    async with client_for(make_settings(slapd, tls=tls, tls_name="localhost")) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok


async def test_ldaps_mode_never_falls_back_to_clear_text(slapd: Slapd) -> None:
    tls_port_as_ldap = f"ldap://{HOST}:{slapd.tls_port}"
    async with client_for(make_settings(slapd, tls=TlsMode.LDAPS,
                                        uris=[tls_port_as_ldap])) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        (conn,) = client._conns
        assert conn.transport.get_extra_info("ssl_object") is not None
    async with client_for(make_settings(slapd, tls=TlsMode.LDAPS, uris=[slapd.uri])) as client:
        with pytest.raises(LdapUnavailable, match="TLS"):  # a clear-text port: no TLS, no bind
            await client.bind(ALICE.dn, ALICE.password)


def test_bad_uris_are_refused_at_construction() -> None:
    for uri in ("http://example.org", "ldap://", "ldap://host:notaport"):
        with pytest.raises(ValueError):
            AsyncLdapClient(ServerSettings(uris=[uri]))
    with pytest.raises(ValueError, match="no LDAP server"):
        AsyncLdapClient(ServerSettings(uris=[]))


def test_uvloop_starttls_and_ldaps(slapd: Slapd) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        for tls in (TlsMode.STARTTLS, TlsMode.LDAPS):
            async with client_for(make_settings(slapd, tls=tls)) as client:
                assert (await client.bind(DAVE.dn, DAVE.password)).ok
                assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=dave)", [])) == 1

    uvloop.run(main())


# ---- failover and outages ---------------------------------------------------------------------


async def test_failover_to_the_second_server(slapd: Slapd) -> None:
    dead = dead_uri()
    async with client_for(make_settings(slapd, uris=[dead, slapd.uri])) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1
        until = client.failover._down[dead].until
        assert len(await asyncio.gather(*(client.bind(ALICE.dn, ALICE.password)
                                          for _ in range(20)))) == 20
        assert client.failover._down[dead].until == until  # skipped, not tried again


async def test_all_servers_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.ldap")
    a, b = dead_uri(), dead_uri()
    async with client_for(ServerSettings(uris=[a, b], tls=TlsMode.NONE)) as client:
        with pytest.raises(LdapUnavailable) as info:
            await client.bind(DAVE.dn, DAVE.password)
        assert a in str(info.value) and b in str(info.value)
        t0 = time.monotonic()
        with pytest.raises(LdapUnavailable, match="skipped"):
            await client.bind(DAVE.dn, DAVE.password)
        assert time.monotonic() - t0 < 0.05
    assert DAVE.password not in caplog.text and DAVE.password not in str(info.value)
    assert caplog.text.count("skipping it") == 2


async def test_timeout_with_paused_server(private_slapd: Slapd) -> None:
    s = private_slapd
    settings = make_settings(s, timeout=0.3, connect_timeout=0.3)
    async with client_for(settings, down_for=0.1) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])
        await wait_idle(client)
        with fully_paused(s):
            t0 = time.monotonic()
            with pytest.raises(LdapTimeout, match="bind"):
                await client.bind(ALICE.dn, "wrong")  # its late 49 must never be read
            assert 0.25 < time.monotonic() - t0 < 1.0
            with pytest.raises(LdapTimeout, match="search"):
                await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])
            # a new connection cannot finish StartTLS: connect timeout, also LdapTimeout
            t0 = time.monotonic()
            async with client_for(settings) as fresh:
                with pytest.raises(LdapTimeout, match="no LDAP server available"):
                    await fresh.bind(ALICE.dn, ALICE.password)
            assert time.monotonic() - t0 < 1.0
        # back: the new connection must finish StartTLS within 0.3 s, which a just-resumed
        # slapd on a busy machine may miss once (then it is skipped for down_for = 0.1 s)
        deadline = time.monotonic() + 3
        while True:
            await asyncio.sleep(0.1)
            try:
                assert (await client.bind(ALICE.dn, ALICE.password)).ok
                break
            except (LdapTimeout, LdapUnavailable):
                assert time.monotonic() < deadline
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1


async def test_restarted_server_is_reconnected_transparently(private_slapd: Slapd) -> None:
    s = private_slapd
    async with client_for(make_settings(s)) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1
        await wait_idle(client)
        before = set(client._conns)
        s.restart()
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1
        assert not before & client._conns
        s.kill()  # a crash: same story
        s.start()
        assert (await client.bind(DAVE.dn, DAVE.password)).ok


async def test_stopped_server_is_unavailable_quickly(private_slapd: Slapd) -> None:
    s = private_slapd
    async with client_for(make_settings(s), down_for=0.2) as client:
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1
        s.stop()
        t0 = time.monotonic()
        with pytest.raises(LdapUnavailable, match=s.uri):
            await client.bind(ALICE.dn, ALICE.password)
        with pytest.raises(LdapUnavailable, match=s.uri):
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])
        assert time.monotonic() - t0 < 0.5
        s.start()
        await asyncio.sleep(0.25)  # the server's down mark expires
        assert (await client.bind(ALICE.dn, ALICE.password)).ok
        assert len(await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=bob)", [])) == 1


async def test_close_then_restart(slapd: Slapd) -> None:
    client = AsyncLdapClient(make_settings(slapd))
    await client.start()
    assert (await client.bind(ALICE.dn, ALICE.password)).ok
    await client.close()
    assert not client._conns
    with pytest.raises(LdapUnavailable, match="closed"):
        await client.bind(ALICE.dn, ALICE.password)
    await client.start()
    assert (await client.bind(ALICE.dn, ALICE.password)).ok
    await client.close()


# ---- retry policy and protocol failures (scripted server) -------------------------------


async def test_stale_pooled_connection_is_retried_once() -> None:
    def script(conn: int, n: int, mid: int, op: int) -> bytes | str:
        return "close" if (conn, n) == (0, 1) else reply(mid, p.BIND_RESPONSE)

    async with FakeLdap(script) as fake, client_for(plain(fake.uri)) as client:
        assert (await client.bind(ALICE.dn, "pw")).ok
        assert (await client.bind(ALICE.dn, "pw")).ok  # conn 0 dies under it: retried on 1
        assert fake.connections == 2


async def test_failure_on_a_fresh_connection_is_not_retried() -> None:
    async with FakeLdap(lambda *a: "close") as fake, client_for(plain(fake.uri)) as client:
        with pytest.raises(LdapUnavailable, match="closed"):
            await client.bind(ALICE.dn, "pw")
        assert fake.connections == 1


async def test_timeout_is_not_retried_and_discards_the_connection() -> None:
    """On a connection the server has answered before: the request's timeout, nothing more."""
    def script(conn: int, n: int, mid: int, op: int) -> bytes | None:
        return None if (conn, n) == (0, 1) else reply(mid, p.BIND_RESPONSE)

    async with FakeLdap(script) as fake, client_for(plain(fake.uri, timeout=0.2)) as client:
        assert (await client.bind(ALICE.dn, "pw")).ok
        with pytest.raises(LdapTimeout, match="no answer to bind"):
            await client.bind(ALICE.dn, "pw")
        assert fake.connections == 1
        assert client.failover.down() == {}  # a proven server is not marked down
        assert (await client.bind(ALICE.dn, "pw")).ok
        assert fake.connections == 2


async def test_cancelled_request_discards_the_connection() -> None:
    def script(conn: int, n: int, mid: int, op: int) -> bytes | None:
        return None if (conn, n) == (0, 1) else reply(mid, p.BIND_RESPONSE)

    async with FakeLdap(script) as fake, client_for(plain(fake.uri)) as client:
        assert (await client.bind(ALICE.dn, "pw")).ok
        task = asyncio.create_task(client.bind(ALICE.dn, "pw"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.bind(ALICE.dn, "pw")).ok
        assert fake.connections == 2


async def test_notice_of_disconnection_while_idle() -> None:
    def script(conn: int, n: int, mid: int, op: int) -> bytes:
        ok = reply(mid, p.BIND_RESPONSE)
        return ok + NOTICE if conn == 0 else ok

    async with FakeLdap(script) as fake, client_for(plain(fake.uri)) as client:
        assert (await client.bind(ALICE.dn, "pw")).ok
        await asyncio.sleep(0.05)
        assert all(c.closed for c in client._bind_pool.idle)
        assert (await client.bind(ALICE.dn, "pw")).ok
        assert fake.connections == 2


async def test_unavailable_result_codes() -> None:
    codes = {p.BIND_REQUEST: [51, 0], p.SEARCH_REQUEST: [52, 32, 0]}

    def script(conn: int, n: int, mid: int, op: int) -> bytes:
        answer = p.BIND_RESPONSE if op == p.BIND_REQUEST else p.SEARCH_RESULT_DONE
        return reply(mid, answer, codes[op].pop(0))

    async with FakeLdap(script) as fake, client_for(plain(fake.uri)) as client:
        with pytest.raises(LdapUnavailable, match="result 51"):
            await client.bind(ALICE.dn, "pw")
        assert (await client.bind(ALICE.dn, "pw")).ok
        with pytest.raises(LdapUnavailable, match="result 52"):
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=x)", [])
        with pytest.raises(LdapOperationError) as info:
            await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=x)", [])
        assert info.value.result.code == 32
        assert await client.search(PEOPLE_DN, Scope.SUBTREE, "(uid=x)", []) == []


async def test_garbage_from_the_server_is_unavailable() -> None:
    async with FakeLdap(lambda *a: b"\x30\x80garbage") as fake, \
            client_for(plain(fake.uri)) as client:
        with pytest.raises(LdapUnavailable, match="malformed response"):
            await client.bind(ALICE.dn, "pw")


@pytest.mark.parametrize("tls", [TlsMode.STARTTLS, TlsMode.LDAPS])
async def test_connect_timeout_on_a_silent_server(tls: TlsMode, tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    scheme = "ldaps" if tls is TlsMode.LDAPS else "ldap"
    settings = ServerSettings(uris=[f"{scheme}://{HOST}:{port}"], tls=tls, connect_timeout=0.3)
    try:
        async with client_for(settings) as client:
            t0 = time.monotonic()
            with pytest.raises(LdapTimeout, match="no LDAP server available"):
                await client.bind(ALICE.dn, ALICE.password)
            assert time.monotonic() - t0 < 1.0
    finally:
        server.close()

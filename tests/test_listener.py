"""The listener against an attacker: raw sockets to the real gateway (`zoiper-bridge serve`).

Short timeouts and small caps are configured so that every bound is hit in about a second.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bridge.errors import DEFAULT_MESSAGES
from bridge.zoiper.document import parse_config, parse_error
from tests.gateway import Gateway
from tests.test_e2e_abuse import PASSWORDS, write_site
from tests.upstreams import TLSFiles

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
SLACK = 1.5  # scheduling on a busy 2-core machine
SECRET = "Sl0w-L0ris-Secret!"  # sent by the attacker: must never reach the log
ALICE = str(httpx.QueryParams({"user": "alice", "password": PASSWORDS["alice"]}))
LISTENER = f"""
header_timeout = {HEADER_TIMEOUT}
idle_timeout = {IDLE_TIMEOUT}
max_target_length = 8192
max_header_size = 16384
max_headers = 50
"""


def gateway_with(tmp_path: Path, server: str) -> Gateway:
    config = write_site(tmp_path)
    config.write_text(config.read_text().replace('[server]\nlog_level = "debug"\n',
                                                 f'[server]\nlog_level = "debug"\n{server}'))
    return Gateway(config, tmp_path)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_with(tmp_path_factory.mktemp("listener"), LISTENER) as gw:
        yield gw


def connect(gw: Gateway, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10,
                                    source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, str]:
    """Everything until the server closes: (bytes, "eof" | "reset" | "open")."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, "open"
    except ConnectionResetError:
        return data, "reset"
    return data, "eof"


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1))


def assert_error_document(data: bytes, status: int, key: str) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), lines[0]
    headers = {name.lower(): value for name, _, value in
               (line.partition(": ") for line in lines[1:])}
    assert headers["content-type"] == "application/xml; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert parse_error(body) == DEFAULT_MESSAGES[key]


# -- every malformed request gets our document (or an immediate close) ----------------------

WEBSOCKET = (f"GET /provision?user=alice&password={SECRET} HTTP/1.1\r\nHost: x\r\n"
             "Connection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
             ).encode()
MALFORMED = {
    "control byte in target": (b"GET /provision\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                               "bad_request"),
    "8-bit byte in path": (b"GET /provision\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "8-bit byte in query": (b"GET /provision?user=\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                            "bad_request"),
    "target over 64 KiB": (b"GET /provision?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                           414, "bad_request"),
    "target over the limit": (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n", 414, "bad_request"),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 405,
                "method_not_allowed"),
    "unknown method": (b"FROB /provision HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method_not_allowed"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "bad_request"),
    "HTTP/2.0 request line": (b"GET /provision HTTP/2.0\r\nHost: x\r\n\r\n", 505, "bad_request"),
    "HTTP/1.2": (b"GET /provision HTTP/1.2\r\nHost: x\r\n\r\n", 505, "bad_request"),
    "no version, one line": (f"GET /provision?user=alice&password={SECRET}\r\n".encode(), 400,
                             "bad_request"),
    "no version, blank line": (b"GET /provision\r\n\r\n", 400, "bad_request"),
    "Content-Length with Transfer-Encoding": (
        b"POST /provision HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    "WebSocket upgrade": (WEBSOCKET, 400, "bad_request"),
    "h2c upgrade": (b"GET /provision HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings"
                    b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 400,
                    "bad_request"),
    "too many headers": (b"GET /provision HTTP/1.1\r\n" + b"X-A: b\r\n" * 60 + b"\r\n", 431,
                         "bad_request"),
    "headers too large": (b"GET /provision HTTP/1.1\r\nX-A: " + b"b" * 20000 + b"\r\n\r\n", 431,
                          "bad_request"),
    "TLS hello on plain HTTP": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
                                400, "bad_request"),
    "bare LF line ends": (b"GET /provision HTTP/1.1\nHost: x\n\n", 400, "bad_request"),
    "invalid header name": (b"GET /provision HTTP/1.1\r\nBad Header: x\r\n\r\n", 400,
                            "bad_request"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_our_error_document_and_a_close(gateway, case):
    request, status, key = MALFORMED[case]
    with connect(gateway) as sock:
        start = time.monotonic()
        sock.sendall(request)
        data, end = read_all(sock)
        elapsed = time.monotonic() - start
    # answered at once, not when the header timeout strikes
    assert elapsed < HEADER_TIMEOUT, (case, elapsed)
    assert end in ("eof", "reset"), case
    assert_error_document(data, status, key)


def test_bounds_leave_an_ordinary_request_alone(gateway):
    """The positive control: 40 headers of 200 bytes and a 4 KiB target are served."""
    headers = "".join(f"X-Pad-{i}: {'v' * 190}\r\n" for i in range(40))
    target = f"/provision?{ALICE}&pad={'p' * 3500}"
    with connect(gateway) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
                     .encode())
        data, end = read_all(sock)
    assert data.startswith(b"HTTP/1.1 200 "), data[:100]
    assert parse_config(data.partition(b"\r\n\r\n")[2])["accounts"]
    assert end == "eof"


def test_http_1_0_is_served(gateway):
    with connect(gateway) as sock:
        sock.sendall(f"GET /provision?{ALICE} HTTP/1.0\r\n\r\n".encode())
        data, end = read_all(sock)
    assert data.startswith(b"HTTP/1.1 200 ") and end == "eof"


def test_a_raw_fuzz_gets_nothing_but_our_documents(gateway):
    """Mutated requests: whatever is answered is an XML document; else the line is closed."""
    rng = random.Random(20261130)
    base = (f"GET /provision?{ALICE}&version=1.14 HTTP/1.1\r\nHost: gw.example.org\r\n"
            "User-Agent: Zoiper\r\nConnection: close\r\n\r\n").encode()

    def mutated() -> bytes:
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at, size = rng.randrange(len(data)), rng.randint(1, 8)
            choice = rng.random()
            if choice < 0.4:
                data[at] = rng.randrange(256)
            elif choice < 0.7:
                data[at:at] = bytes(rng.randrange(256) for _ in range(size))
            else:
                del data[at:at + size]
        return bytes(data)

    def exchange(request: bytes) -> tuple[bytes, str]:
        with connect(gateway) as sock:
            sock.sendall(request)
            return read_all(sock, HEADER_TIMEOUT + 3)

    requests = [mutated() for _ in range(150)]
    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(exchange, requests))
    answered = 0
    for request, (data, end) in zip(requests, answers, strict=True):
        assert end in ("eof", "reset"), request
        if not data:
            continue
        answered += 1
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 "), (request, data[:200])
        assert b"\r\ncontent-type: application/xml; charset=utf-8" in head, (request, head)
        assert b"\r\ncache-control: no-store" in head, (request, head)
    assert answered > 100, "most mutations get an answer: the test proves something"


# -- slow and silent clients ----------------------------------------------------------------

def test_slowloris_and_silent_connections_are_closed_in_time(gateway):
    pid = gateway.process.pid if gateway.process else 0
    rss_before = rss_kb(pid)
    request = (f"GET /provision?user=alice&password={SECRET} HTTP/1.1\r\n"
               "Host: x\r\nUser-Agent: slow\r\n\r\n").encode()
    trickling = [connect(gateway) for _ in range(40)]
    silent = [connect(gateway) for _ in range(40)]
    opened = time.monotonic()
    closed_at: dict[socket.socket, float] = {}
    received: dict[socket.socket, bytes] = {}
    rss_during = 0
    sent = 0
    for sock in trickling + silent:
        sock.setblocking(False)
    while len(closed_at) < 80 and time.monotonic() - opened < HEADER_TIMEOUT + 5:
        for sock in trickling:  # one byte each, every 50 ms: the head would need ~4 s
            if sock not in closed_at:
                with contextlib.suppress(OSError):
                    sock.send(request[sent:sent + 1])
        sent += 1
        time.sleep(0.05)
        for sock in trickling + silent:
            if sock in closed_at:
                continue
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            received[sock] = received.get(sock, b"") + chunk
            if not chunk:
                closed_at[sock] = time.monotonic() - opened
        rss_during = max(rss_during, rss_kb(pid))
    for sock in trickling + silent:
        sock.close()
    assert len(closed_at) == 80, f"{80 - len(closed_at)} connections still open"
    assert max(closed_at.values()) < HEADER_TIMEOUT + SLACK, sorted(closed_at.values())[-5:]
    assert sent < len(request), "the trickled request was completed: the test proves nothing"
    assert not any(received.values()), "a timed-out connection gets no answer, just a close"
    time.sleep(0.3)
    rss_after = rss_kb(pid)
    assert rss_during - rss_before < 8 * 1024, (rss_before, rss_during)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)


def test_kept_alive_connections_are_closed_when_idle(gateway):
    request = f"GET /provision?{ALICE} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    for junk in (False, True):
        with connect(gateway) as sock:
            sock.sendall(request)
            sock.settimeout(5)
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 "), first[:100]
            start = time.monotonic()
            if junk:  # blank lines start no request: they do not keep the connection open
                sock.setblocking(False)
                end = "open"
                while time.monotonic() - start < HEADER_TIMEOUT + 3:
                    try:
                        sock.send(b"\r\n")
                        if sock.recv(65536) == b"":
                            end = "eof"
                            break
                    except BlockingIOError:
                        pass
                    except OSError:
                        end = "reset"
                        break
                    time.sleep(0.2)
            else:
                rest, end = read_all(sock, IDLE_TIMEOUT + 3)
                assert b"HTTP/1.1" not in rest, "no second answer"
            waited = time.monotonic() - start
        assert end in ("eof", "reset")
        assert waited < (HEADER_TIMEOUT if junk else IDLE_TIMEOUT) + SLACK, waited


def test_a_header_flood_is_cut_off_and_memory_stays_flat(gateway):
    pid = gateway.process.pid if gateway.process else 0
    rss_before = rss_kb(pid)
    total = 40 * 1024 * 1024
    accepted = 0
    peak = rss_before
    outcome: list[str] = []

    def flood() -> None:
        nonlocal accepted
        with connect(gateway) as sock:
            sock.sendall(b"GET /provision HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            chunk = b"a" * 65536
            try:
                while accepted < total:
                    accepted += sock.send(chunk)
            except OSError:
                outcome.append("cut off")
                return
            outcome.append("accepted whole")

    thread = threading.Thread(target=flood)
    thread.start()
    while thread.is_alive():
        peak = max(peak, rss_kb(pid))
        thread.join(0.02)
    time.sleep(0.3)
    rss_after = rss_kb(pid)
    assert outcome == ["cut off"]
    # the kernel's socket buffers take a few MB before the server has read anything
    assert accepted < 16 * 1024 * 1024, accepted
    assert peak - rss_before < 8 * 1024, (rss_before, peak)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
    # and the gateway still serves
    with connect(gateway) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock)[0].startswith(b"HTTP/1.1 200 ")


# -- logs -----------------------------------------------------------------------------------

def test_no_password_in_the_debug_log_whatever_the_request(gateway):
    for request in (WEBSOCKET, MALFORMED["no version, one line"][0],
                    f"GET /provision?user=alice&password={SECRET}\xff HTTP/1.1\r\n\r\n"
                    .encode("latin-1"),
                    f"GET /provision?user=alice&password={SECRET}&pad={'a' * 9000} "
                    "HTTP/1.1\r\n\r\n".encode(),
                    f"GET /provision?user=alice&password={SECRET} HTTP/1.1\r\n"
                    f"Host: x\r\nX-A: {'b' * 20000}\r\n\r\n".encode(),
                    f"GET /provision?user=alice&password={SECRET} HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n".encode()):
        with connect(gateway) as sock:
            sock.sendall(request)
            read_all(sock)
    time.sleep(0.3)
    output = gateway.output()
    assert "DEBUG" in output, "the gateway does not log at debug level: the test proves nothing"
    for form in (SECRET, SECRET.replace("!", "%21"), SECRET.encode().hex()):
        assert form not in output
    assert "refused with 400" in output
    assert "Unsupported upgrade" not in output and "Invalid HTTP request" not in output


# -- connection caps ------------------------------------------------------------------------

def test_connections_are_capped_per_address_and_in_total(tmp_path):
    caps = LISTENER + ("max_connections = 5\nmax_connections_per_address = 3\n"
                       "connection_cap_exempt = []\n")
    with gateway_with(tmp_path, caps) as gw:
        held = [connect(gw, "127.0.0.1") for _ in range(3)]
        time.sleep(0.2)
        with connect(gw, "127.0.0.1") as excess:
            data, end = read_all(excess, 3)
        assert end in ("eof", "reset")
        assert_error_document(data, 503, "upstream_unavailable")
        assert b"\r\nretry-after: " in data
        held += [connect(gw, "127.0.0.2") for _ in range(2)]  # 5 in all: the total cap
        time.sleep(0.2)
        with connect(gw, "127.0.0.3") as excess:
            data, end = read_all(excess, 3)
        assert_error_document(data, 503, "upstream_unavailable")
        held.pop(0).close()  # a place is free again for 127.0.0.1
        time.sleep(0.2)
        with connect(gw, "127.0.0.1") as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(sock)[0].startswith(b"HTTP/1.1 200 ")
        for sock in held:
            sock.close()


def test_a_tls_handshake_that_never_comes_is_dropped(tmp_path):
    tls = TLSFiles.create(tmp_path)
    server = LISTENER + f'tls_certificate = "{tls.server_cert}"\ntls_key = "{tls.server_key}"\n'
    with gateway_with(tmp_path, server) as gw:
        with connect(gw) as silent:
            start = time.monotonic()
            data, end = read_all(silent, HEADER_TIMEOUT + 5)
            waited = time.monotonic() - start
        assert (data, end) == (b"", "eof") or end == "reset"
        assert waited < HEADER_TIMEOUT + SLACK, waited
        context = ssl.create_default_context(cafile=str(tls.ca))
        response = httpx.get(f"https://127.0.0.1:{gw.port}/metrics", verify=context)
        assert response.status_code == 200


# -- units ----------------------------------------------------------------------------------

def test_addresses_are_counted_per_host_and_per_ipv6_64():
    from bridge.clientaddr import parse_networks
    from bridge.listener import LOOPBACK, address_key

    exempt = (*LOOPBACK, *parse_networks(["10.0.0.0/8"]))
    assert address_key(("192.0.2.7", 1234), exempt) == "192.0.2.7"
    assert address_key(("2001:db8:1:2:aaaa::1", 1), exempt) == "2001:db8:1:2::/64"
    assert address_key(("2001:db8:1:2:bbbb::9", 1), exempt) == "2001:db8:1:2::/64"
    assert address_key(("::ffff:192.0.2.7", 1), exempt) == "192.0.2.7"
    for never in ("127.0.0.5", "::1", "10.1.2.3", "::ffff:127.0.0.1"):
        assert address_key((never, 1), exempt) is None
    assert address_key(None, exempt) is None


def test_the_options_reach_worker_processes():
    """`serve --workers` pickles them (spawn); the refusals are rendered once, here."""
    import pickle

    from bridge.listener import ListenerSettings, uvicorn_options

    original = uvicorn_options(ListenerSettings(idle_timeout=7.0), {"bad_request": "Nope."},
                               tls=True)
    options = pickle.loads(pickle.dumps(original))  # noqa: S301 (our own bytes)
    assert options["ws"] == "none" and options["timeout_keep_alive"] == 7.0
    refusal = options["http"].keywords["refusals"][431]
    assert refusal.startswith(b"HTTP/1.1 431 ") and refusal.endswith(b">Nope.</error>")
    loop = options["loop"]()
    try:
        assert loop.handshake_timeout == 10.0
    finally:
        loop.close()


def test_the_open_file_limit_is_raised_for_max_connections():
    import resource

    from bridge.listener import FILE_HEADROOM, ListenerSettings, raise_file_limit

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, before[1]))
        assert raise_file_limit(ListenerSettings(max_connections=1000)) is None
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + FILE_HEADROOM
        if before[1] != resource.RLIM_INFINITY:  # a hard limit too low: said, not hidden
            warning = raise_file_limit(ListenerSettings(max_connections=before[1] + 1))
            assert warning is not None and "LimitNOFILE" in warning
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_refused_phone_reads_its_503_though_it_sent_its_request_at_once(tmp_path):
    """A phone writes its request as soon as it is connected. Closing a socket whose request
    is still unread makes the kernel send a reset, which can destroy the 503 before the phone
    reads it (the restart storm saw thousands of resets instead of 503s): the listener closes
    its side only after the answer, and reads until the client is gone (bench/storm.py)."""
    with gateway_with(tmp_path, "max_connections = 1\n") as gw:  # held stays 10 s
        time.sleep(0.5)  # the start-up probe's connection is gone
        with connect(gw) as held:
            time.sleep(0.2)
            for _ in range(3):
                with connect(gw) as excess:
                    excess.sendall(b"GET /provision?user=alice HTTP/1.1\r\nHost: x\r\n\r\n")
                    time.sleep(0.3)  # the request is there before anyone reads the answer
                    data, end = read_all(excess, 3)
                assert end == "eof", (end, data)
                assert_error_document(data, 503, "upstream_unavailable")
                assert b"\r\nretry-after: " in data
            held.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(held)[0].startswith(b"HTTP/1.1 200 ")


def _storm(gw: Gateway, phones: int) -> list[bytes]:
    """`phones` requests on their own connections: all connected, then all sent at once."""
    socks = [connect(gw) for _ in range(phones)]
    time.sleep(0.2)
    request = f"GET /provision?{ALICE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for sock in socks:
        sock.sendall(request.encode())
    answers = []
    for sock in socks:
        with sock:
            answers.append(read_all(sock, 30)[0])
    return answers


@pytest.mark.parametrize("max_queue_time", [0.01, 0])
def test_requests_that_would_only_queue_get_an_immediate_503(tmp_path, max_queue_time):
    """Past MIN_ADMITTED (32) requests in flight, a request is refused when those in flight
    would take longer than `max_queue_time` to finish at the rate the busy worker finishes
    them. The first burst starts a busy spell, which admits everything until 32 requests
    have finished (the rate is not known before): all 150 are served. The second comes
    while the spell lasts: a worker would have to finish over 3,200 requests a second to
    take more than 32 of them at 0.01 s; the rest get a 503 + Retry-After. With 0 (off)
    every one is served, however long it waits."""
    server = f"max_queue_time = {max_queue_time}\nmax_connections_per_address = 0\n"
    with gateway_with(tmp_path, server) as gw:
        first = _storm(gw, 150)
        second = _storm(gw, 150)
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in first), [a[:40] for a in first]
    served = [a for a in second if a.startswith(b"HTTP/1.1 200 ")]
    refused = [a for a in second if a.startswith(b"HTTP/1.1 503 ")]
    assert len(served) + len(refused) == len(second), [a[:40] for a in second]
    for data in served:
        assert parse_config(data.partition(b"\r\n\r\n")[2])["accounts"]
    for data in refused:
        assert_error_document(data, 503, "upstream_unavailable")
        assert b"\r\nretry-after: " in data
    if max_queue_time:
        assert len(served) >= 32 and len(refused) > 0, (len(served), len(refused))
    else:
        assert len(served) == len(second)

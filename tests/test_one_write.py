"""A response head leaves with its body (bridge.listener._OneWrite), over real sockets.

Written apart, a worker killed between the two writes left a reverse proxy holding a head it
had passed on (tests/ops/test_pair.py saw the truncated 200); a head never leaves alone.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from bridge.listener import _OneWrite
from tests.gateway import Gateway
from tests.ops.conftest import demo_copy

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


def pending(sock: socket.socket) -> bytes:
    """What has arrived on a non-blocking socket so far."""
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""


async def transport_pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
        asyncio.Protocol, ours)
    return transport, peer


async def test_the_head_waits_for_the_body_and_both_leave_in_one_write() -> None:
    transport, peer = await transport_pair()
    one = _OneWrite(transport, asyncio.get_running_loop())
    one.write(HEAD)
    # the transport itself sends at once (the socket's buffer is empty) ...
    transport.write(b"x")
    assert pending(peer) == b"x"
    # ... the head waits for the body, in the same turn as an app's two sends
    assert pending(peer) == b""
    one.write(b"hello")
    assert pending(peer) == HEAD + b"hello"
    one.write(b"more")  # only the head is held: later writes go at once
    assert pending(peer) == b"more"
    await asyncio.sleep(0.05)  # the turn ends: nothing else was held
    assert pending(peer) == b""
    one.close()
    peer.close()


async def test_a_head_without_body_in_the_same_turn_still_leaves() -> None:
    """A HEAD answer, a stream, or an app that closes: the head is not held any longer."""
    transport, peer = await transport_pair()
    one = _OneWrite(transport, asyncio.get_running_loop())
    one.write(HEAD)  # held for this turn only
    assert pending(peer) == b""
    await asyncio.sleep(0.05)
    assert pending(peer) == HEAD
    one.close()
    peer.close()
    transport, peer = await transport_pair()
    one = _OneWrite(transport, asyncio.get_running_loop())
    one.write(HEAD)
    one.close()  # closing sends what is held first
    assert pending(peer) == HEAD
    peer.close()


async def test_100_continue_is_not_held() -> None:
    transport, peer = await transport_pair()
    one = _OneWrite(transport, asyncio.get_running_loop())
    one.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert pending(peer) == b"HTTP/1.1 100 Continue\r\n\r\n"
    one.write(HEAD)  # the response head after it is held
    assert pending(peer) == b""
    one.write(b"hello")
    assert pending(peer) == HEAD + b"hello"
    one.close()
    peer.close()


def test_the_gateway_answers_head_then_get_on_one_connection(tmp_path: Path) -> None:
    """Through the real listener: HEAD has no body write, yet its head arrives at once."""
    with Gateway(demo_copy(tmp_path), tmp_path) as gw, \
            socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        query = b"/provision?user=alice&password=wonderland"
        sock.sendall(b"HEAD " + query + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        sock.sendall(b"GET " + query + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"</options>" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")

"""`serve --workers N`: one SO_REUSEPORT socket per worker, supervised by the parent."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.gateway import free_port


def test_workers_share_the_port_and_stop_cleanly(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--workers", "2",
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/provision",
                                     params={"user": "alice", "password": "wonderland"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        # The workers run the hardened listener (its options are pickled to them).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /provision?password=x HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"content-type: application/xml; charset=utf-8\r\n" in answer
        # New connections reach both workers (SO_REUSEPORT), and each answers with the
        # total over both (prometheus-client's multiprocess mode): the one request above.
        seen = set()
        for _ in range(20):
            with httpx.Client() as client:
                metrics = client.get(f"http://127.0.0.1:{port}/metrics").text
            seen.add("bridge_requests_total 1.0\n" in metrics)
        assert seen == {True}
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert output.count("Finished server process") == 2


def test_a_taken_port_stops_everything_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--workers", "2",
                                 "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr

"""deploy/nginx.conf: passes Debian 12's `nginx -t`, and no log it writes holds a password,
with the gateway serving, down, or too slow to answer."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import unavailable
from tests.gateway import Gateway, free_port
from tests.ops.conftest import demo_copy

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx.conf"
PASSWORD = "Sekr3t-in-the-Query"
# Debian's /etc/nginx/nginx.conf, cut to what matters: its main error log at the default
# level ("error"), the site included inside http.
MAIN = """
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    include {d}/site.conf;
}}
"""


def nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)
    if path is None:
        unavailable("nginx (Debian's package) is not installed")
    return path


def site(folder: Path, port: int, instances: list[int],
         read_timeout: str | None = None) -> Path:
    """The shipped site with this test's paths and ports, its upstream listing `instances`,
    and, given, a shorter `read_timeout`: nothing else of it changed."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(folder / "server.pem")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    text = SITE.read_text()
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in instances)
    changes = [(":443", f":{port}"), ("443 ssl", f"{port} ssl"),
               ("    server 127.0.0.1:8080;\n", servers),
               ("/var/log/nginx", str(folder / "logs"))]
    if read_timeout is not None:
        changes.append(("proxy_read_timeout 15s", f"proxy_read_timeout {read_timeout}"))
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(r"/etc/ssl/\S+\.pem", str(folder / "server.pem"), text)
    (folder / "site.conf").write_text(text)
    (folder / "logs").mkdir()
    (folder / "tmp").mkdir()
    main = folder / "nginx.conf"
    main.write_text(MAIN.format(d=folder))
    return main


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    binary = nginx()
    port, upstream = free_port(), free_port()
    main = site(tmp_path, port, [upstream], read_timeout="1s")
    check = subprocess.run([binary, "-t", "-c", str(main), "-p", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    proc = subprocess.Popen([binary, "-c", str(main), "-p", str(tmp_path)],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield tmp_path, port, upstream
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)


def test_the_shipped_site_passes_nginx_t_as_it_is(tmp_path: Path):
    """No rewriting but the certificate paths (nginx -t reads them)."""
    binary = nginx()
    cert = trustme.CA().issue_cert("provisioning.example.com")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    text = re.sub(r"/etc/ssl/\S+\.pem", str(tmp_path / "server.pem"), SITE.read_text())
    text = text.replace("/var/log/nginx", str(tmp_path))
    (tmp_path / "site.conf").write_text(text)
    (tmp_path / "logs").mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(MAIN.format(d=tmp_path))
    check = subprocess.run([binary, "-t", "-c", str(tmp_path / "nginx.conf"),
                            "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_no_log_holds_the_password_up_down_or_slow(front: tuple[Path, int, int]):
    folder, port, upstream = front
    url = f"https://127.0.0.1:{port}/provision"
    params = {"user": "alice", "password": PASSWORD}
    verify = str(folder / "ca.pem")
    statuses = []
    # down: nothing listens on the upstream port
    statuses.append(httpx.get(url, params=params, verify=verify, timeout=10).status_code)
    # slow: accepts, never answers
    with socket.create_server(("127.0.0.1", upstream)):
        statuses.append(httpx.get(url, params=params, verify=verify, timeout=10).status_code)
    # up: the gateway itself (the demo), a wrong password
    config = demo_copy(folder, f'port = {upstream}\ntrusted_proxies = ["127.0.0.1"]')
    gw = Gateway(config, folder)
    gw.port = upstream
    with gw:
        response = httpx.get(url, params=params, verify=verify, timeout=10)
        statuses.append(response.status_code)
        assert response.headers["x-request-id"]  # nginx's $request_id, echoed
    assert statuses == [502, 504, 401]
    time.sleep(0.2)  # nginx writes its access log line after the response
    logs = [p for p in folder.rglob("*.log")]
    assert {p.name for p in logs} >= {"provisioning.log", "access.log", "error.log"}
    written = "".join(p.read_text(errors="replace") for p in logs)
    assert "/provision" in written  # the access log does record the requests
    assert written.count('"GET /provision" 50') == 2
    assert PASSWORD not in written
    assert "password=" not in written

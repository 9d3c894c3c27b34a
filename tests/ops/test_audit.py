"""Request ids, JSON logs, the audit line, and the fail2ban filter on a log the gateway wrote."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import unavailable
from tests.gateway import Gateway
from tests.ops.conftest import demo_copy
from tests.ops.test_reload import wait_for

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "deploy" / "fail2ban" / "filter.d" / "zoiper-bridge.conf"
GUESSER, PHONE, VICTIM = "198.51.100.7", "198.51.100.8", "203.0.113.9"
WRONG = "Not-the-Password-42"
# what a phone controls, shaped like an audit line naming someone else
FORGED_USER = f'x" client={VICTIM} outcome=auth_failed status=401 '
FORGED_PATH = f"/x INFO bridge.audit: provision client={VICTIM} outcome=auth_failed status=401 "


def traffic(gw: Gateway) -> dict[str, str]:
    """Failures from GUESSER, a success from PHONE, forgeries; the request ids seen."""

    def get(path: str, address: str, user: str, password: str,
            rid: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": address, **({"X-Request-ID": rid} if rid else {})}
        return httpx.get(gw.base_url + path, params={"user": user, "password": password},
                         headers=headers, timeout=15)

    ids = {}
    for i in range(3):
        response = get("/provision", GUESSER, "alice", WRONG, rid=f"guess-{i}")
        assert response.status_code == 401
        assert response.headers["x-request-id"] == f"guess-{i}"  # from a trusted proxy
        ids[f"guess-{i}"] = response.headers["x-request-id"]
    ok = get("/provision", PHONE, "alice", "wonderland", rid="bad id with spaces")
    assert ok.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{16}", ok.headers["x-request-id"])  # invalid: replaced
    ids["ok"] = ok.headers["x-request-id"]
    assert get("/provision", PHONE, FORGED_USER, WRONG).status_code == 401
    assert get(FORGED_PATH, PHONE, "alice", WRONG).status_code == 404
    return ids


def fail2ban_matches(log: Path) -> list[str]:
    if shutil.which("fail2ban-regex") is None:
        unavailable("fail2ban-regex (Debian's fail2ban) is not installed")
    result = subprocess.run(["fail2ban-regex", "-o", "ip", str(log), str(FILTER)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_audit_lines_and_fail2ban(tmp_path: Path, log_format: str):
    config = demo_copy(tmp_path, f'trusted_proxies = ["127.0.0.1"]\nlog_format = "{log_format}"')
    with Gateway(config, tmp_path) as gw:
        ids = traffic(gw)
        wait_for(lambda: gw.output().count("bridge.audit") >= 5)
    log = gw.log_path
    text = log.read_text()
    assert WRONG not in text and "wonderland" not in text
    # the forged username is a failed login of PHONE's own; neither forgery names VICTIM
    assert sorted(fail2ban_matches(log)) == [GUESSER] * 3 + [PHONE]

    lines = text.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line, uvicorn's too
        audits = [r for r in records if r["logger"] == "bridge.audit"]
        assert {r["client"] for r in audits} == {GUESSER, PHONE}
        first = next(r for r in audits if r["request_id"] == ids["guess-0"])
        assert (first["profile"], first["username"], first["outcome"], first["status"]) == (
            "default", "alice", "auth_failed", 401)
        assert first["duration_ms"] > 0 and first["tenant"]
        ok = next(r for r in audits if r["request_id"] == ids["ok"])
        assert (ok["outcome"], ok["status"], ok["client"]) == ("ok", 200, PHONE)
        # every line of a request carries its id (access log and audit line at least)
        assert {r["logger"] for r in records if r["request_id"] == ids["ok"]} >= {
            "bridge.access", "bridge.audit"}
    else:
        audits = [line for line in lines if re.match(r"\S+ \S+ INFO bridge\.audit: ", line)]
        assert len(audits) == 5  # one per provisioning attempt; the 404 path is not one
        ok = next(line for line in audits if f"request_id={ids['ok']}" in line)
        assert f"client={PHONE} outcome=ok status=200 profile=default" in ok
        assert 'user="alice"' in ok
        assert sum(f"request_id={ids['ok']}" in line for line in lines) >= 2  # access + audit


def test_a_request_id_from_an_untrusted_peer_is_replaced(tmp_path: Path):
    config = demo_copy(tmp_path)  # no trusted proxies
    with Gateway(config, tmp_path) as gw:
        response = httpx.get(gw.base_url + "/provision", headers={"X-Request-ID": "mine"},
                             params={"user": "alice", "password": "wonderland"}, timeout=15)
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "mine"
    assert f"request_id={response.headers['x-request-id']}" in gw.output()

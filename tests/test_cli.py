from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.passwords import verify_password
from bridge.zoiper.document import parse_config, parse_error

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_render_prints_what_alice_receives():
    result = run("render", "--username", "alice", stdin="wonderland\n")
    assert result.returncode == 0, result.stderr
    tree = parse_config(result.stdout.encode())
    assert tree["accounts"][0]["username"] == "1001"


def test_render_prints_the_error_document_for_a_wrong_password():
    result = run("render", "--username", "alice", stdin="wrong-password\n")
    assert result.returncode == 1
    assert parse_error(result.stdout.encode()) == "Wrong username or password."
    assert "HTTP 401" in result.stderr
    assert "wrong-password" not in result.stderr + result.stdout


def test_render_refuses_an_empty_password_like_the_endpoint():
    result = run("render", "--username", "alice", stdin="\n")
    assert result.returncode == 1
    assert "HTTP 400" in result.stderr


def test_hash_password_prints_a_verifiable_hash():
    result = run("hash-password", "--cost", "10", stdin="s3cret & more\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$scrypt$ln=10,r=8,p=1$")
    assert verify_password("s3cret & more", hashed)
    assert not verify_password("s3cret", hashed)


def test_check_config_accepts_the_example():
    result = run("check-config", str(ROOT / "config.toml.example"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_reports_every_problem_without_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("""
[server]
port = "eighty"
colour = "blue"

[auth]
type = "flie"

[source]
type = "static"

[mapping.account]
username = "{login.username}"
SIP_transport_type = "carrier-pigeon"
SIP_domian = "sip.example.com"
register_on_startup = "yes"
""")
    result = run("check-config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in [
        "'server.port': expected an integer, received 'eighty'",
        "'server.colour': unknown key",
        "'auth.type': expected one of",
        "'source.accounts': is required",
        "'mapping.account.SIP_transport_type'",
        "'mapping.account.SIP_domian': unknown option",
        "'mapping.account.register_on_startup'",
    ]:
        assert expected in result.stderr


@pytest.mark.parametrize("content", ["not toml [", ""])
def test_check_config_unreadable(tmp_path, content):
    config = tmp_path / "x.toml"
    config.write_text(content)
    result = run("check-config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_check_config_connect_prepares_the_query_and_serve_refuses_to_start(tmp_path):
    import shutil

    demo = ROOT / "bridge" / "demo"
    for name in ("users.toml", "accounts.sqlite"):
        shutil.copy(demo / name, tmp_path / name)
    config = (demo / "config.toml").read_text().replace("FROM accounts", "FROM acounts")
    (tmp_path / "config.toml").write_text(config)
    assert run("check-config", str(tmp_path / "config.toml")).returncode == 0  # no I/O
    result = run("check-config", "--connect", str(tmp_path / "config.toml"))
    assert result.returncode == 1
    assert "[source] NOT READY" in result.stderr and "acounts" in result.stderr
    assert "[auth] ready" in result.stdout
    served = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--port", "0",
                             "--config", str(tmp_path / "config.toml")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert served.returncode != 0
    assert "acounts" in served.stderr


def test_hash_password_md5_serves_both_password_formats():
    from bridge.auth.file import md5_hex

    result = run("hash-password", "--cost", "10", "--md5", stdin="s3cret\n")
    hashed = result.stdout.strip()
    assert verify_password(md5_hex("s3cret"), hashed)
    assert not verify_password("s3cret", hashed)


def test_render_for_another_profile(tmp_path):
    import shutil

    demo = ROOT / "bridge" / "demo"
    for name in ("users.toml", "accounts.sqlite"):
        shutil.copy(demo / name, tmp_path / name)
    config = (demo / "config.toml").read_text()
    (tmp_path / "config.toml").write_text(
        config + '\n[profiles.ios]\npath = "/ios"\nrequest = { dialect = "ios" }\n'
        '[profiles.ios.mapping.account]\nusername = "{account.sip_user}"\n'
        'password = "{account.sip_password}"\nSIP_domain = "{account.domain}"\n')
    result = run("render", "--config", str(tmp_path / "config.toml"), "--profile", "ios",
                 "--username", "alice", stdin="wonderland\n")
    assert result.returncode == 0, result.stderr
    from bridge.zoiper.dialects import IOS

    assert parse_config(result.stdout.encode(), IOS)["accounts"][0]["username"] == "1001"
    missing = run("render", "--config", str(tmp_path / "config.toml"), "--profile", "nope",
                  "--username", "alice", stdin="wonderland\n")
    assert missing.returncode == 2 and "ios" in missing.stderr


def test_check_config_connect_checks_the_shared_state_store(tmp_path):
    """A configured Redis that cannot be reached is reported, whatever on_failure says."""
    import shutil

    from tests.ldap.slapd import free_port

    demo = ROOT / "bridge" / "demo"
    for name in ("users.toml", "accounts.sqlite", "config.toml"):
        shutil.copy(demo / name, tmp_path / name)
    config = tmp_path / "config.toml"
    base = config.read_text()
    for port, status in ((6379, 0), (free_port(), 1)):
        config.write_text(base + f'\n[state]\nbackend = "redis"\nredis_url = '
                          f'"redis://127.0.0.1:{port}/0"\nsecret = "shared-secret-x"\n')
        result = run("check-config", "--connect", str(config))
        assert result.returncode == status, result.stdout + result.stderr
        if status:
            assert "[state] NOT READY: ConnectionError" in result.stderr
        else:
            assert "[state] ready" in result.stdout

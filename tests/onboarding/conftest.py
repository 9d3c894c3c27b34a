"""The onboarding page's world: a users file and SIP accounts made here, the real authlib
provider on loopback (tests/idp.py, code flow + PKCE), the gateway in a subprocess, and
Debian's headless chromium driven by selenium through /usr/bin/chromedriver.

`site_config(folder, ...)` writes a configuration: the default profile signs in with a
login form (users file), profile "sso" at the OpenID provider; both serve tokens.
Screenshots go to one folder per run, printed at the end of the session.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.passwords import hash_password
from tests.conftest import unavailable
from tests.gateway import Gateway
from tests.idp import CLIENT, CODE_CLIENT, IdPState, idp_app
from tests.upstreams import Server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--window-size=412,915")  # a phone's screen
PASSWORDS = {"alice": "Wonder-Land-7", "bob": "B0b-the-Builder", "carol": "C4rol-Singer"}
TOKEN_SECRET = "token-hash-key-for-tests-0123456789"
SESSION_SECRET = "onboarding-session-key-0123456789abcdef"
LINK = "https://prov.example.net/qr?token={token}"
ACCOUNTS = [  # login, label (the account's `name`), sip user, sip password
    ("alice", "Alice <desk> & Co", "1001", "Sip-Secret-1001"),
    ("alice", "Alice mobile", "1011", "Sip-Secret-1011"),
    ("bob", "Bob", "1002", "Sip-Secret-1002"),
    ("carol", "Carol", "1003", "Sip-Secret-1003"),
]
QUERY = "SELECT label, sip_user, sip_password FROM accounts WHERE login = :username"
LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><circle cx="20" cy="20" '
        'r="18" fill="#6a1b9a"/></svg>')


def site_config(folder: Path, issuer: str, lifetime: str = "10m") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    users = "".join(f'[users.{u}]\npassword = "{hash_password(p, 10)}"\n'
                    for u, p in PASSWORDS.items())
    (folder / "users.toml").write_text(users)
    (folder / "logo.svg").write_text(LOGO)
    db = folder / "accounts.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS accounts (login, label, sip_user, sip_password)")
        conn.execute("DELETE FROM accounts")
        conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", ACCOUNTS)
    config = folder / "config.toml"
    config.write_text(f"""
[server]
log_level = "debug"

[limits]
username_failures = 3
bypass_failures = 0
backoff_base = 0
address_failures = 0
lockout_window = 0

[tokens]
path = "/token/"
link = "{LINK}"
database = "tokens.sqlite"
secret = "{TOKEN_SECRET}"

[onboarding]
path = "/onboard"
secret = "{SESSION_SECRET}"
session_lifetime = "{lifetime}"
refresh = 2
name = "Example Telecom"
logo = "logo.svg"
[onboarding.colors]
primary = "#6a1b9a"

[auth]
type = "file"
path = "users.toml"

[source]
type = "sqlite"
path = "accounts.sqlite"
query = "{QUERY}"

[mapping.account]
name = "{{account.label}}"
username = "{{account.sip_user}}"
password = "{{account.sip_password}}"
SIP_auth_username = "{{account.sip_user}}"
SIP_domain = "sip.example.com"
SIP_transport_type = "tls"
protocol = "sip"

[profiles.sso]
path = "/sso"
[profiles.sso.auth]
type = "oauth2"
issuer = "{issuer}"
client_id = "{CLIENT[0]}"
client_secret = "{CLIENT[1]}"
[profiles.sso.tokens]
path = "/sso/token/"
[profiles.sso.onboarding]
path = "/sso/onboard"
[profiles.sso.onboarding.oidc]
issuer = "{issuer}"
client_id = "{CODE_CLIENT[0]}"
client_secret_env = "ONBOARD_OIDC_SECRET"
label = "Sign in with Example SSO"
""")
    return config


@pytest.fixture(scope="session")
def idp() -> Iterator[IdPState]:
    state = IdPState()
    with Server(idp_app(state)) as server:
        state.issuer = server.url
        yield state


def start_gateway(folder: Path, idp: IdPState, lifetime: str = "10m") -> Gateway:
    config = site_config(folder, idp.issuer, lifetime)
    gateway = Gateway(config, folder, env={"ONBOARD_OIDC_SECRET": CODE_CLIENT[1]})
    idp.redirect_uris.append(f"{gateway.base_url}/sso/onboard/callback")
    return gateway.start()


@pytest.fixture(scope="session")
def gateway(idp: IdPState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("onboarding"), idp)
    try:
        yield gw
    finally:
        gw.stop()


SHOTS: list[Path] = []  # the screenshot folder of this run, once a test asked for it


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages' screenshots go; the folder is printed when the run ends."""
    folder = tmp_path_factory.mktemp("onboarding-screenshots")
    SHOTS.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for folder in SHOTS:
        names = ", ".join(sorted(p.name for p in folder.glob("*.png")))
        terminalreporter.write_line(f"onboarding screenshots in {folder}: {names}")


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    """One headless chromium for the session (starting one costs seconds)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        unavailable(f"headless browser unavailable: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="zb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        unavailable(f"headless chromium does not start here: {exc.msg}")
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chrome: Any) -> Any:
    """The session's chromium with no cookies left from another test."""
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chrome.get("about:blank")
    return chrome

"""The onboarding page in a real headless chromium, against the running gateway.

A person signs in (login form with the users file, or at the OpenID provider
with the code flow + PKCE), sees their accounts and a QR code; the code read
back from the screen provisions exactly once at the token endpoint. Every page
visited is written as a screenshot (the folder is printed at the end).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from bridge.onboarding.session import COOKIE
from bridge.zoiper.document import parse_config
from tests.gateway import Gateway
from tests.idp import PASSWORD as IDP_PASSWORD
from tests.idp import IdPState
from tests.onboarding.conftest import LINK, PASSWORDS, start_gateway
from tests.upstreams import leaks

T = TypeVar("T")

FORBIDDEN = "This form has expired or was not sent by this page."


def shot(browser: Any, shots: Path, name: str) -> None:
    browser.save_screenshot(str(shots / f"{name}.png"))


def unstale(read: Callable[[], T], attempts: int = 10) -> T:
    """Read from the page again when it reloaded itself (meta refresh) mid-read."""
    for attempt in range(attempts):
        try:
            return read()
        except WebDriverException as exc:
            # Chromium 156 also reports a node of the page it just replaced as "Node with
            # given id does not belong to the document" (an unknown error, not a stale one)
            gone = isinstance(exc, StaleElementReferenceException) or (
                "does not belong to the document" in (exc.msg or ""))
            if not gone or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def text_of(browser: Any, css: str) -> str:
    return unstale(lambda: wait_for(browser, css).text)


def wait_for(browser: Any, css: str, timeout: float = 15) -> Any:
    return WebDriverWait(browser, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(browser: Any, gw: Gateway, user: str, password: str) -> None:
    browser.get(gw.base_url + "/onboard")
    wait_for(browser, "#username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.signin button").click()


def qr_token(browser: Any) -> str:
    """The token in the QR code as the screen shows it (a screenshot, decoded)."""
    import zxingcpp
    from PIL import Image

    png = unstale(lambda: wait_for(browser, "figure.code").screenshot_as_png)
    [code] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    token = parse_qs(urlsplit(code.text).query)["token"][0]
    assert code.text == LINK.replace("{token}", token)
    return token


def fetch(gw: Gateway, token: str, path: str = "/token/") -> httpx.Response:
    return httpx.get(gw.base_url + path + token, timeout=10)


def account_names(browser: Any) -> list[str]:
    return unstale(lambda: [li.text for li in
                            browser.find_elements(By.CSS_SELECTOR, ".accounts li")])


def test_form_sign_in_shows_a_code_that_provisions_once(browser, gateway, shots):
    browser.get(gateway.base_url + "/onboard")
    assert browser.title == "Sign in · Example Telecom"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=username]").text == "Username"
    shot(browser, shots, "1-sign-in")
    sign_in(browser, gateway, "alice", PASSWORDS["alice"])
    first = qr_token(browser)
    shot(browser, shots, "2-code")
    assert text_of(browser, "h1") == "Hello, alice"
    assert account_names(browser) == ["Alice <desk> & Co", "Alice mobile"]
    assert not any(secret in browser.page_source for secret in
                   ("Sip-Secret-1001", "Sip-Secret-1011", PASSWORDS["alice"]))
    cookie = browser.get_cookie(COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/onboard"

    provisioned = fetch(gateway, first)
    assert provisioned.status_code == 200
    accounts = parse_config(provisioned.content)["accounts"]  # validated for the dialect
    assert [(a["name"], a["username"]) for a in accounts] == [("Alice <desk> & Co", "1001"),
                                                              ("Alice mobile", "1011")]
    assert fetch(gateway, first).status_code == 401  # once

    used = text_of(browser, "#used")  # the page reloads itself every 2 s until then
    assert used.startswith("Your code was used at ")
    shot(browser, shots, "3-used")
    time.sleep(1.1)
    browser.refresh()
    assert text_of(browser, "#used") == used  # the time it was first seen, kept

    browser.find_element(By.ID, "fresh").click()
    wait_for(browser, "figure.code")
    second = qr_token(browser)
    browser.find_element(By.ID, "fresh").click()
    WebDriverWait(browser, 15).until(lambda b: qr_token(b) != second)
    third = qr_token(browser)
    assert len({first, second, third}) == 3
    assert fetch(gateway, second).status_code == 401  # replaced: revoked

    browser.find_element(By.ID, "signout").click()
    wait_for(browser, "#username")
    shot(browser, shots, "4-signed-out")
    assert fetch(gateway, third).status_code == 401  # signing out revokes the unused code

    log = gateway.output()
    for secret in (first, second, third, cookie["value"], PASSWORDS["alice"]):
        assert not leaks(log, secret)
    assert "/token/********" in log


def test_oidc_sign_in_with_pkce(browser, gateway, idp: IdPState, shots):
    browser.get(gateway.base_url + "/sso/onboard")
    start = wait_for(browser, "#sso")
    assert start.text == "Sign in with Example SSO"
    shot(browser, shots, "5-sso-sign-in")
    start.click()
    wait_for(browser, "#u").send_keys("alice")  # the provider's own login page
    browser.find_element(By.ID, "p").send_keys(IDP_PASSWORD)
    shot(browser, shots, "6-provider")
    browser.find_element(By.ID, "idp-submit").click()
    token = qr_token(browser)
    shot(browser, shots, "7-sso-code")
    assert browser.current_url == gateway.base_url + "/sso/onboard"  # no code left in the URL
    assert account_names(browser) == ["Alice <desk> & Co", "Alice mobile"]

    authorize = [p for path, _, p in idp.seen if path == "/authorize"][-1]
    exchange = [f for path, _, f in idp.seen
                if path == "/token" and f.get("grant_type") == "authorization_code"][-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["nonce"]
    assert authorize["redirect_uri"] == gateway.base_url + "/sso/onboard/callback"
    assert exchange["code_verifier"] and "client_secret" not in exchange  # basic auth
    code = idp.issued_codes[-1]

    assert fetch(gateway, token, "/token/").status_code == 401  # another profile's endpoint
    provisioned = fetch(gateway, token, "/sso/token/")
    assert provisioned.status_code == 200
    assert len(parse_config(provisioned.content)["accounts"]) == 2
    assert fetch(gateway, token, "/sso/token/").status_code == 401

    # The callback again (a replay, or a link someone was sent): its state is spent.
    browser.get(f"{gateway.base_url}/sso/onboard/callback?code={code}"
                f"&state={authorize['state']}")
    assert "Please start again" in wait_for(browser, "#error").text
    shot(browser, shots, "8-replayed-callback")

    log = gateway.output()
    cookie = browser.get_cookie(COOKIE)["value"]
    for secret in (code, authorize["state"], authorize["nonce"], exchange["code_verifier"],
                   token, cookie):
        assert not leaks(log, secret), secret
    assert "/sso/onboard/callback" in log


@pytest.mark.parametrize("tweak", ["wrong-aud", "bad-sig", "alg-none", "expired"])
def test_an_id_token_that_does_not_verify_signs_nobody_in(browser, gateway, tweak):
    """The provider's login works, but its ID token is for another client, forged with
    another key, unsigned, or expired: the page stays at sign-in."""
    refused = gateway.output().count("ID token refused")
    browser.get(gateway.base_url + "/sso/onboard")
    wait_for(browser, "#sso").click()
    wait_for(browser, "#u").send_keys(tweak)
    browser.find_element(By.ID, "p").send_keys(IDP_PASSWORD)
    browser.find_element(By.ID, "idp-submit").click()
    assert wait_for(browser, "#error").text == "Wrong username or password."
    assert browser.find_elements(By.ID, "sso")  # still the sign-in page
    assert not browser.find_elements(By.CSS_SELECTOR, "figure.code")
    assert gateway.output().count("ID token refused") > refused  # refused for that reason


def test_a_wrong_password_counts_toward_the_phones_limits(browser, gateway, shots):
    sign_in(browser, gateway, "bob", "not-his-password")
    assert wait_for(browser, "#error").text == "Wrong username or password."
    assert browser.find_element(By.ID, "username").get_attribute("value") == "bob"
    shot(browser, shots, "9-wrong-password")
    provision = gateway.base_url + "/provision"
    for guess in ("guess-2", "guess-3"):  # [limits] username_failures = 3, shared
        wrong = httpx.get(provision, params={"user": "bob", "password": guess}, timeout=10)
        assert wrong.status_code == 401
    right = {"user": "bob", "password": PASSWORDS["bob"]}
    assert httpx.get(provision, params=right, timeout=10).status_code == 429
    sign_in(browser, gateway, "bob", PASSWORDS["bob"])
    assert wait_for(browser, "#error").text == "Too many attempts. Please wait and try again."
    shot(browser, shots, "10-too-many-attempts")


def test_a_form_without_its_csrf_token_is_refused(browser, gateway, shots):
    browser.get(gateway.base_url + "/onboard")
    wait_for(browser, "#username").send_keys("carol")
    browser.find_element(By.ID, "password").send_keys(PASSWORDS["carol"])
    browser.execute_script("document.querySelector('input[name=csrf]').remove()")
    browser.find_element(By.CSS_SELECTOR, "form.signin button").click()
    assert FORBIDDEN in wait_for(browser, "#error").text
    shot(browser, shots, "11-csrf-refused")

    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        client.get("/onboard")  # a session cookie and its token ...
        refused = client.post("/onboard/login", data={"username": "carol",
                                                      "password": PASSWORDS["carol"]})
        assert refused.status_code == 403  # ... but the form does not carry it
        assert refused.headers["cache-control"] == "no-store"

    sign_in(browser, gateway, "carol", PASSWORDS["carol"])  # not counted, not signed in
    qr_token(browser)
    browser.execute_script("document.querySelector('form[action$=\"/code\"] "
                           "input[name=csrf]').remove()")
    browser.find_element(By.ID, "fresh").click()
    assert FORBIDDEN in wait_for(browser, "#error").text


def test_an_expired_session_goes_back_to_sign_in(browser, idp, tmp_path, shots):
    gw = start_gateway(tmp_path, idp, lifetime="5s")
    try:
        sign_in(browser, gw, "alice", PASSWORDS["alice"])
        qr_token(browser)
        stale = browser.get_cookie(COOKIE)["value"]
        time.sleep(5.2)
        wait_for(browser, "#username")  # the page's own reload found the session gone
        shot(browser, shots, "12-expired")
        # A client that keeps the cookie past its Max-Age is not let in either.
        with httpx.Client(base_url=gw.base_url, timeout=10,
                          cookies={COOKIE: stale}) as client:
            page = client.get("/onboard")
            assert "Your session has expired" in page.text and "figure" not in page.text
            client.cookies.set(COOKIE, stale, path="/onboard")
            again = client.post("/onboard/code", data={"csrf": "x"})
            assert (again.status_code, again.headers["location"]) == (303, "/onboard")
    finally:
        gw.stop()


@pytest.mark.parametrize("path", ["/onboard", "/sso/onboard", "/onboard/style.css",
                                  "/onboard/theme.css", "/onboard/logo"])
def test_every_answer_carries_the_security_headers(gateway, path):
    response = httpx.get(gateway.base_url + path, timeout=10)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    if path.endswith("onboard"):
        assert response.headers["cache-control"] == "no-store"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    if path.endswith("/logo"):
        assert response.headers["content-type"] == "image/svg+xml"
        assert csp.endswith("; sandbox")  # opened on its own, the SVG runs nothing
    if path.endswith("theme.css"):
        assert "--primary: #6a1b9a" in response.text

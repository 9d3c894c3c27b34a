"""`[onboarding]`: every problem reported with its key, and the cookie's Secure flag."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.config import ConfigError
from bridge.onboarding.config import contrast
from bridge.settings import from_dict

DEMO = Path(str(resources.files("bridge") / "demo"))
SECRET = "onboarding-session-key-0123456789abcdef"


def config(tmp_path: Path, onboarding: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tokens": {"path": "/token/", "database": str(tmp_path / "t.sqlite"),
                   "secret": "token-hash-key-for-tests-0123456789"},
        "auth": {"type": "file", "path": str(DEMO / "users.toml")},
        "source": {"type": "static", "accounts": [{"user": "1001", "pw": "Sip-1001"}]},
        "mapping": {"account": {"username": "{account.user}", "password": "{account.pw}",
                                "SIP_domain": "sip.example.com",
                                "name": "Desk"}},
    }
    if onboarding is not None:
        data["onboarding"] = {"secret": SECRET, **onboarding}
    data.update(extra)
    return data


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        from_dict(data, tmp_path)
    return caught.value.problems


def test_off_by_default_and_on_with_a_path(tmp_path):
    assert from_dict(config(tmp_path), tmp_path).default.onboarding_path is None
    settings = from_dict(config(tmp_path, {"path": "/onboard"}), tmp_path)
    assert settings.default.onboarding_path == "/onboard"
    assert settings.default.onboarding_oidc is None  # the login form


@pytest.mark.parametrize(("onboarding", "expected"), [
    ({"path": "/onboard", "secret": "short"},
     "Config value 'onboarding.secret': is required, at least 32 characters"),
    ({"path": "onboard"}, "Config value 'onboarding.path': expected a path like"),
    ({"path": "/onboard/"}, "Config value 'onboarding.path': expected a path like"),
    ({"path": "/provision"},
     "Config value 'onboarding.path': '/provision' overlaps the path of profile 'default'"),
    ({"path": "/token"},
     "Config value 'onboarding.path': '/token' overlaps the path of the token endpoint"),
    ({"path": "/onboard", "sesion_lifetime": "5m"},
     "Config value 'onboarding.sesion_lifetime': unknown key (did you mean "
     "'session_lifetime'?)"),
    ({"path": "/onboard", "session_lifetime": "2h"},
     "Config value 'onboarding.session_lifetime': must be between 5 seconds and 1 hour"),
    ({"path": "/onboard", "colors": {"text": "#777777"}},
     "Config value 'onboarding.colors.text': text on the background has a contrast of "
     "4.48:1"),
    ({"path": "/onboard", "colors": {"primary": "#ffcc00"}},
     "Config value 'onboarding.colors.primary': links (primary) on the background has a "
     "contrast of 1.51:1"),
    ({"path": "/onboard", "colors": {"background": "blue"}},
     "Config value 'onboarding.colors.background': expected a colour like \"#0b5cad\""),
    ({"path": "/onboard", "logo": "users.toml"},
     "Config value 'onboarding.logo': expected a .gif, .jpeg, .jpg, .png, .svg, .webp file"),
    ({"path": "/onboard", "oidc": {"issuer": "http://idp.example.net", "client_id": "x"}},
     "Config value 'onboarding.oidc.issuer': plain http:// to idp.example.net"),
    ({"path": "/onboard", "oidc": {"issuer": "https://idp.example.net", "client_id": "x",
                                   "scope": ["profile"]}},
     "Config value 'onboarding.oidc.scope': must include \"openid\""),
])
def test_problems_name_their_key(tmp_path, onboarding, expected):
    (tmp_path / "users.toml").write_text("")
    found = problems(tmp_path, config(tmp_path, onboarding))
    assert any(p.startswith(expected) for p in found), found


def test_the_contrast_rule_is_wcags(tmp_path):
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # just below AA: refused above
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0


def test_a_page_needs_its_profiles_tokens(tmp_path):
    data = config(tmp_path, {"path": "/onboard"},
                  profiles={"desk": {"path": "/desk", "onboarding": {"path": "/desk/onboard"}}})
    assert problems(tmp_path, data) == [
        "Config value 'profiles.desk.onboarding.path': profile 'desk' serves no tokens (set "
        "[profiles.desk.tokens] path): the page's QR codes are its tokens"]
    data = config(tmp_path, profiles={"desk": {"path": "/desk", "tokens": {"path": "/d/t/"},
                                               "onboarding": {"path": "/desk/onboard"}}})
    assert problems(tmp_path, data) == [
        "Config value 'profiles.desk.onboarding': needs an [onboarding] table (the session "
        "secret)"]


def test_cookies_are_secure_over_https_and_pages_not_stored(tmp_path):
    app = create_app(from_dict(config(tmp_path, {"path": "/onboard"}), tmp_path))
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/onboard")
        assert page.headers["cache-control"] == "no-store"
        cookie = page.headers["set-cookie"]
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
        assert "strict-transport-security" in page.headers
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        wrong = client.post("/onboard/login", data={"csrf": csrf.group(1) + "x",
                                                    "username": "alice", "password": "x"})
        assert wrong.status_code == 403
        assert client.get("/onboard/sso").status_code == 404  # a form profile: no SSO route

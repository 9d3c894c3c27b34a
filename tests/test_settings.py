"""The declared configuration as a whole: shipped files, every problem at once, profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError
from bridge.passwords import hash_password
from bridge.settings import from_dict
from bridge.zoiper.dialects import DESKTOP

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (ROOT / "deploy" / "examples").glob("*.toml")
                 if not p.name.endswith("-users.toml"))  # users files, not configurations
EXAMPLE_ENV = {"LDAP_BIND_PASSWORD": "x", "WHMCS_API_KEY": "x", "ACME_BIND_PASSWORD": "x",
               "GLOBEX_BIND_PASSWORD": "x", "BILLING_TOKEN": "x",
               "BILLING_CLIENT_SECRET": "x", "OIDC_CLIENT_SECRET": "x"}
EXAMPLE_ENV |= {"ASTERISK_DB_URL": "postgresql://gw:x@127.0.0.1/asterisk",  # the SQL presets
                "FREEPBX_DB_URL": "mysql://gw:x@127.0.0.1/asterisk",
                "FUSIONPBX_DB_URL": "postgresql://gw:x@127.0.0.1/fusionpbx",
                "KAMAILIO_DB_URL": "mysql://gw:x@127.0.0.1/kamailio"}

USERS = f'[users.alice]\npassword = "{hash_password("pw", 10)}"\n'
MAPPING = {"account": {"username": "{login.username}", "password": "{login.password}",
                       "SIP_domain": "sip.example.com"}}


def base(tmp_path: Path, **extra: object) -> dict:
    (tmp_path / "users.toml").write_text(USERS)
    return {"auth": {"type": "file", "path": "users.toml"},
            "source": {"type": "static", "accounts": [{"x": 1}]},
            "mapping": MAPPING, **extra}


def problems(data: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(data, tmp_path)
    return info.value.problems


@pytest.mark.parametrize("path", [*SHIPPED, ROOT / "config.toml.example",
                                  ROOT / "bridge" / "demo" / "config.toml"],
                         ids=lambda p: p.name)
def test_every_shipped_configuration_passes_check_config(path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, **EXAMPLE_ENV}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    data = base(tmp_path, server={"port": "80", "colour": "red"},
                request={"dialect": "blackberry"},
                breaker={"failurs": 3},
                profiles={"ios": {"path": "ios", "request": {"dialect": "ios"}}})
    data["auth"] = {"type": "file", "path": "users.toml", "pth": 1}
    data["mapping"] = {"account": {**MAPPING["account"], "SIP_domian": "x"}}
    found = problems(data, tmp_path)
    for expected in [
        "'server.port': expected an integer, received '80'",
        "'server.colour': unknown key",
        "'breaker.failurs': unknown key (did you mean 'failures'?)",
        "'profiles.ios.path': must start with '/'",
        "'request.dialect': expected one of 'android', 'ios' or 'desktop'",
        "'auth.pth'",
        "'mapping.account.SIP_domian': unknown option",
    ]:
        assert any(expected in p for p in found), (expected, found)


@pytest.mark.parametrize("value", [123456789, ["hunter2-secret"], {"v": "hunter2-secret"}])
def test_a_secret_of_the_wrong_type_is_never_echoed(tmp_path: Path, value: object) -> None:
    found = problems(base(tmp_path, state={"backend": "redis", "secret": value}), tmp_path)
    text = "\n".join(found)
    assert "'state.secret': expected a string (the value is not shown)" in text
    assert "123456789" not in text and "hunter2" not in text


def test_md5_passwords_with_an_authenticator_that_needs_the_password_are_refused(
        tmp_path: Path) -> None:
    data = base(tmp_path, profiles={"desktop": {
        "path": "/desktop", "request": {"dialect": "desktop", "password_format": "md5"},
        "auth": {"type": "ldap", "uri": "ldap://127.0.0.1", "tls": "none",
                 "user_search": {"base": "dc=x", "filter": "(uid={username})"}}}})
    [found] = problems(data, tmp_path)
    assert found.startswith("Config value 'profiles.desktop.auth.type': profile 'desktop' "
                            "receives passwords as md5")
    # The users file can check MD5s: the same profile with it loads.
    del data["profiles"]["desktop"]["auth"]
    settings = from_dict(data, tmp_path)
    desktop = settings.profiles[1]
    assert desktop.dialect is DESKTOP and desktop.query.password_format == "md5"


def test_profiles_inherit_the_top_level_and_share_its_backends(tmp_path: Path) -> None:
    data = base(tmp_path, tenants={"acme": {
        "domains": ["ACME.example"], "auth": {"type": "file", "path": "users.toml"},
        "source": {"type": "static", "accounts": [{"y": 2}]}}},
        profiles={"ios": {"path": "/ios", "request": {"dialect": "ios", "plus": "literal"}},
                  "solo": {"path": "/solo", "tenants": {}}})
    data["request"] = {"username_param": "login"}
    default, ios, solo = from_dict(data, tmp_path).profiles
    assert ios.query.username == "login" and ios.query.plus == "literal"  # merged by key
    assert ios.own is not None and default.own is not None
    assert ios.own.auth is default.own.auth                # one backend, one pool, one breaker
    [acme] = default.tenants
    [ios_acme] = ios.tenants
    assert acme.domains == ("acme.example",)
    assert ios_acme.auth is acme.auth and ios_acme.name == "ios/acme"
    assert solo.tenants == ()


def test_conflicting_routes_and_tenants_without_selectors_are_refused(tmp_path: Path) -> None:
    data = base(tmp_path,
                tenants={"a": {"auth": {"type": "file", "path": "users.toml"},
                               "source": {"type": "static", "accounts": [{"y": 2}]}}},
                profiles={"twice": {"path": "/provision"}})
    found = "\n".join(problems(data, tmp_path))
    assert "'tenants.a.domains': a tenant needs domains, hosts or paths" in found
    assert "'profiles.twice.path': '/provision' is already served by profile 'default'" in found


def test_a_profile_on_another_host_may_share_the_path(tmp_path: Path) -> None:
    data = base(tmp_path, profiles={"branded": {"path": "/provision",
                                                "host": "prov.brand.example"}})
    default, branded = from_dict(data, tmp_path).profiles
    assert default.path == branded.path and branded.host == "prov.brand.example"

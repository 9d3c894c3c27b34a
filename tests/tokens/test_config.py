"""What a configuration with tokens must not do, refused when the file loads."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError
from bridge.settings import load
from tests.tokens.conftest import MAPPING, SECRET, token_config


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def test_the_test_configuration_loads(tmp_path):
    settings = load(token_config(tmp_path))
    assert settings.default.token_path == "/token/"
    assert settings.tokens is not None and settings.tokens.uses == 1


def test_a_mapping_with_the_login_password_cannot_serve_tokens(tmp_path):
    mapping = MAPPING.replace('password = "{account.sip_password}"',
                              'password = "{login.password}"')
    [problem] = problems(token_config(tmp_path, mapping=mapping))
    assert problem.startswith("Config value 'tokens.path': profile 'default' cannot serve "
                              "one-time tokens: mapping.account.password uses "
                              "{login.password}")
    assert "stands in for the password" in problem


def test_identity_attributes_need_a_default(tmp_path):
    without = MAPPING.replace('name = "{account.caller_id} ({account.sip_user})"',
                              'name = "{identity.displayName}"')
    [problem] = problems(token_config(tmp_path, mapping=without))
    assert "mapping.account.name uses {identity.displayName} without a default" in problem
    with_default = MAPPING.replace(
        'name = "{account.caller_id} ({account.sip_user})"',
        'name = { value = "{identity.displayName}", default = "Phone" }\n'
        'SIP_callerId = "{identity.username}"')
    load(token_config(tmp_path, mapping=with_default))


def test_a_profile_without_a_token_endpoint_is_not_checked(tmp_path):
    extra = f"""
[profiles.legacy]
path = "/legacy"
[profiles.legacy.mapping.account]
{MAPPING.split("[mapping.account]")[1].replace('"{account.sip_password}"',
                                                '"{login.password}"')}
"""
    settings = load(token_config(tmp_path, extra=extra))
    assert [p.token_path for p in settings.profiles] == ["/token/", None]


def test_an_ldap_source_reading_the_identity_cannot_serve_tokens(tmp_path):
    config = token_config(tmp_path)
    text = config.read_text()
    start = text.index("[source]")
    end = text.index("[mapping.account]")
    config.write_text(text[:start] + '[source]\ntype = "ldap"\n\n' + text[end:])
    [problem] = problems(config)
    assert "from = \"identity\") reads the accounts from the authenticator's attributes" \
        in problem


def test_tokens_need_a_hash_key(tmp_path):
    config = token_config(tmp_path)
    config.write_text(config.read_text().replace(f'secret = "{SECRET}"\n', ""))
    [problem] = problems(config)
    assert problem.startswith("Config value 'tokens.secret': is required, or [state] secret")
    config.write_text(config.read_text() + f'\n[state]\nsecret = "{SECRET}"\n')
    load(config)


def test_the_admin_api_cannot_run_without_its_secret(tmp_path):
    config = token_config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace('secret = "admin-bearer-secret-0123456789"', ""))
    assert problems(config) == [
        "Config value 'tokens.admin.secret': is required with enabled = true (the admin API "
        "issues tokens for anyone: it never runs without its own credential)"]
    config.write_text(text.replace('secret = "admin-bearer-secret-0123456789"',
                                   'secret = "short"'))
    assert problems(config) == ["Config value 'tokens.admin.secret': must be at least 16 "
                                "characters (the value is not shown)"]
    config.write_text(text.replace('secret = "admin-bearer-secret-0123456789"',
                                   'secret_env = "ZB_TEST_UNSET_VARIABLE"'))
    assert problems(config) == ["Config value 'tokens.admin.secret': secret_env: environment "
                                "variable 'ZB_TEST_UNSET_VARIABLE' is not set"]


def test_a_profile_token_endpoint_needs_the_tokens_table(tmp_path):
    config = token_config(tmp_path, extra='[profiles.p2]\npath = "/p2"\n'
                                          '[profiles.p2.tokens]\npath = "/p2/token/"\n')
    text = config.read_text()
    start, end = text.index("[tokens]"), text.index("[auth]")
    config.write_text(text[:start] + text[end:])
    assert problems(config) == ["Config value 'profiles.p2.tokens': needs a [tokens] table "
                                "(where tokens are stored, and their hash key)"]


@pytest.mark.parametrize(("tokens", "extra", "expected"), [
    ('backend = "postgresql"', "", "Config value 'tokens.url': is required with backend = "
                                   "\"postgresql\""),
    ('url = "redis://127.0.0.1"', "", "Config value 'tokens.url': is only used with backend "
                                      "= \"postgresql\" or \"redis\""),
    ('backend = "redis"\nurl = "redis://redis.example.net"', "",
     "Config value 'tokens.url': redis:// to redis.example.net is clear text"),
    ('ttl = "40d"', "", "Config value 'tokens.ttl': must be at most max_ttl (2592000 s)"),
    ('ttl = "soon"', "", "Config value 'tokens.ttl': expected a duration like \"90s\""),
    ('uses = 0', "", "Config value 'tokens.uses': must be at least 1"),
    ('tabel = "x"', "", "Config value 'tokens.tabel': unknown key (did you mean 'table'?)"),
    ("", '[profiles.p2]\npath = "/p2"\n[profiles.p2.tokens]\npath = "/token/"\n',
     "Config value 'profiles.p2.tokens.path': '/token/' overlaps the path of the token "
     "endpoint of profile 'default'"),
    ("", '[profiles.p2]\npath = "/token/x"\n',
     "Config value 'tokens.path': '/token/' overlaps the path of profile 'p2'"),
    ("", '[profiles.p2]\npath = "/p2"\n[profiles.p2.tokens]\npath = "/p2/token"\n',
     "Config value 'profiles.p2.tokens.path': expected a path that starts and ends with '/' "
     "(the app appends the token)"),
])
def test_token_table_problems(tmp_path, tokens, extra, expected):
    found = problems(token_config(tmp_path, tokens=tokens, extra=extra))
    assert any(p.startswith(expected) for p in found), found


def test_the_admin_path_must_not_overlap(tmp_path):
    config = token_config(tmp_path)
    config.write_text(config.read_text().replace("enabled = true",
                                                 'enabled = true\npath = "/token"'))
    assert problems(config) == ["Config value 'tokens.admin.path': '/token' overlaps the path "
                                "of the token endpoint of profile 'default'"]

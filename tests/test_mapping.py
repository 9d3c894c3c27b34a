from __future__ import annotations

import pytest

from bridge.config import Section
from bridge.errors import InternalError
from bridge.mapping import ConfigMapping, Field, parse_template
from bridge.models import Account, Credentials, Identity

IDENTITY = Identity("alice", {"displayName": "Alice", "ext": 1001})
LOGIN = Credentials("Alice", "pw-from-phone")


def mapping(data: dict) -> tuple[ConfigMapping, list[str]]:
    section = Section(data, "mapping")
    result = ConfigMapping.from_config(section)
    return result, section.problems


def test_parse_template():
    assert parse_template("plain") == ("plain",)
    assert parse_template("") == ("",)
    assert parse_template("{account.user}") == (Field("account", "user"),)
    assert parse_template("sip:{account.user}@{account.domain}") == (
        "sip:", Field("account", "user"), "@", Field("account", "domain"))
    assert parse_template("{{literal}}") == ("{literal}",)


@pytest.mark.parametrize("bad", ["{nope.x}", "{account}", "{account.}", "a{b", "a}b",
                                 "{login.other}"])
def test_parse_template_rejects(bad):
    with pytest.raises(ValueError, match=r"."):
        parse_template(bad)


def test_build_several_accounts_with_types_kept():
    m, problems = mapping({"account": {
        "username": "{account.user}",
        "password": "{login.password}",
        "SIP_domain": "{account.domain}",
        "name": "{identity.displayName} <{account.user}>",
        "SIP_callerId": {"value": "{account.cid}", "default": "none"},
        "SIP_keep_alive_timeout": "{account.ka}",
        "stun": {"stun_port": 3478},
        "codecs": [{"codec_id": 0, "priority": 1}, {"codec_id": 8 - 2, "priority": 2}],
        "extra": {"SIP_future_option": "{identity.ext}"},
    }, "diagnostics": {"enable_debug_log": True}})
    assert problems == []
    accounts = [Account({"user": "1001", "domain": "a.example", "ka": 45, "cid": "Al"}),
                Account({"user": "1002", "domain": "b.example", "ka": 30})]
    tree = m.build(IDENTITY, accounts, LOGIN)
    first, second = tree["accounts"]
    assert first["password"] == "pw-from-phone"
    assert first["name"] == "Alice <1001>"
    assert first["SIP_keep_alive_timeout"] == 45
    assert first["SIP_callerId"] == "Al"
    assert second["SIP_callerId"] == "none"
    assert first["stun"] == {"stun_port": 3478}
    assert first["codecs"] == [{"codec_id": 0, "priority": 1}, {"codec_id": 6, "priority": 2}]
    assert first["@extra"] == {"SIP_future_option": "1001"}
    assert second["SIP_domain"] == "b.example"
    assert tree["diagnostics"] == {"enable_debug_log": True}


def test_load_time_problems():
    _, problems = mapping({"account": {
        "username": "u", "password": "p", "SIP_domain": "d",
        "SIP_domian": "x",
        "SIP_transport_type": "pigeon",
        "register_on_startup": "yes",
        "stun": {"stun_port": 70000},
        "codecs": [{"codec_id": 99}],
        "extra": {"username": "x"},
        "name": "{bogus.x}",
    }})
    joined = "\n".join(problems)
    assert "'mapping.account.SIP_domian': unknown option" in joined
    assert "'mapping.account.SIP_transport_type'" in joined
    assert "'mapping.account.register_on_startup'" in joined
    assert "'mapping.account.stun.stun_port'" in joined
    assert "'mapping.account.codecs[0].codec_id'" in joined
    assert "'mapping.account.extra.username': <account> already defines 'username'" in joined
    assert "'mapping.account.name': placeholder {bogus.x}" in joined
    assert len(problems) == 7


def test_missing_field_without_default_is_internal_error():
    m, problems = mapping({"account": {"username": "{account.user}", "password": "p",
                                       "SIP_domain": "d"}})
    assert problems == []
    with pytest.raises(InternalError, match=r"account\.user"):
        m.build(IDENTITY, [Account({})], LOGIN)


def test_account_table_is_required():
    _, problems = mapping({})
    assert problems == ["Config value 'mapping.account': is required"]


@pytest.mark.parametrize(("account", "expected"), [
    ({"username": "u", "password": "p"}, "sip accounts need username, password, SIP_domain; "
                                         "missing: SIP_domain"),
    ({"protocol": "iax2", "username": "u", "password": "p", "SIP_domain": "x"},
     "iax2 accounts need username, password, IAX2_host; missing: IAX2_host"),
])
def test_required_options_are_checked_at_load(account, expected):
    _, problems = mapping({"account": account})
    assert problems == [f"Config value 'mapping.account': {expected}"]


@pytest.mark.parametrize("name", ["bad name", "codecs", "xmlthing", "1st"])
def test_unusable_extra_names_are_load_errors(name):
    _, problems = mapping({"account": {"username": "u", "password": "p", "SIP_domain": "d",
                                       "extra": {name: "x"}}})
    assert len(problems) == 1 and f"'mapping.account.extra.{name}'" in problems[0]


def test_numbers_are_text_for_text_options():
    from bridge.zoiper.schema import ACCOUNT

    assert ACCOUNT.option("username").check(4915112345678) == "4915112345678"


def test_static_parts_are_built_once_and_dynamic_parts_per_request():
    m, problems = mapping({"account": {
        "username": "{account.user}", "password": "p", "SIP_domain": "d",
        "stun": {"use_stun": "custom", "stun_port": 3478},
        "zrtp": {"enabled": "{account.zrtp}"},
        "codecs": [{"codec_id": 0, "priority": 1}],
    }})
    assert problems == []
    one = m.build(IDENTITY, [Account({"user": "1", "zrtp": True})], LOGIN)["accounts"][0]
    two = m.build(IDENTITY, [Account({"user": "2", "zrtp": False})], LOGIN)["accounts"][0]
    assert (one["username"], two["username"]) == ("1", "2")
    assert (one["zrtp"], two["zrtp"]) == ({"enabled": True}, {"enabled": False})
    assert one["stun"] is two["stun"] and one["codecs"] is two["codecs"]  # shared, built once
    assert one["password"] == two["password"] == "p"

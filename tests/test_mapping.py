from __future__ import annotations

import re

import pytest

from bridge.config import Section
from bridge.errors import InternalError
from bridge.mapping import ConfigMapping, Field, parse_template
from bridge.models import Account, Credentials, Identity
from bridge.placeholders import UnsafeValue
from bridge.zoiper.dialects import ANDROID, DESKTOP, IOS
from bridge.zoiper.document import parse_config, render_config

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


def test_text_that_is_not_unicode_is_refused_naming_the_field():
    """A lone surrogate from a backend cannot be written as UTF-8: a 500 that names the
    field, not an encoder traceback with the value in it."""
    m, problems = mapping({"account": {"username": "{account.user}", "password": "p",
                                       "SIP_domain": "d", "name": "x {identity.displayName}"}})
    assert problems == []
    for identity, account, field in [(IDENTITY, {"user": "u\ud800"}, "{account.user}"),
                                     (Identity("a", {"displayName": "\udfff"}), {"user": "u"},
                                      "{identity.displayName}")]:
        with pytest.raises(UnsafeValue, match=re.escape(f"the value of {field} cannot be "
                                                        "placed")) as caught:
            m.build(identity, [Account(account)], LOGIN)
        assert isinstance(caught.value, InternalError)


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


# --- dialects ---------------------------------------------------------------------------------


def desktop_mapping(data: dict) -> tuple[ConfigMapping, list[str]]:
    section = Section(data, "mapping")
    result = ConfigMapping.from_config(section, DESKTOP)
    return result, section.problems


DESKTOP_ACCOUNT = {
    "ident": "Z{account.sip_user}",
    "username": "{account.sip_user}",
    "password": "{account.sip_password}",
    "SIP_domain": "{account.domain}",
    "SIP_use_blf": True,
    "codecs": [{"codec_id": 35, "priority": 1, "enabled": True, "bps": 0}],
    "zrtp": {"enabled": True,
             "cipher_algorithms": [{"name": "AES1", "id": 0, "selected": True}]},
}


def test_desktop_mapping_fills_general_audio_and_the_accounts():
    m, problems = desktop_mapping({
        "account": DESKTOP_ACCOUNT,
        "general": {"account": "Z{identity.ext}", "auto_away": 300, "record_calls": False,
                    "record_filename": "call_{{YYYY}}-{{MM}}",
                    "extra": {"future_general_option": "1"}},
        "audio": {"selected_input_device": {"use_default": False, "name": "Headset"}},
        "provision": {"username": "{login.username}", "password": "{login.password}"},
    })
    assert problems == []
    accounts = [Account({"sip_user": "1001", "sip_password": "s1", "domain": "pbx.example"}),
                Account({"sip_user": "1002", "sip_password": "s2", "domain": "pbx.example"})]
    tree = m.build(IDENTITY, accounts, LOGIN)
    parsed = parse_config(render_config(tree, DESKTOP), DESKTOP, allow_extra=True)
    assert [a["ident"] for a in parsed["accounts"]] == ["Z1001", "Z1002"]
    assert parsed["accounts"][0]["zrtp"]["cipher_algorithms"] == [
        {"name": "AES1", "id": "0", "selected": "true"}]
    assert parsed["general"] == {"account": "Z1001", "auto_away": "300", "record_calls": "false",
                                 "record_filename": "call_{YYYY}-{MM}",
                                 "@extra": {"future_general_option": "1"}}
    assert parsed["audio"] == {"selected_input_device": {"use_default": "false",
                                                         "name": "Headset"}}
    assert parsed["provision"] == {"username": "Alice", "password": "pw-from-phone"}
    # Sections without per-request placeholders are built once and shared.
    assert m.build(IDENTITY, accounts, LOGIN)["audio"] is tree["audio"]


def test_desktop_mapping_problems_have_key_paths():
    _, problems = desktop_mapping({
        "account": {**DESKTOP_ACCOUNT, "balance_url": "x", "protocol": "http_phone_control"},
        "general": {"auto_awya": 1, "auto_away": "soon", "record_format": "ogg",
                    "account": "{account.sip_user}"},
        "audio": {"selected_input_device": {"use_default": "maybe"}},
        "generl": {},
        "codecs": {"codec_id": 0},
        "accounts": {},
    })
    assert problems == [
        "Config value 'mapping.account.balance_url': unknown option for <account> (options "
        "the schema does not know go in [mapping.account.extra])",
        "Config value 'mapping.account': http_phone_control accounts need "
        "HTTP_PHONE_CONTROL_host; missing: HTTP_PHONE_CONTROL_host",
        "Config value 'mapping.general.auto_awya': unknown option for <general> (options the "
        "schema does not know go in [mapping.general.extra])",
        "Config value 'mapping.general.auto_away': expected an integer, got 'soon'",
        "Config value 'mapping.general.record_format': expected one of wav, mp3, got 'ogg'",
        "Config value 'mapping.general.account': {account.sip_user} is only known per account; "
        "<general> is filled once per request (give a default)",
        "Config value 'mapping.audio.selected_input_device.use_default': expected true or "
        "false, got 'maybe'",
        "Config value 'mapping.generl': Zoiper5 Desktop 1.16.2 has no section <generl>; "
        + EXPECTED_DESKTOP_SECTIONS,
        "Config value 'mapping.codecs': <codecs> is a list in Zoiper5 Desktop 1.16.2; only "
        "single sections can be mapped, " + EXPECTED_DESKTOP_SECTIONS,
        "Config value 'mapping.accounts': the accounts list is built from [mapping.account], "
        "once per account; " + EXPECTED_DESKTOP_SECTIONS,
    ]


EXPECTED_DESKTOP_SECTIONS = (
    "expected account or one of: general, audio, hid, sip_options, iax_options, rtp_options, "
    "stun, diagnostics, network, chat, provision, popup, video, skin, "
    "forwarding_and_auto_answer, gui, profile, google_analytics, crash_handler, proxy, history")


@pytest.mark.parametrize(("dialect", "account", "expected"), [
    (DESKTOP, {"protocol": "iax2", "username": "u", "password": "p"},
     "iax2 accounts need username, password, IAX2_host; missing: IAX2_host"),
    (DESKTOP, {"protocol": "http_phone_control", "HTTP_PHONE_CONTROL_path": "/x"},
     "http_phone_control accounts need HTTP_PHONE_CONTROL_host; "
     "missing: HTTP_PHONE_CONTROL_host"),
    (IOS, {"username": "u", "SIP_domain": "d"},
     "sip accounts need username, password, SIP_domain; missing: password"),
])
def test_required_options_are_the_dialects(dialect, account, expected):
    section = Section({"account": account}, "mapping")
    ConfigMapping.from_config(section, dialect)
    assert section.problems == [f"Config value 'mapping.account': {expected}"]


def test_the_phones_have_no_desktop_sections():
    for dialect in (ANDROID, IOS):
        section = Section({"account": {"username": "u", "password": "p", "SIP_domain": "d"},
                           "general": {"auto_away": 1}}, "mapping")
        ConfigMapping.from_config(section, dialect)
        assert len(section.problems) == 1
        assert section.problems[0].startswith(
            f"Config value 'mapping.general': {dialect.title} has no section <general>; "
            "expected account or one of: diagnostics")


def test_default_dialect_is_android():
    m, problems = mapping({"account": {"username": "u", "password": "p", "SIP_domain": "d"},
                           "diagnostics": {"enable_debug_log": True}})
    assert problems == [] and m.dialect is ANDROID
    assert m.diagnostics is m.sections["diagnostics"]


@pytest.mark.parametrize("password", [3.25, ["hunter2"], "hunter{2}", {"value": "x",
                                                                      "default": [2.5]}])
def test_literal_secrets_are_not_shown_in_load_problems(password):
    _, problems = desktop_mapping({"account": {"username": "u", "SIP_domain": "d",
                                               "password": password},
                                   "provision": {"password": password}})
    # one each for the two values, and the account misses its (unusable) password
    assert len(problems) == 3 and problems[1].endswith("missing: password")
    for problem in problems:
        assert "hunter" not in problem and "3.25" not in problem and "2.5" not in problem


# --- what backends send: 0/1, 't'/'f', 'yes'/'no', numeric text (schema.Option.coerce) ----


COERCING = {"account": {"username": "u", "password": "p", "SIP_domain": "d",
                        "register_on_startup": "{account.enabled}",
                        "SIP_keep_alive_timeout": "{account.keepalive}",
                        "SIP_use_rport": {"value": "{account.rport}", "default": False}}}


@pytest.mark.parametrize(("raw", "expected"), [
    (1, True), (0, False), (True, True), (False, False), ("t", True), ("f", False),
    ("TRUE", True), (" false ", False), ("yes", True), ("No", False), ("1", True), ("0", False),
    ("Y", True), ("n", False), ("on", True), ("off", False),
])
def test_backend_booleans_feed_boolean_options(raw, expected):
    m, problems = mapping(COERCING)
    assert problems == []
    [account] = m.build(IDENTITY, [Account({"enabled": raw, "keepalive": 30})], LOGIN)["accounts"]
    assert account["register_on_startup"] is expected
    assert account["SIP_use_rport"] is False  # the default, not coerced: a TOML literal
    assert parse_config(render_config({"accounts": [account]}))["accounts"][0][
        "register_on_startup"] == ("true" if expected else "false")


@pytest.mark.parametrize(("raw", "expected"), [("30", 30), (" 45 ", 45), ("+60", 60),
                                               ("90.0", 90), (120, 120)])
def test_numeric_text_feeds_integer_options(raw, expected):
    m, _ = mapping(COERCING)
    [account] = m.build(IDENTITY, [Account({"enabled": 1, "keepalive": raw})], LOGIN)["accounts"]
    assert account["SIP_keep_alive_timeout"] == expected


@pytest.mark.parametrize(("field", "raw", "named"), [
    ("enabled", 2, "{account.enabled}"), ("enabled", "maybe", "{account.enabled}"),
    ("enabled", "", "{account.enabled}"), ("keepalive", "thirty", "{account.keepalive}"),
    ("keepalive", "1.5", "{account.keepalive}"), ("rport", "sometimes", "{account.rport}"),
])
def test_a_value_that_is_neither_is_an_error_naming_the_field(field, raw, named):
    m, _ = mapping(COERCING)
    fields = {"enabled": 1, "keepalive": 30, field: raw}
    with pytest.raises(InternalError) as info:
        m.build(IDENTITY, [Account(fields)], LOGIN)
    assert named in info.value.detail
    assert "alice" in info.value.detail


def test_literals_in_the_configuration_stay_strict():
    _, problems = mapping({"account": {**COERCING["account"], "register_on_startup": 1}})
    assert problems == ["Config value 'mapping.account.register_on_startup': "
                        "expected true or false, got 1"]


def test_text_around_a_placeholder_is_not_coerced():
    # "{account.x}s" is text, never a boolean: check() rejects it as before.
    m, problems = mapping({"account": {**COERCING["account"],
                                       "register_on_startup": "{account.enabled}!"}})
    assert problems == []
    with pytest.raises(Exception, match="true or false"):
        render_config(m.build(IDENTITY, [Account({"enabled": 1, "keepalive": 3})], LOGIN))

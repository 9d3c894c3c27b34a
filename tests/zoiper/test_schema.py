from __future__ import annotations

import dataclasses

import pytest

from bridge.zoiper import schema
from bridge.zoiper.schema import (
    ACCOUNT,
    CODEC,
    DIAGNOSTICS,
    ROOT,
    STUN,
    ZRTP,
    Kind,
    Option,
    SchemaError,
    SectionSpec,
    xml_text_ok,
)


def walk(spec: SectionSpec, path: str = "options") -> list[tuple[str, Option]]:
    """Every option below `spec`, with a readable path for test ids."""
    found = [(f"{path}.{name}", option) for name, option in spec.options.items()]
    for name, sub in spec.sections.items():
        if sub.item is None:
            found += walk(sub, f"{path}.{name}")
        else:
            found += walk(sub.item, f"{path}.{name}.{sub.item.name}")
    return found


ALL = walk(ROOT)
IDS = [path for path, _ in ALL]


def of_kind(kind: Kind) -> list[Option]:
    return [option for _, option in ALL if option.kind is kind]


def ids(options: list[Option]) -> list[str]:
    return [o.name for o in options]


BOOLEANS = of_kind(Kind.BOOLEAN)
INTEGERS = of_kind(Kind.INTEGER)
STRINGS = of_kind(Kind.STRING)
ENUMERATIONS = of_kind(Kind.ENUMERATION)
TEXT_ENUMERATIONS = of_kind(Kind.TEXT_ENUMERATION)


# --- completeness: names typed by hand from the vendor document -------------------------------

ACCOUNT_NAMES = {
    "name": Kind.STRING, "username": Kind.STRING, "password": Kind.STRING,
    "register_on_startup": Kind.BOOLEAN, "voicemail_check_extension": Kind.STRING,
    "mwi_subscribe_usage": Kind.TEXT_ENUMERATION, "use_number_rewriting": Kind.BOOLEAN,
    "number_rewriting_country": Kind.STRING, "number_rewriting_prefix": Kind.STRING,
    "use_strip_dial_chars": Kind.BOOLEAN, "strip_dial_chars": Kind.STRING,
    "protocol": Kind.TEXT_ENUMERATION, "rtcp_profile_type": Kind.TEXT_ENUMERATION,
    "enabled_video_fmtp": Kind.BOOLEAN, "rate_url": Kind.STRING, "balance_url": Kind.STRING,
    "enable_push_notifications": Kind.BOOLEAN,
    "SIP_domain": Kind.STRING, "SIP_use_outbound_proxy": Kind.BOOLEAN,
    "SIP_outbound_proxy": Kind.STRING, "SIP_transport_type": Kind.TEXT_ENUMERATION,
    "SIP_auth_username": Kind.STRING, "SIP_callerId": Kind.STRING,
    "SIP_use_rport": Kind.BOOLEAN, "SIP_use_rport_media": Kind.BOOLEAN,
    "SIP_srtp_mode": Kind.TEXT_ENUMERATION, "SIP_dtmf_style": Kind.TEXT_ENUMERATION,
    "SIP_publish_presence": Kind.BOOLEAN, "SIP_subscribe_presence": Kind.BOOLEAN,
    "SIP_keep_alive_mode": Kind.TEXT_ENUMERATION, "SIP_keep_alive_timeout": Kind.INTEGER,
    "SIP_use_reg_event": Kind.BOOLEAN,
    "IAX2_host": Kind.STRING, "IAX2_context": Kind.STRING, "IAX2_callerId": Kind.STRING,
    "IAX2_callerNumber": Kind.STRING, "IAX2_dtmf_style": Kind.TEXT_ENUMERATION,
    "reregistration_mode": Kind.TEXT_ENUMERATION, "reregistration_time": Kind.INTEGER,
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ACCOUNT, ACCOUNT_NAMES),
        (CODEC, {"codec_id": Kind.ENUMERATION, "priority": Kind.INTEGER, "enabled": Kind.BOOLEAN,
                 "bps": Kind.INTEGER, "dtx": Kind.BOOLEAN, "vbr": Kind.BOOLEAN}),
        (STUN, {"use_stun": Kind.TEXT_ENUMERATION, "stun_host": Kind.STRING,
                "stun_port": Kind.INTEGER, "stun_refresh_period": Kind.INTEGER}),
        (ZRTP, {"enabled": Kind.BOOLEAN}),
        (DIAGNOSTICS, {"enable_debug_log": Kind.BOOLEAN}),
        (ROOT, {}),
    ],
    ids=["account", "codec", "stun", "zrtp", "diagnostics", "options"],
)
def test_every_documented_option_is_there_with_its_type(
    spec: SectionSpec, expected: dict[str, Kind]
) -> None:
    assert {name: o.kind for name, o in spec.options.items()} == expected


def test_section_tree() -> None:
    assert ROOT.name == "options"
    assert list(ROOT.sections) == ["accounts", "diagnostics"]
    assert ROOT.section("accounts").item is ACCOUNT
    assert ROOT.section("diagnostics") is DIAGNOSTICS
    assert list(ACCOUNT.sections) == ["codecs", "stun", "zrtp"]
    assert ACCOUNT.section("codecs").item is CODEC
    assert ACCOUNT.section("stun") is STUN and ACCOUNT.section("zrtp") is ZRTP
    assert ACCOUNT.section("stun").item is None
    assert ACCOUNT.option("nope") is None and ACCOUNT.section("nope") is None
    assert ACCOUNT.option("username") is ACCOUNT.options["username"]
    assert ACCOUNT.section("username") is None  # an option is not a section


def test_order_lists_every_child_once() -> None:
    for spec in (ROOT, ACCOUNT, CODEC, STUN, ZRTP, DIAGNOSTICS):
        assert sorted(spec.order) == sorted([*spec.options, *spec.sections])


def test_account_order_puts_iax_after_sip_and_sections_before_registration() -> None:
    order = ACCOUNT.order
    assert order.index("SIP_use_reg_event") < order.index("IAX2_host") < order.index("codecs")
    assert order[-6:] == ("codecs", "stun", "zrtp", "reregistration_mode",
                          "reregistration_time", "rtcp_profile_type")


def test_codec_ids_are_exactly_the_documented_ones() -> None:
    expected = ["-1", "0", "1", "6", "7", "16", "18", *map(str, range(24, 44))]
    assert list(CODEC.options["codec_id"].choices) == expected
    assert set(schema.CODEC_IDS) == set(expected)


@pytest.mark.parametrize(
    ("option", "choices"),
    [
        ("mwi_subscribe_usage", "disabled before after both"),
        ("protocol", "sip iax2"),
        ("rtcp_profile_type", "avp avpf both"),
        ("SIP_transport_type", "udp tcp tls"),
        ("SIP_srtp_mode", "none sdes"),
        ("SIP_dtmf_style", "inband outband rfc_2833 SIP_info_numeric SIP_info_ascii disabled"),
        ("SIP_keep_alive_mode", "disabled default custom"),
        ("IAX2_dtmf_style", "outband inband disabled"),
        ("reregistration_mode", "default custom"),
    ],
)
def test_account_text_enumerations(option: str, choices: str) -> None:
    assert set(ACCOUNT.options[option].choices) == set(choices.split())


def test_use_stun_choices() -> None:
    assert set(STUN.options["use_stun"].choices) == {"disabled", "default", "custom"}


@pytest.mark.parametrize(
    ("spec", "name", "default"),
    [
        (ACCOUNT, "register_on_startup", "true"),
        (ACCOUNT, "mwi_subscribe_usage", "disabled"),
        (ACCOUNT, "number_rewriting_prefix", "+"),
        (ACCOUNT, "strip_dial_chars", ".-() []{}"),
        (ACCOUNT, "protocol", "sip"),
        (ACCOUNT, "rtcp_profile_type", "avp"),
        (ACCOUNT, "enabled_video_fmtp", "true"),
        (ACCOUNT, "SIP_transport_type", "udp"),
        (ACCOUNT, "SIP_use_rport", "true"),
        (ACCOUNT, "SIP_dtmf_style", "rfc_2833"),
        (ACCOUNT, "SIP_publish_presence", "false"),
        (ACCOUNT, "SIP_keep_alive_timeout", "30"),
        (ACCOUNT, "IAX2_dtmf_style", "outband"),
        (ACCOUNT, "reregistration_time", "60"),
        (ACCOUNT, "password", ""),
        (CODEC, "codec_id", "0"),
        (STUN, "use_stun", "default"),
        (STUN, "stun_host", "stun.zoiper.com"),
        (STUN, "stun_port", "3478"),
        (STUN, "stun_refresh_period", "30"),
        (ZRTP, "enabled", "false"),
        (DIAGNOSTICS, "enable_debug_log", "false"),
    ],
)
def test_documented_defaults(spec: SectionSpec, name: str, default: str) -> None:
    assert spec.options[name].default == default


@pytest.mark.parametrize("option", [o for _, o in ALL], ids=IDS)
def test_every_default_is_valid_and_canonical(option: Option) -> None:
    assert option.check(option.default) == option.default
    assert option.doc and len(option.doc) < 120


def test_only_password_is_secret() -> None:
    assert [path for path, o in ALL if o.secret] == ["options.accounts.account.password"]


def test_schema_is_read_only() -> None:
    with pytest.raises(TypeError):
        ACCOUNT.options["injected"] = Option("injected", Kind.STRING)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        STUN.options["stun_port"].maximum = 1  # type: ignore[misc]
    assert "injected" not in ACCOUNT.options


# --- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option", BOOLEANS, ids=ids(BOOLEANS))
def test_boolean_accepts(option: Option) -> None:
    assert option.check("true") == "true"
    assert option.check("false") == "false"
    assert option.check(True) == "true"
    assert option.check(False) == "false"


@pytest.mark.parametrize("value", ["1", "0", "True", "FALSE", "yes", "on", "", " true", 1, 0, None])
@pytest.mark.parametrize("option", BOOLEANS, ids=ids(BOOLEANS))
def test_boolean_rejects(option: Option, value: object) -> None:
    with pytest.raises(SchemaError) as info:
        option.check(value)  # type: ignore[arg-type]
    assert info.value.path == option.name
    assert "true or false" in str(info.value)


# --- integers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option", INTEGERS, ids=ids(INTEGERS))
def test_integer_accepts(option: Option) -> None:
    n = int(option.default)
    assert option.check(n) == str(n)
    assert option.check(str(n)) == str(n)
    assert option.check(f"0{n}") == str(n)  # canonical form drops leading zeros


@pytest.mark.parametrize(
    "value", [True, False, "1.5", 1.5, " 1", "1 ", "+1", "", "1\n", "0x10", "1e3", "\u0661", None]
)
@pytest.mark.parametrize("option", INTEGERS, ids=ids(INTEGERS))
def test_integer_rejects(option: Option, value: object) -> None:
    with pytest.raises(SchemaError, match="integer"):
        option.check(value)  # type: ignore[arg-type]


def test_stun_port_range() -> None:
    port = STUN.options["stun_port"]
    assert (port.minimum, port.maximum) == (1, 65535)
    assert port.check(1) == "1"
    assert port.check("65535") == "65535"
    for bad in (0, "0", 65536, "65536", -1):
        with pytest.raises(SchemaError, match="1 to 65535"):
            port.check(bad)


@pytest.mark.parametrize(
    "name", ["SIP_keep_alive_timeout", "reregistration_time"]
)
def test_intervals_are_not_negative(name: str) -> None:
    option = ACCOUNT.options[name]
    assert option.check(0) == "0"
    with pytest.raises(SchemaError):
        option.check(-1)


def test_bitrate_is_not_negative_and_priority_is_unbounded() -> None:
    with pytest.raises(SchemaError):
        CODEC.options["bps"].check("-8000")
    assert CODEC.options["priority"].check(-5) == "-5"
    assert CODEC.options["priority"].check("1003") == "1003"
    assert CODEC.options["priority"].minimum is None
    assert CODEC.options["priority"].maximum is None


def test_integers_stay_within_32_bits() -> None:
    priority = CODEC.options["priority"]
    assert priority.check(2**31 - 1) == str(2**31 - 1)
    assert priority.check(-(2**31)) == str(-(2**31))
    for bad in (2**31, "9" * 40, 10**5000):
        with pytest.raises(SchemaError):
            priority.check(bad)


# --- enumerations -----------------------------------------------------------------------------

ENUM_CASES = [(o, c) for o in ENUMERATIONS for c in o.choices]


@pytest.mark.parametrize(("option", "choice"), ENUM_CASES,
                         ids=[f"{o.name}={c}" for o, c in ENUM_CASES])
def test_enumeration_accepts_every_listed_value(option: Option, choice: str) -> None:
    assert option.check(choice) == choice
    assert option.check(int(choice)) == choice


@pytest.mark.parametrize("value", ["2", 2, 44, "44", -2, "", "zero", True, False, "1.0", None])
@pytest.mark.parametrize("option", ENUMERATIONS, ids=ids(ENUMERATIONS))
def test_enumeration_rejects(option: Option, value: object) -> None:
    with pytest.raises(SchemaError, match="one of"):
        option.check(value)  # type: ignore[arg-type]


TEXT_CASES = [(o, c) for o in TEXT_ENUMERATIONS for c in o.choices]


@pytest.mark.parametrize(("option", "choice"), TEXT_CASES,
                         ids=[f"{o.name}={c}" for o, c in TEXT_CASES])
def test_text_enumeration_accepts_every_listed_value(option: Option, choice: str) -> None:
    assert option.check(choice) == choice


@pytest.mark.parametrize(("option", "choice"), TEXT_CASES,
                         ids=[f"{o.name}={c}" for o, c in TEXT_CASES])
def test_text_enumeration_is_case_sensitive_and_exact(option: Option, choice: str) -> None:
    for bad in (choice.upper(), choice.capitalize(), f" {choice}", f"{choice}\n"):
        if bad != choice:
            with pytest.raises(SchemaError, match="one of"):
                option.check(bad)


@pytest.mark.parametrize("value", ["bogus", "", 0, 1, True, None])
@pytest.mark.parametrize("option", TEXT_ENUMERATIONS, ids=ids(TEXT_ENUMERATIONS))
def test_text_enumeration_rejects(option: Option, value: object) -> None:
    with pytest.raises(SchemaError, match="one of"):
        option.check(value)  # type: ignore[arg-type]


# --- strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", STRINGS, ids=ids(STRINGS))
def test_string_accepts(option: Option) -> None:
    for text in ("Zoë 日本 😀", "", "a\tb\nc\rd", "<&>", "\ud7ff\ue000\ufffd\U0010ffff"):
        assert option.check(text) == text
    assert option.check(42) == "42"


@pytest.mark.parametrize("value", ["a\x00b", "\x0b", "\x1f", "\ufffe", "\uffff", "x\ud800",
                                   "\udfff", True, None, 1.5, b"bytes"])
@pytest.mark.parametrize("option", STRINGS, ids=ids(STRINGS))
def test_string_rejects(option: Option, value: object) -> None:
    with pytest.raises(SchemaError) as info:
        option.check(value)  # type: ignore[arg-type]
    assert info.value.path == option.name


def test_secret_value_never_appears_in_errors() -> None:
    password = ACCOUNT.options["password"]
    assert password.secret
    for value in ("hunter2\x00", "correct horse\ufffe", "p\ud800w"):
        with pytest.raises(SchemaError) as info:
            password.check(value)
        shown = f"{info.value} {info.value.message} {info.value!r} {info.value.args}"
        assert "hunter2" not in shown and "horse" not in shown and "p\ud800w" not in shown
        assert "password" in str(info.value)


def test_non_secret_errors_show_the_value_and_what_was_expected() -> None:
    with pytest.raises(SchemaError) as info:
        ACCOUNT.options["SIP_transport_type"].check("UDP")
    assert str(info.value).startswith("SIP_transport_type: ")
    assert "'UDP'" in str(info.value) and "udp, tcp, tls" in str(info.value)
    with pytest.raises(SchemaError) as info:
        ACCOUNT.options["name"].check("bad\x00")
    assert "U+0000" in str(info.value)


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(SchemaError) as info:
        ACCOUNT.options["protocol"].check("x" * 10_000)
    assert len(str(info.value)) < 200


def test_schema_error_is_a_value_error_with_path() -> None:
    err = SchemaError("accounts[0].codecs[2].codec_id", "expected one of 0, 1")
    assert isinstance(err, ValueError)
    assert err.path == "accounts[0].codecs[2].codec_id"
    assert err.message == "expected one of 0, 1"
    assert str(err) == "accounts[0].codecs[2].codec_id: expected one of 0, 1"
    assert str(SchemaError("", "no path")) == "no path"


# --- xml_text_ok ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("", True), ("plain", True), ("\t\n\r", True), (" ", True), ("\x7f\x80\x9f", True),
        ("\ud7ff", True), ("\ue000", True), ("\ufffd", True), ("\U00010000", True),
        ("\U0010ffff", True), ("Zoë 日本 😀", True),
        ("\x00", False), ("\x08", False), ("\x0b", False), ("\x0c", False), ("\x1f", False),
        ("\ud800", False), ("\udfff", False), ("ok\ud83d", False), ("\ufffe", False),
        ("\uffff", False),
    ],
)
def test_xml_text_ok(text: str, ok: bool) -> None:
    assert xml_text_ok(text) is ok

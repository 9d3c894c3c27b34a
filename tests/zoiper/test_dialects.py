"""The three dialects: their vendor examples, their differences, and every declared option.

The round-trip tests are generated from the declared schema (every option of
every dialect, every boolean, every enumeration value, both integer bounds,
awkward text), so an option added to a dialect is tested without a new line.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.zoiper import android, desktop, document, ios, schema
from bridge.zoiper.dialects import ANDROID, DESKTOP, DIALECTS, IOS, Dialect, dialect_named
from bridge.zoiper.document import parse_config, render_config, render_error, validate
from bridge.zoiper.schema import Kind, Option, SchemaError, SectionSpec, xml_text_ok

EXAMPLES = Path(__file__).parent / "examples"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

# One step of a path: (element name, whether it is a list whose first entry is meant).
Step = tuple[str, bool]


def walk(spec: SectionSpec, steps: tuple[Step, ...] = ()) -> list[tuple[tuple[Step, ...], Option]]:
    found = [((*steps, (name, False)), option) for name, option in spec.options.items()]
    for name, sub in spec.sections.items():
        if sub.item is None:
            found += walk(sub, (*steps, (name, False)))
        else:
            found += walk(sub.item, (*steps, (name, True)))
    return found


def sections_of(spec: SectionSpec) -> list[SectionSpec]:
    """Every section below `spec` (a list's item counts, its container does not)."""
    found = []
    for sub in spec.sections.values():
        inner = sub.item if sub.item is not None else sub
        found += [inner, *sections_of(inner)]
    return found


def words(text: str) -> list[str]:
    return text.split()


def dotted(steps: tuple[Step, ...]) -> str:
    return ".".join(f"{name}[0]" if many else name for name, many in steps)


OPTIONS = [(d, steps, option) for d in DIALECTS.values() for steps, option in walk(d.root)]
OPTION_IDS = [f"{d.name}:{dotted(steps)}" for d, steps, _ in OPTIONS]


def base_account(dialect: Dialect) -> dict[str, Any]:
    """An account every protocol of `dialect` accepts: all required options filled."""
    return {name: f"{name.lower()}.example" for names in dialect.required.values()
            for name in names}


def tree_with(dialect: Dialect, steps: tuple[Step, ...], value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {"accounts": [base_account(dialect)]}
    here = tree
    for name, many in steps[:-1]:
        if name == "accounts":
            here = tree["accounts"][0]
        elif many:
            here[name] = [{}]
            here = here[name][0]
        else:
            here = here.setdefault(name, {})
    here[steps[-1][0]] = value
    return tree


def value_at(tree: dict[str, Any], steps: tuple[Step, ...]) -> Any:
    here: Any = tree
    for name, many in steps:
        here = here[name][0] if many else here[name]
    return here


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.xml").read_bytes()


def elements(data: bytes) -> list[tuple[str, str]]:
    """(path, text) of every element in document order; comments and indentation ignored."""
    parser = etree.XMLParser(remove_comments=True)
    root = etree.fromstring(data, parser)
    found = []
    for elem in root.iter():
        path = root.getroottree().getpath(elem)
        text = elem.text or ""
        found.append((path, "" if len(elem) else text))
    return found


# --- the interface --------------------------------------------------------------------------


def test_dialects_by_name() -> None:
    assert list(DIALECTS) == ["android", "ios", "desktop"]
    assert [dialect_named(n) for n in DIALECTS] == [ANDROID, IOS, DESKTOP]
    assert (ANDROID.root, ANDROID.account) == (android.ROOT, android.ACCOUNT)
    assert (IOS.root, DESKTOP.root) == (ios.ROOT, desktop.ROOT)
    assert DESKTOP.title == "Zoiper5 Desktop 1.16.2" and "iOS 1.14.3" in IOS.title
    with pytest.raises(KeyError, match=r"unknown Zoiper dialect 'symbian'.*android, ios, desktop"):
        dialect_named("symbian")


def test_dialects_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DESKTOP.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DESKTOP.required["sip"] = ()  # type: ignore[index]


def test_android_names_are_still_importable_from_the_old_places() -> None:
    from bridge.zoiper.schema import ACCOUNT, ROOT

    assert (ROOT, ACCOUNT) == (android.ROOT, android.ACCOUNT)
    assert document.REQUIRED is ANDROID.required
    with pytest.raises(AttributeError):
        schema.NOT_A_SPEC  # noqa: B018


@pytest.mark.parametrize("broken", [
    {"required": MappingProxyType({"sip": ("username",)})},  # iax2 missing
    {"required": MappingProxyType({"sip": ("nope",), "iax2": ()})},
    {"account": ios.ACCOUNT},  # not the one <accounts> holds
])
def test_an_inconsistent_dialect_is_refused_when_defined(broken: dict[str, Any]) -> None:
    fields = {"name": "x", "title": "X", "root": android.ROOT, "account": android.ACCOUNT,
              "required": android.REQUIRED, **broken}
    with pytest.raises(ValueError, match="x: "):
        Dialect(**fields)


def test_the_plan_is_built_once_per_dialect() -> None:
    assert ANDROID.plan is ANDROID.plan and ANDROID.plan is not DESKTOP.plan
    assert ANDROID.plan.spec is android.ROOT and DESKTOP.plan.spec is desktop.ROOT


def test_the_error_document_is_the_vendors_for_every_dialect() -> None:
    # The Android, iOS and Desktop provisioning documents define the same answer
    # (<error code="1">text</error>, code 1 the only one), so render_error has no dialect.
    root = etree.fromstring(render_error("Provisioning failed. Some error occurred."))
    assert (root.tag, dict(root.attrib), root.text) == (
        "error", {"code": "1"}, "Provisioning failed. Some error occurred.")
    assert "dialect" not in inspect.signature(render_error).parameters


# --- the vendor examples ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["android", "ios", "desktop"])
def test_vendor_example_parses_validates_and_renders_back_in_its_order(name: str) -> None:
    dialect = dialect_named(name)
    tree = parse_config(example(name), dialect)
    validate(tree, dialect)
    rendered = render_config(tree, dialect)
    assert parse_config(rendered, dialect) == tree
    # Our element order is the example's: every element and text comes back in place.
    assert elements(rendered) == elements(example(name))


def test_desktop_example_reads_as_described() -> None:
    tree = parse_config(example("desktop"), DESKTOP)
    zrtp = tree["accounts"][0]["zrtp"]
    assert [a["name"] for a in zrtp["cipher_algorithms"]] == ["AES3", "AES2", "AES1"]
    assert tree["audio"]["selected_input_device"]["use_default"] == "true"
    assert tree["proxy"]["custom_proxy"]["port"] == "12340"
    assert tree["history"]["limit"] == "2000"
    assert tree["open_url_on_event"] == [] and tree["hid"] == {}


@pytest.mark.parametrize(("doc", "dialect", "path"), [
    ("android", IOS, "accounts[0].mwi_subscribe_usage"),
    ("android", DESKTOP, "accounts[0].balance_url"),
    ("ios", ANDROID, "accounts[0].do_not_play_ringback_tones"),
    ("desktop", ANDROID, "general"),
    ("desktop", IOS, "general"),
])
def test_another_dialects_document_is_refused_with_a_path(doc: str, dialect: Dialect,
                                                          path: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_config(example(doc), dialect)
    assert info.value.path == path


@pytest.mark.parametrize(("dialect", "account_option", "path"), [
    (ANDROID, {"ident": "Z1"}, "accounts[0].ident"),
    (IOS, {"SIP_keep_alive_mode": "custom"}, "accounts[0].SIP_keep_alive_mode"),
    (ANDROID, {"zrtp": {"hash_algorithms": []}}, "accounts[0].zrtp.hash_algorithms"),
    (IOS, {"codecs": [{"bps": 0}]}, "accounts[0].codecs[0].bps"),
    (DESKTOP, {"SIP_use_reg_event": "false"}, "accounts[0].SIP_use_reg_event"),
    (DESKTOP, {"enable_push_notifications": "true"}, "accounts[0].enable_push_notifications"),
])
def test_an_option_only_another_dialect_defines_is_refused(
    dialect: Dialect, account_option: dict[str, Any], path: str
) -> None:
    sip = {"username": "alice", "password": "pw", "SIP_domain": "pbx.example.com"}
    tree = {"accounts": [{**sip, **account_option}]}
    for other in DIALECTS.values():
        if other is not dialect:
            try:
                validate(tree, other)
            except SchemaError:
                continue
            break
    else:
        pytest.fail("no other dialect defines it: the case tests nothing")
    with pytest.raises(SchemaError, match="has no option") as info:
        render_config(tree, dialect)
    assert info.value.path == path


def test_desktop_sections_are_refused_by_the_phones() -> None:
    tree = {"accounts": [base_account(ANDROID)], "general": {"auto_away": 60}}
    validate(tree, DESKTOP)
    for phone in (ANDROID, IOS):
        with pytest.raises(SchemaError) as info:
            validate(tree, phone)
        assert info.value.path == "general"


# --- every declared option round-trips -------------------------------------------------------


def accepted(option: Option) -> list[Any]:
    """Inputs the option must accept: every boolean form, choice, bound, and awkward text."""
    if option.kind is Kind.BOOLEAN:
        return [True, False, "true", "false"]
    if option.kind is Kind.TEXT_ENUMERATION:
        return list(option.choices)
    if option.kind is Kind.ENUMERATION:
        return [*option.choices, *(int(c) for c in option.choices)]
    if option.kind is Kind.INTEGER:
        low = INT_MIN if option.minimum is None else option.minimum
        high = INT_MAX if option.maximum is None else option.maximum
        return [low, high, str(low), str(high), int(option.default)]
    return ["", " ", "a & b < c > d", "]]>", "Zoë 日本 😀", "line\r\nnext\ttab", "  pad  ",
            "{YYYY}-{MM}", "4Az/iSiiZmVzApH6Nra2jQ==\n"]


def refused(option: Option) -> list[Any]:
    if option.kind is Kind.BOOLEAN:
        return ["yes", 1, "True"]
    if option.kind is Kind.TEXT_ENUMERATION:
        return ["bogus", option.choices[0].upper() + "x", 1]
    if option.kind is Kind.ENUMERATION:
        return ["999", -7, "one"]
    if option.kind is Kind.INTEGER:
        low = INT_MIN if option.minimum is None else option.minimum
        high = INT_MAX if option.maximum is None else option.maximum
        return [low - 1, high + 1, "1.5", True]
    return ["nul\x00", 1.5, None]


def required_names(dialect: Dialect) -> set[str]:
    return {name for names in dialect.required.values() for name in names}


@pytest.mark.parametrize(("dialect", "steps", "option"), OPTIONS, ids=OPTION_IDS)
def test_every_option_round_trips(dialect: Dialect, steps: tuple[Step, ...],
                                  option: Option) -> None:
    in_account = steps[0][0] == "accounts" and len(steps) == 2
    for value in accepted(option):
        expected = option.check(value)
        if in_account and option.name in required_names(dialect) and not expected.strip():
            continue  # blank credentials are refused on purpose (tested elsewhere)
        tree = tree_with(dialect, steps, value)
        parsed = parse_config(render_config(tree, dialect), dialect)
        assert value_at(parsed, steps) == expected, value


@pytest.mark.parametrize(("dialect", "steps", "option"), OPTIONS, ids=OPTION_IDS)
def test_every_option_refuses_bad_values_with_its_path(dialect: Dialect, steps: tuple[Step, ...],
                                                        option: Option) -> None:
    for value in refused(option):
        with pytest.raises(SchemaError) as info:
            render_config(tree_with(dialect, steps, value), dialect)
        assert info.value.path == dotted(steps)
        if option.secret:
            assert "nul" not in str(info.value) and "1.5" not in str(info.value)


STRING_OPTIONS = [(d, steps, o) for d, steps, o in OPTIONS if o.kind is Kind.STRING]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STRING_OPTIONS), st.text(max_size=40))
def test_any_text_in_any_string_option_round_trips_or_is_refused(
    case: tuple[Dialect, tuple[Step, ...], Option], text: str
) -> None:
    dialect, steps, _ = case
    tree = tree_with(dialect, steps, text)
    if steps[-1][0] in required_names(dialect) and len(steps) == 2 and not text.strip():
        return
    if not xml_text_ok(text):
        with pytest.raises(SchemaError):
            render_config(tree, dialect)
        return
    assert value_at(parse_config(render_config(tree, dialect), dialect), steps) == text


# --- declared facts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "steps", "option"), OPTIONS, ids=OPTION_IDS)
def test_every_default_is_valid_or_absent_and_documented(dialect: Dialect,
                                                         steps: tuple[Step, ...],
                                                         option: Option) -> None:
    # "" on an enumeration: the vendor names no default (contact service type, ...).
    if not (option.default == "" and option.kind is Kind.TEXT_ENUMERATION):
        assert option.check(option.default) == option.default
    assert option.doc and len(option.doc) < 120


SECRETS = {
    "android": ["accounts[0].password"],
    "ios": ["accounts[0].password"],
    "desktop": [
        "accounts[0].password", "accounts[0].custom_certificate", "provision.password",
        "contact_services[0].password", "contact_services[0].access_token",
        "contact_services[0].refresh_token", "proxy.password", "proxy.custom_proxy.password",
    ],
}


@pytest.mark.parametrize("name", list(SECRETS))
def test_exactly_the_secret_options_are_secret(name: str) -> None:
    dialect = dialect_named(name)
    assert [dotted(steps) for steps, o in walk(dialect.root) if o.secret] == SECRETS[name]


@pytest.mark.parametrize(("dialect", "steps", "option"),
                         [c for c in OPTIONS if c[2].secret],
                         ids=[i for i, c in zip(OPTION_IDS, OPTIONS, strict=True) if c[2].secret])
def test_secret_values_never_appear_in_errors(dialect: Dialect, steps: tuple[Step, ...],
                                              option: Option) -> None:
    for value in ["hunter2\x00", "hunter2\ufffe", 2.718281828, ["hunter2"], {"hunter2": 1}]:
        with pytest.raises(SchemaError) as info:
            render_config(tree_with(dialect, steps, value), dialect)
        message = str(info.value)
        assert "hunter2" not in message and "2.718" not in message, message


def test_section_and_option_counts() -> None:
    """Pins how much of each vendor document is encoded, so nothing drops out unnoticed.

    Sections: every element holding options (a list's item counts, its container
    does not); options: every leaf, counted where it appears (Desktop's stun twice).
    """
    counts = {name: (len(sections_of(d.root)), len(walk(d.root))) for name, d in DIALECTS.items()}
    assert counts == {"android": (5, 51), "ios": (10, 64), "desktop": (40, 280)}


DESKTOP_SECTIONS = {
    "general": "account auto_away minimize_to_tray minimize_on_close record_calls record_path "
               "record_filename record_format record_mode record_path_bookmark always_on_top "
               "reject_anonymous_calls auto_reject_calls reject_call_on_invisible "
               "reject_call_on_away reject_call_on_busy reject_call_on_phone "
               "reject_call_on_lunch reject_call_on_brb new_call_auto_popup new_call_blink "
               "command_line_call_auto_popup command_line_call_blink check_for_updates "
               "catch_protocol_requests integrate_into_outlook integrate_into_addressbook "
               "add_to_firewall start_with_os start_minimized use_custom_browser custom_browser "
               "on_transfer_request_style open_url_from_network automatic_open_url_from_network",
    "audio": "use_mic_boost use_echo_cancellation ring_tone_file pc_speaker_ring "
             "mute_on_early_media ring_when_talking disable_dtmf_sounds input_volume "
             "output_volume use_alternate_timer use_auto_mic_selection use_agc "
             "use_noise_suppression disable_ringing_sound",
    "hid": "use_generic_hid use_jabra_hid use_plantronics_hid use_sennheiser_hid",
    "sip_options": "port use_random_port tls_certificate_file override_domain_name domain "
                   "use_domain_certificate domain_certificate_file use_only_strong_cipher "
                   "protocol_suite",
    "iax_options": "port",
    "rtp_options": "port use_random_port session_name user_name url email",
    "stun": "use_stun stun_host stun_port stun_refresh_period",
    "diagnostics": "enable_debug_log enable_extra_dmp enable_audio_debug "
                   "enable_verbose_event_logging",
    "network": "signal_dscp media_dscp",
    "chat": "play_sound hide_offline new_message_auto_popup new_message_blink "
            "new_message_sound_file",
    "provision": "remember_username_password username password login_automatically provisioned",
    "popup": "check_for_focus peer_status im call voice_mail audio_device network "
             "use_native_popups auto_close_time",
    "video": "camera_device capture_width capture_height capture_fps bit_rate "
             "always_accept_video",
    "skin": "selected",
    "forwarding_and_auto_answer": "mode forward_seconds forward_extension autoanswer_seconds "
                                  "play_sound_on_auto_answer auto_answer_keep_setting enabled "
                                  "auto_answer_with_video accept_server_auto_answer",
    "gui": "switch_contact_on_transfer enable_chat_support collapse_on_hangup language "
           "auto_focus_window_on_incoming_chat auto_focus_window_on_incoming_call "
           "show_upgrade_wizard",
    "profile": "last_online_manual_state",
    "google_analytics": "ident enabled queue_message_count",
    "crash_handler": "enabled upload_dumps",
    "proxy": "mode username password",
    "history": "limit_mode limit allowed_overflow_percent_mode allowed_overflow_percent",
}


def test_desktop_main_sections_and_their_options() -> None:
    """Names typed from the document's section headings, in its order (history last)."""
    assert list(desktop.ROOT.sections) == [
        "general", "audio", "hid", "codecs", "accounts", "sip_options", "iax_options",
        "rtp_options", "stun", "diagnostics", "network", "chat", "provision", "popup", "video",
        "skin", "forwarding_and_auto_answer", "open_url_on_event", "gui", "profile",
        "contact_services", "google_analytics", "crash_handler", "proxy", "history"]
    for name, options in DESKTOP_SECTIONS.items():
        section = desktop.ROOT.sections[name]
        assert list(section.options) == words(options), name


def test_desktop_nested_sections() -> None:
    audio = desktop.ROOT.sections["audio"]
    assert list(audio.sections) == [f"selected_{d}_device" for d in
                                    ("input", "output", "ringing", "speaker_input",
                                     "speaker_output")]
    for device in audio.sections.values():
        assert list(device.options) == ["use_default", "name"]
        assert device.options["use_default"].default == "true"
    assert list(desktop.ROOT.sections["proxy"].sections["custom_proxy"].options) == [
        "hostname", "port", "username", "password"]
    assert desktop.ROOT.sections["codecs"].item is android.CODEC
    assert desktop.ROOT.sections["stun"] is desktop.ACCOUNT.sections["stun"]
    item = desktop.ROOT.sections["open_url_on_event"].item
    assert item is not None and list(item.options) == [
        "type", "call_state", "call_dir", "presence", "method", "filter", "url"]
    service = desktop.CONTACT_SERVICE
    assert service.sections["attribute_mappings"].item is not None
    assert len(service.options["type"].choices) == 7
    assert service.options["authentication_flags"].choices[-1] == "sasl_digest_md5"


def test_desktop_account_differs_from_android_as_documented() -> None:
    mine, theirs = set(desktop.ACCOUNT.options), set(android.ACCOUNT.options)
    assert sorted(theirs - mine) == ["SIP_use_reg_event", "balance_url",
                                     "enable_push_notifications", "rate_url"]
    assert sorted(mine - theirs) == sorted(words(
        "ident save_username save_password do_not_play_ringback_tones "
        "voicemail_transfer_extension force_rfc3264 use_kpml use_overlap_dialing "
        "use_custom_ringtone custom_ringtone_location use_custom_certificate "
        "custom_certificate_location custom_certificate SIP_use_auth_username SIP_use_blf "
        "SIP_use_cisco SIP_cisco_device_name HTTP_PHONE_CONTROL_host HTTP_PHONE_CONTROL_path "
        "HTTP_PHONE_CONTROL_number HTTP_PHONE_CONTROL_outgoing_uri HTTP_PHONE_CONTROL_answer "
        "HTTP_PHONE_CONTROL_hangup resubscription_mode resubscription_time "
        "send_typing_notification"))
    assert desktop.ACCOUNT.options["protocol"].choices == ("sip", "iax2", "http_phone_control")
    assert desktop.ACCOUNT.options["mwi_subscribe_usage"].default == "both"
    assert desktop.ACCOUNT.options["strip_dial_chars"].default == " .-()[]{}"


def test_ios_account_differs_from_android_as_documented() -> None:
    mine, theirs = set(ios.ACCOUNT.options), set(android.ACCOUNT.options)
    assert sorted(theirs - mine) == sorted(words(
        "mwi_subscribe_usage rtcp_profile_type enabled_video_fmtp SIP_keep_alive_mode "
        "SIP_keep_alive_timeout SIP_use_reg_event IAX2_callerNumber"))
    assert sorted(mine - theirs) == ["SIP_use_auth_username", "do_not_play_ringback_tones",
                                     "use_overlap_dialing"]
    assert list(ios.CODEC.options) == ["codec_id", "priority", "enabled"]
    assert ios.ACCOUNT.options["number_rewriting_prefix"].default == ""


@pytest.mark.parametrize(("items", "item", "ids"), [
    ("hash_algorithms", "hash_algorithm", "0 1 2 3"),
    ("cipher_algorithms", "cipher_algorithm", "0 1 2 3 4 5"),
    ("auth_tags", "auth_tag", "0 1 2 3"),
    ("key_agreement_methods", "key_agreement_method", "0 1 2 3 4 5"),
    ("sas_encodings", "sas_encoding", "0 1"),
])
def test_zrtp_lists_as_described(items: str, item: str, ids: str) -> None:
    for dialect in (IOS, DESKTOP):
        spec = dialect.account.sections["zrtp"].sections[items].item
        assert spec is not None and spec.name == item
        assert list(spec.options) == ["name", "id", "priority", "selected"]
        assert spec.options["id"].choices == tuple(ids.split())
        assert spec.options["id"].kind is Kind.ENUMERATION


# --- required options per protocol ------------------------------------------------------------


REQUIRED_CASES = [
    (ANDROID, "sip", ("username", "password", "SIP_domain")),
    (ANDROID, "iax2", ("username", "password", "IAX2_host")),
    (IOS, "sip", ("username", "password", "SIP_domain")),
    (IOS, "iax2", ("username", "password", "IAX2_host")),
    (DESKTOP, "sip", ("username", "password", "SIP_domain")),
    (DESKTOP, "iax2", ("username", "password", "IAX2_host")),
    (DESKTOP, "http_phone_control", ("HTTP_PHONE_CONTROL_host",)),
]


@pytest.mark.parametrize(("dialect", "protocol", "names"), REQUIRED_CASES)
def test_required_options_per_protocol(dialect: Dialect, protocol: str,
                                       names: tuple[str, ...]) -> None:
    assert dialect.required[protocol] == names
    full = {name: "x" for name in names} | {"protocol": protocol}
    render_config({"accounts": [full]}, dialect)
    for name in names:
        for blank in (None, "", " "):
            account = {**full, name: blank} if blank is not None else {
                k: v for k, v in full.items() if k != name}
            with pytest.raises(SchemaError, match=f"protocol {protocol} needs") as info:
                render_config({"accounts": [account]}, dialect)
            assert info.value.path == f"accounts[0].{name}"


def test_every_protocol_of_every_dialect_has_its_rule() -> None:
    assert {(d.name, p) for d, p, _ in REQUIRED_CASES} == {
        (d.name, p) for d in DIALECTS.values() for p in d.account.options["protocol"].choices}

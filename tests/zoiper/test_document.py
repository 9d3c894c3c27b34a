from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from bridge.zoiper.document import (
    EXTRA,
    parse_config,
    parse_error,
    render_config,
    render_error,
    validate,
)
from bridge.zoiper.schema import ACCOUNT, CODEC, ROOT, STUN, Kind, SchemaError, xml_text_ok

DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'

# The child sequence of <account> in the vendor's Android 1.14.3 example, typed by hand.
EXAMPLE_ACCOUNT_ORDER = [
    "name", "username", "password", "register_on_startup", "voicemail_check_extension",
    "mwi_subscribe_usage", "use_number_rewriting", "number_rewriting_country",
    "number_rewriting_prefix", "use_strip_dial_chars", "strip_dial_chars", "balance_url",
    "rate_url", "enable_push_notifications", "protocol", "SIP_domain", "SIP_use_outbound_proxy",
    "SIP_outbound_proxy", "SIP_transport_type", "SIP_auth_username", "SIP_callerId",
    "SIP_use_rport", "SIP_use_rport_media", "SIP_srtp_mode", "SIP_dtmf_style",
    "SIP_publish_presence", "SIP_subscribe_presence", "SIP_keep_alive_mode",
    "SIP_keep_alive_timeout", "SIP_use_reg_event", "enabled_video_fmtp", "codecs", "stun",
    "zrtp", "reregistration_mode", "reregistration_time", "rtcp_profile_type",
]
EXAMPLE_CODEC_ORDER = ["codec_id", "priority", "enabled", "bps", "dtx", "vbr"]
EXAMPLE_STUN_ORDER = ["use_stun", "stun_host", "stun_port", "stun_refresh_period"]


def sip_account(**options: Any) -> dict[str, Any]:
    return {"username": "alice", "password": "pw", "SIP_domain": "pbx.example.com", **options}


def config(*accounts: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"accounts": list(accounts or [sip_account()]), **sections}


def example_account() -> dict[str, Any]:
    """Values like the vendor example's, inserted in reverse so the order must come from us."""
    values = {
        "name": "alice@10.2.1.99:6060", "username": "alice", "password": "4Az/iSii==\n",
        "register_on_startup": True, "voicemail_check_extension": "", "mwi_subscribe_usage":
        "both", "use_number_rewriting": False, "number_rewriting_country": "BG",
        "number_rewriting_prefix": "", "use_strip_dial_chars": True, "strip_dial_chars":
        " .-()[]{}", "balance_url": "", "rate_url": "", "enable_push_notifications": False,
        "protocol": "sip", "SIP_domain": "10.2.1.99:6060", "SIP_use_outbound_proxy": False,
        "SIP_outbound_proxy": "", "SIP_transport_type": "tcp", "SIP_auth_username": "",
        "SIP_callerId": "", "SIP_use_rport": True, "SIP_use_rport_media": False,
        "SIP_srtp_mode": "none", "SIP_dtmf_style": "outband", "SIP_publish_presence": True,
        "SIP_subscribe_presence": True, "SIP_keep_alive_mode": "default",
        "SIP_keep_alive_timeout": 30, "SIP_use_reg_event": False, "enabled_video_fmtp": True,
        "codecs": [
            {"vbr": False, "dtx": False, "bps": 0, "enabled": True, "priority": p, "codec_id": c}
            for p, c in ((1, 35), (2, 7), (3, 34), (1001, 31))
        ],
        "stun": {"stun_refresh_period": 30, "stun_port": 3478, "stun_host": "stun.zoiper.com",
                 "use_stun": "default"},
        "zrtp": {"enabled": False},
        "reregistration_mode": "default", "reregistration_time": 0, "rtcp_profile_type": "avpf",
    }
    return dict(reversed(values.items()))


def every_option_set(spec: Any) -> dict[str, Any]:
    """A section with every known option set to a non-default, valid, canonical string."""
    tree: dict[str, Any] = {}
    for name, option in spec.options.items():
        if option.kind is Kind.BOOLEAN:
            tree[name] = "true" if option.default == "false" else "false"
        elif option.kind is Kind.INTEGER:
            tree[name] = "7"
        elif option.kind in (Kind.ENUMERATION, Kind.TEXT_ENUMERATION):
            tree[name] = option.choices[-1]
        else:
            tree[name] = f"{name} <&> ]]> Zoë 日本 😀\r\n\t "
    return tree


def full_tree() -> dict[str, Any]:
    account = every_option_set(ACCOUNT)
    account["codecs"] = [every_option_set(CODEC), {"codec_id": "-1"}, {}]
    account["stun"] = every_option_set(STUN)
    account["zrtp"] = {"enabled": "true"}
    account[EXTRA] = {"future_option": "x & y"}
    account["codecs"][0][EXTRA] = {"codec.flag": ""}
    return {"accounts": [account, sip_account()], "diagnostics": {"enable_debug_log": "true"},
            EXTRA: {"top_level": "1"}}


def children(element: etree._Element) -> list[str]:
    return [child.tag for child in element]


# --- rendering --------------------------------------------------------------------------------


def test_minimal_document_is_exact() -> None:
    assert render_config(config()) == (
        DECLARATION + b"<options><accounts><account><username>alice</username>"
        b"<password>pw</password><SIP_domain>pbx.example.com</SIP_domain>"
        b"</account></accounts></options>"
    )


def test_vendor_example_order_is_kept() -> None:
    root = etree.fromstring(render_config(config(example_account(), diagnostics={
        "enable_debug_log": False})))
    assert children(root) == ["accounts", "diagnostics"]
    (account,) = root.find("accounts")
    assert children(account) == EXAMPLE_ACCOUNT_ORDER
    codecs = account.find("codecs")
    assert [children(c) for c in codecs] == [EXAMPLE_CODEC_ORDER] * 4
    assert [c.findtext("codec_id") for c in codecs] == ["35", "7", "34", "31"]  # list order kept
    assert children(account.find("stun")) == EXAMPLE_STUN_ORDER
    assert account.findtext("password") == "4Az/iSii==\n"


def test_iax_options_go_after_the_sip_ones_and_before_codecs() -> None:
    account = {"codecs": [], "IAX2_dtmf_style": "inband", "IAX2_host": "iax.example.com",
               "SIP_use_reg_event": True, "username": "u", "password": "p", "protocol": "iax2"}
    root = etree.fromstring(render_config(config(account)))
    assert children(root[0][0]) == ["username", "password", "protocol", "SIP_use_reg_event",
                                    "IAX2_host", "IAX2_dtmf_style", "codecs"]


def test_values_are_canonical_text() -> None:
    account = sip_account(register_on_startup=False, SIP_keep_alive_timeout="0045",
                          codecs=[{"codec_id": 6, "enabled": True, "priority": -3}],
                          stun={"stun_port": 5349})
    parsed = parse_config(render_config(config(account)))["accounts"][0]
    assert parsed["register_on_startup"] == "false"
    assert parsed["SIP_keep_alive_timeout"] == "45"
    assert parsed["codecs"] == [{"codec_id": "6", "enabled": "true", "priority": "-3"}]
    assert parsed["stun"] == {"stun_port": "5349"}


def test_absent_options_are_left_out_and_empty_ones_kept() -> None:
    doc = render_config(config(sip_account(name="", codecs=[])))
    assert b"<name/>" in doc and b"<codecs></codecs>" in doc
    assert b"stun" not in doc and b"register_on_startup" not in doc


def test_text_is_escaped_and_utf8() -> None:
    doc = render_config(config(sip_account(name="<b>Zoë</b> & co ]]>", password="a\r\nb")))
    assert "<name>&lt;b&gt;Zoë&lt;/b&gt; &amp; co ]]&gt;</name>".encode() in doc
    assert b"<password>a&#13;\nb</password>" in doc
    assert parse_config(doc)["accounts"][0]["password"] == "a\r\nb"


def test_full_tree_round_trips() -> None:
    tree = full_tree()
    before = copy.deepcopy(tree)
    doc = render_config(tree)
    assert tree == before  # input is not modified
    assert parse_config(doc, allow_extra=True) == tree
    assert render_config(parse_config(doc, allow_extra=True)) == doc


def test_several_accounts_keep_their_order() -> None:
    accounts = [sip_account(name=f"a{i}") for i in range(3)]
    parsed = parse_config(render_config(config(*accounts)))
    assert [a["name"] for a in parsed["accounts"]] == ["a0", "a1", "a2"]


@given(st.text())
def test_any_text_either_round_trips_or_is_refused(text: str) -> None:
    tree = config(sip_account(name=text, **{EXTRA: {"x-new": text}}))
    if xml_text_ok(text):
        parsed = parse_config(render_config(tree), allow_extra=True)["accounts"][0]
        assert parsed["name"] == text and parsed[EXTRA] == {"x-new": text}
    else:
        with pytest.raises(SchemaError):
            render_config(tree)


# --- validation -------------------------------------------------------------------------------


def test_display_name_with_nul_is_refused_not_rendered() -> None:
    with pytest.raises(SchemaError) as info:
        render_config(config(sip_account(name="Alice\x00")))
    assert info.value.path == "accounts[0].name"
    assert "U+0000" in str(info.value)


def test_password_error_does_not_leak_the_password() -> None:
    with pytest.raises(SchemaError) as info:
        render_config(config(sip_account(password="hunter2\x0b")))
    assert info.value.path == "accounts[0].password"
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        (config(sip_account(), sip_account(SIP_transport_type="UDP")),
         "accounts[1].SIP_transport_type"),
        (config(sip_account(codecs=[{}, {}, {"codec_id": 99}])), "accounts[0].codecs[2].codec_id"),
        (config(sip_account(stun={"stun_port": 0})), "accounts[0].stun.stun_port"),
        (config(sip_account(zrtp={"enabled": "1"})), "accounts[0].zrtp.enabled"),
        (config(diagnostics={"enable_debug_log": 1}), "diagnostics.enable_debug_log"),
        (config(sip_account(register_on_startup="yes")), "accounts[0].register_on_startup"),
        (config(sip_account(reregistration_time=1.5)), "accounts[0].reregistration_time"),
        (config(sip_account(name=None)), "accounts[0].name"),
    ],
)
def test_bad_values_are_reported_with_their_path(tree: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(tree)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: expected ")
    with pytest.raises(SchemaError):
        render_config(tree)


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        ([], ""),
        ({}, "accounts"),
        ({"accounts": []}, "accounts"),
        ({"accounts": None}, "accounts"),
        ({"accounts": {"username": "x"}}, "accounts"),
        ({"accounts": ("a",)}, "accounts"),
        ({"accounts": ["alice"]}, "accounts[0]"),
        (config(sip_account(codecs={"codec_id": 0})), "accounts[0].codecs"),
        (config(sip_account(codecs=[[]])), "accounts[0].codecs[0]"),
        (config(sip_account(stun=[{"use_stun": "custom"}])), "accounts[0].stun"),
        (config(diagnostics=None), "diagnostics"),
    ],
)
def test_wrong_structure_is_refused(tree: Any, path: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(tree)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        (config(sip_account(usernme="x")), "accounts[0].usernme"),
        (config(sip_account(stun={"host": "x"})), "accounts[0].stun.host"),
        (config(sip_account(codecs=[{"id": 0}])), "accounts[0].codecs[0].id"),
        (config(sip_account(account={})), "accounts[0].account"),
        ({**config(), "account": []}, "account"),
        (config(sip_account(**{"extra": {}})), "accounts[0].extra"),
        (config({**sip_account(), 1: "x"}), "accounts[0].1"),
    ],
)
def test_unknown_keys_are_refused_with_a_hint(tree: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(tree)
    assert info.value.path == path
    assert EXTRA in info.value.message


@pytest.mark.parametrize("missing", ["username", "password", "SIP_domain"])
@pytest.mark.parametrize("protocol", [None, "sip"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_sip_account_needs_its_credentials(missing: str, protocol: str | None,
                                           value: str | None) -> None:
    account = sip_account(IAX2_host="iax.example.com")
    if protocol:
        account["protocol"] = protocol
    if value is None:
        del account[missing]
    else:
        account[missing] = value
    with pytest.raises(SchemaError) as info:
        render_config(config(sip_account(), account))
    assert info.value.path == f"accounts[1].{missing}"
    assert "sip" in info.value.message


@pytest.mark.parametrize("missing", ["username", "password", "IAX2_host"])
def test_iax2_account_needs_its_credentials(missing: str) -> None:
    account = {"protocol": "iax2", "username": "u", "password": "p", "IAX2_host": "h"}
    validate(config(account))  # complete without SIP_domain
    del account[missing]
    with pytest.raises(SchemaError) as info:
        validate(config(account))
    assert info.value.path == f"accounts[0].{missing}"
    assert "iax2" in info.value.message


def test_required_fields_may_be_integers() -> None:
    validate(config({"username": 1001, "password": 1234, "SIP_domain": "pbx"}))


# --- @extra -----------------------------------------------------------------------------------


def test_extra_options_are_written_after_the_known_ones() -> None:
    account = sip_account(rtcp_profile_type="avpf", zrtp={"enabled": True, EXTRA: {"z": "1"}},
                          **{EXTRA: {"brand_new": "on", "another.one": ""}})
    tree = config(account, diagnostics={EXTRA: {"verbose_sip": "true"}})
    root = etree.fromstring(render_config(tree))
    account_el = root[0][0]
    assert children(account_el)[-3:] == ["rtcp_profile_type", "brand_new", "another.one"]
    assert account_el.findtext("brand_new") == "on"
    assert children(account_el.find("zrtp")) == ["enabled", "z"]
    assert children(root.find("diagnostics")) == ["verbose_sip"]
    assert parse_config(render_config(tree), allow_extra=True) == {
        "accounts": [{**sip_account(rtcp_profile_type="avpf"),
                      "zrtp": {"enabled": "true", EXTRA: {"z": "1"}},
                      EXTRA: {"brand_new": "on", "another.one": ""}}],
        "diagnostics": {EXTRA: {"verbose_sip": "true"}},
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"1abc": "x"}, {"-a": "x"}, {".a": "x"}, {"a b": "x"}, {"a:b": "x"}, {"": "x"},
        {"xml_thing": "x"}, {"XMLthing": "x"}, {"é": "x"}, {"a<b": "x"}, {3: "x"},
        {"name": "x"}, {"SIP_domain": "x"}, {"codecs": "x"}, {EXTRA: "x"},
        {"ok": 1}, {"ok": True}, {"ok": None}, {"ok": "a\x00"}, {"ok": "\ud800"},
    ],
)
def test_bad_extras_are_refused(extra: dict[Any, Any]) -> None:
    with pytest.raises(SchemaError) as info:
        render_config(config(sip_account(**{EXTRA: extra})))
    assert info.value.path.startswith(f"accounts[0].{EXTRA}")


def test_extra_must_be_a_table() -> None:
    with pytest.raises(SchemaError) as info:
        validate(config(sip_account(**{EXTRA: [("a", "b")]})))
    assert info.value.path == f"accounts[0].{EXTRA}"


# --- parsing ----------------------------------------------------------------------------------

HAND_WRITTEN = b"""<?xml version="1.0"?>
<options>
  <!-- comments are fine -->
  <accounts>
    <account>
      <name>bob</name>
      <username>bob</username>
      <password>s3cret
</password>
      <voicemail_check_extension/>
      <SIP_domain>10.0.0.1:5060</SIP_domain>
      <codecs>
        <codec>
          <codec_id>0</codec_id>
          <enabled>true</enabled>
        </codec>
      </codecs>
      <stun>
        <use_stun>disabled</use_stun>
      </stun>
    </account>
  </accounts>
  <diagnostics>
    <enable_debug_log>false</enable_debug_log>
  </diagnostics>
</options>
"""


def test_parse_hand_written_document() -> None:
    assert parse_config(HAND_WRITTEN) == {
        "accounts": [{
            "name": "bob", "username": "bob", "password": "s3cret\n",
            "voicemail_check_extension": "", "SIP_domain": "10.0.0.1:5060",
            "codecs": [{"codec_id": "0", "enabled": "true"}], "stun": {"use_stun": "disabled"},
        }],
        "diagnostics": {"enable_debug_log": "false"},
    }


def wrap(account_body: bytes) -> bytes:
    return (b"<options><accounts><account><username>u</username><password>p</password>"
            b"<SIP_domain>d</SIP_domain>" + account_body + b"</account></accounts></options>")


@pytest.mark.parametrize(
    "doc",
    [
        b"<config/>",
        b"<options/>",
        b"<options><accounts/></options>",
        wrap(b"<surprise>1</surprise>"),
        wrap(b"<name>a</name><name>b</name>"),
        wrap(b"<stun/><stun/>"),
        wrap(b'<name lang="en">a</name>'),
        wrap(b"<name><b>a</b></name>"),
        wrap(b"stray text"),
        wrap(b"<codecs><codec/><item/></codecs>"),
        wrap(b"<codecs>text<codec/></codecs>"),
        wrap(b"<codecs><codec><codec_id>5</codec_id></codec></codecs>"),
        wrap(b"<register_on_startup>1</register_on_startup>"),
        wrap(b"<future><nested>1</nested></future>"),
        b"<options><accounts><account><username>u</username></account></accounts></options>",
        b'<options xmlns="urn:x"><accounts/></options>',
    ],
)
def test_parse_refuses_what_the_schema_does_not_allow(doc: bytes) -> None:
    with pytest.raises(SchemaError):
        parse_config(doc, allow_extra="future" in doc.decode())


def test_parse_unknown_element_only_with_allow_extra() -> None:
    doc = wrap(b"<brand_new>1</brand_new>")
    with pytest.raises(SchemaError, match="brand_new"):
        parse_config(doc)
    assert parse_config(doc, allow_extra=True)["accounts"][0][EXTRA] == {"brand_new": "1"}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE options [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
  <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
  <!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">
]>
<options><accounts><account><name>&i;</name><username>u</username><password>p</password>
<SIP_domain>d</SIP_domain></account></accounts></options>"""

SMALL_LAUGHS = BILLION_LAUGHS.replace(b"<name>&i;</name>", b"<name>&c;</name>")

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE options [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>
<options><accounts><account><name>&xxe;</name><username>u</username><password>p</password>
<SIP_domain>d</SIP_domain></account></accounts></options>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE options SYSTEM "http://127.0.0.1:9/evil.dtd">
<options><accounts><account><username>u</username><password>p</password>
<SIP_domain>d</SIP_domain></account></accounts></options>"""


@pytest.mark.parametrize(
    "doc",
    [BILLION_LAUGHS, SMALL_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD,
     wrap(b"<name>&undefined;</name>"), b"<options>", b"", b"\x00<options/>", b"not xml"],
    ids=["billion-laughs", "small-laughs", "external-entity", "external-dtd",
         "undefined-entity", "unclosed", "empty", "nul", "garbage"],
)
def test_parse_refuses_doctype_entities_and_malformed_input(doc: bytes) -> None:
    with pytest.raises(ValueError) as info:
        parse_config(doc)
    assert "aaaaaaaaaa" not in str(info.value)  # nothing was expanded into the message


def test_parse_rejects_doctype_in_error_documents_too() -> None:
    with pytest.raises(ValueError, match="document type"):
        parse_error(b'<!DOCTYPE error [<!ENTITY x "y">]><error code="1">&x;</error>')


# --- error documents --------------------------------------------------------------------------


def test_render_error_is_exact_and_escaped() -> None:
    assert render_error("<a & b>") == (
        DECLARATION + b'<error code="1">&lt;a &amp; b&gt;</error>'
    )


def test_render_error_drops_what_xml_cannot_carry() -> None:
    doc = render_error("bad\x00 \x0bthing\ud800\ufffe here")
    assert doc == DECLARATION + b'<error code="1">bad thing here</error>'
    assert parse_error(doc) == "bad thing here"


def test_render_error_round_trips_ordinary_text() -> None:
    message = "Anmeldung fehlgeschlagen: Zoë 日本 😀 \"quoted\" 'single' ]]>\n"
    assert parse_error(render_error(message)) == message
    assert parse_error(render_error("")) == ""


@given(st.text())
def test_render_error_never_fails(message: str) -> None:
    doc = render_error(message)
    assert doc.startswith(DECLARATION)
    assert parse_error(doc) == "".join(c for c in message if xml_text_ok(c))


@pytest.mark.parametrize(
    "doc",
    [render_config(config()), b"<error>no code</error>", b"<Error code='1'>x</Error>", b"oops",
     b""],
)
def test_parse_error_refuses_other_documents(doc: bytes) -> None:
    with pytest.raises(ValueError):
        parse_error(doc)


def test_parse_error_accepts_the_vendor_shape() -> None:
    assert parse_error(b'<?xml version="1.0"?>\n<error code="1">Try later.</error>') == "Try later."


def test_root_spec_matches_the_document_root() -> None:
    assert etree.fromstring(render_config(config())).tag == ROOT.name



PROBES = [True, False, 0, 1, -1, 7, 65536, "0", "1", "-1", "7", "007", "true", "false", "True",
          "", " ", "udp", "UDP", "sdes", "custom", "both", "iax2", 1.0, None]
REQUIRED_FOR_SIP = {"username", "password", "SIP_domain"}


@pytest.mark.parametrize("section", ["account", "stun", "codec"])
def test_rendering_agrees_with_option_check(section: str) -> None:
    """The renderer's shortcuts must accept exactly what Option.check accepts."""
    spec = {"account": ACCOUNT, "stun": STUN, "codec": CODEC}[section]
    for name, option in spec.options.items():
        for value in PROBES:
            try:
                expected: str | None = option.check(value)  # type: ignore[arg-type]
            except SchemaError:
                expected = None
            account = sip_account(IAX2_host="iax.example.com")
            if section == "account":
                account[name] = value
            elif section == "stun":
                account["stun"] = {name: value}
            else:
                account["codecs"] = [{name: value}]
            if expected is None or (name in REQUIRED_FOR_SIP and not expected.strip()):
                with pytest.raises(SchemaError):
                    render_config(config(account))
                continue
            parsed = parse_config(render_config(config(account)))["accounts"][0]
            got = {"account": parsed, "stun": parsed.get("stun"),
                   "codec": parsed.get("codecs", [None])[0]}[section]
            assert got == {**got, name: expected}, (name, value)

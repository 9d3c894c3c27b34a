"""Zoiper for Android 1.14.3: its configuration data, as data.

Source: the vendor's "Zoiper for Android Configuration Data Documentation"
(1.14.3). Its closing example agrees with the option descriptions.

    options                     ROOT
    ├── accounts                ACCOUNTS (a list of ACCOUNT)
    │   └── account             ACCOUNT
    │       ├── codecs          CODECS (a list of CODEC)
    │       │   └── codec       CODEC
    │       ├── stun            STUN
    │       └── zrtp            ZRTP
    └── diagnostics             DIAGNOSTICS
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bridge.zoiper.schema import (
    CODEC_IDS,
    Kind,
    Option,
    _bool,
    _int,
    _list,
    _section,
    _str,
    _words,
)

__all__ = [
    "ACCOUNT",
    "ACCOUNTS",
    "CODEC",
    "CODECS",
    "DIAGNOSTICS",
    "REQUIRED",
    "ROOT",
    "STUN",
    "ZRTP",
]

CODEC = _section(
    "codec",
    Option("codec_id", Kind.ENUMERATION, "0", tuple(CODEC_IDS),
           doc="Which codec this entry configures (see CODEC_IDS)."),
    _int("priority", 0, "Lower numbers are offered first."),
    _bool("enabled", False, "Offer this codec at all."),
    _int("bps", 0, "Codec bitrate in bit/s (the vendor default is 0).", minimum=0),
    _bool("dtx", False, "Discontinuous transmission (send less during silence)."),
    _bool("vbr", False, "Variable bitrate."),
)
CODECS = _list("codecs", CODEC)

STUN = _section(
    "stun",
    _words("use_stun", "disabled default custom", "default",
           "No STUN, the phone-wide STUN server, or the server configured here."),
    _str("stun_host", "STUN server host name, used with use_stun=custom.", "stun.zoiper.com"),
    _int("stun_port", 3478, "STUN server port.", minimum=1, maximum=65535),
    _int("stun_refresh_period", 30, "Seconds between STUN refreshes.", minimum=0),
)

ZRTP = _section(
    "zrtp",
    _bool("enabled", False, "Negotiate ZRTP media encryption (SIP accounts only)."),
)

ACCOUNT = _section(
    "account",
    # Generic options, in the order of the vendor's example document.
    _str("name", "Label shown in the phone's account list."),
    _str("username", "User name for the account's protocol (required)."),
    _str("password", "Password for the account's protocol (required).", secret=True),
    _bool("register_on_startup", True, "Register as soon as the app starts."),
    _str("voicemail_check_extension", "Number dialled to listen to voicemail."),
    _words("mwi_subscribe_usage", "disabled before after both", "disabled",
           "When to subscribe to message-waiting notifications, relative to registering."),
    _bool("use_number_rewriting", False,
          "Add a country code and international prefix to numbers that lack one."),
    _str("number_rewriting_country", "Country code assumed for numbers without one."),
    _str("number_rewriting_prefix", "International call prefix put before the country code.",
         "+"),
    _bool("use_strip_dial_chars", True, "Remove separator characters from dialled numbers."),
    _str("strip_dial_chars", "Characters removed from dialled numbers.", ".-() []{}"),
    _str("balance_url", "Web page showing the account balance."),
    _str("rate_url", "Web page showing the price of a call."),
    _bool("enable_push_notifications", False, "Wake the app by push for calls (SIP only)."),
    _words("protocol", "sip iax2", "sip", "The account's protocol, i.e. its type."),
    # SIP accounts.
    _str("SIP_domain", "Registrar host or address, optionally host:port (required for SIP)."),
    _bool("SIP_use_outbound_proxy", False, "Send everything through SIP_outbound_proxy."),
    _str("SIP_outbound_proxy", "Outbound proxy host or address, optionally host:port."),
    _words("SIP_transport_type", "udp tcp tls", "udp", "Transport for SIP signalling."),
    _str("SIP_auth_username", "Separate user name for digest authentication; usually empty."),
    _str("SIP_callerId", "Display name shown to the called party."),
    _bool("SIP_use_rport", True, "Ask the server to reply to the observed address (RFC 3581)."),
    _bool("SIP_use_rport_media", False,
          "Also use the rport-discovered public address for media; a NAT last resort."),
    _words("SIP_srtp_mode", "none sdes", "none", "Media encryption; SDES needs TLS transport."),
    _words("SIP_dtmf_style", "inband outband rfc_2833 SIP_info_numeric SIP_info_ascii disabled",
           "rfc_2833", "How key presses are sent (outband and rfc_2833 are the same)."),
    _bool("SIP_publish_presence", False,
          "Publish our presence status (the app enables it when presence is on)."),
    _bool("SIP_subscribe_presence", False,
          "Watch contacts' presence (the app enables it when presence is on)."),
    _words("SIP_keep_alive_mode", "disabled default custom", "default",
           "Keep-alive: off, the transport's default interval, or SIP_keep_alive_timeout."),
    _int("SIP_keep_alive_timeout", 30, "Seconds between keep-alives in custom mode.",
         minimum=0),
    _bool("SIP_use_reg_event", False, "Subscribe to the registration event package."),
    _bool("enabled_video_fmtp", True, "Send video format parameters (fmtp) in SDP."),
    # IAX2 accounts: described by the vendor but absent from its example.
    _str("IAX2_host", "IAX server host or address, optionally host:port (required for IAX2)."),
    _str("IAX2_context", "Dial-plan context on the IAX server."),
    _str("IAX2_callerId", "Caller ID name for IAX calls."),
    _str("IAX2_callerNumber", "Caller ID number for IAX calls."),
    _words("IAX2_dtmf_style", "outband inband disabled", "outband",
           "How key presses are sent on IAX calls."),
    # Subsections, then the registration and RTCP options, as in the example.
    CODECS,
    STUN,
    ZRTP,
    _words("reregistration_mode", "default custom", "default",
           "Registration refresh: the transport's default, or reregistration_time."),
    # The vendor gives 60 for UDP and 600 for TCP; UDP is the default transport.
    _int("reregistration_time", 60, "Seconds between re-registrations in custom mode.",
         minimum=0),
    _words("rtcp_profile_type", "avp avpf both", "avp",
           "RTCP feedback: off (AVP), AVPF only, or both profiles offered."),
)
ACCOUNTS = _list("accounts", ACCOUNT)

DIAGNOSTICS = _section(
    "diagnostics",
    _bool("enable_debug_log", False, "Write a debug log file on the phone."),
)

ROOT = _section("options", ACCOUNTS, DIAGNOSTICS)


# Per protocol, what an account cannot register without (blank counts as missing).
REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "sip": ("username", "password", "SIP_domain"),
    "iax2": ("username", "password", "IAX2_host"),
})

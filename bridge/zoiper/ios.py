"""Zoiper for iOS 1.14.3: its configuration data, as data.

Source: the vendor's "Zoiper for iOS configuration data documentation"
(1.14.3). Where its closing example disagrees with the option descriptions,
the descriptions are encoded (see /work/shared/spec/zoiper/NOTES.md): the ZRTP
lists hold `cipher_algorithm`, `auth_tag`, `key_agreement_method` and
`sas_encoding` items, not `hash_algorithm` ones.

    options                         ROOT
    ├── accounts                    ACCOUNTS (a list of ACCOUNT)
    │   └── account                 ACCOUNT
    │       ├── codecs              CODECS (a list of CODEC)
    │       ├── stun                STUN (as on Android)
    │       └── zrtp                ZRTP
    │           ├── hash_algorithms         (a list of hash_algorithm)
    │           ├── cipher_algorithms       (a list of cipher_algorithm)
    │           ├── auth_tags               (a list of auth_tag)
    │           ├── key_agreement_methods   (a list of key_agreement_method)
    │           └── sas_encodings           (a list of sas_encoding)
    └── diagnostics                 DIAGNOSTICS

Compared with Android, an iOS account has no MWI, keep-alive, registration
event, RTCP profile, video fmtp or IAX caller number options, its codecs have
no bitrate/DTX/VBR, and it adds ringback, overlap dialling, the explicit
auth-username switch and the ZRTP algorithm lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bridge.zoiper.android import DIAGNOSTICS, STUN
from bridge.zoiper.schema import (
    CODEC_IDS,
    Kind,
    Option,
    SectionSpec,
    _bool,
    _enum,
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
    "zrtp_list",
]


def zrtp_list(items: str, item: str, ids: str, what: str) -> SectionSpec:
    """One of the ZRTP negotiation lists; every item has name, id, priority, selected."""
    return _list(items, _section(
        item,
        _str("name", f"Label of this {what} as the phone shows it."),
        _enum("id", ids, "0", f"Which {what} this entry configures."),
        _int("priority", 0, "Lower numbers are preferred."),
        _bool("selected", False, f"Offer this {what} at all."),
    ))


ZRTP = _section(
    "zrtp",
    _bool("enabled", False, "Negotiate ZRTP media encryption (SIP accounts only)."),
    # ids: 0 S256, 1 S384, 2 N256, 3 N384 (the last two not supported yet)
    zrtp_list("hash_algorithms", "hash_algorithm", "0 1 2 3", "hash algorithm"),
    # ids: 0 AES1, 1 AES2, 2 AES3, 3 2FS1, 4 2FS2, 5 2FS3
    zrtp_list("cipher_algorithms", "cipher_algorithm", "0 1 2 3 4 5", "cipher"),
    # ids: 0 HS32, 1 HS80, 2 SK32, 3 SK64 (the last two not supported yet)
    zrtp_list("auth_tags", "auth_tag", "0 1 2 3", "authentication tag"),
    # ids: 0 DH3K, 1 DH2K, 2 EC25, 3 EC38, 4 PRSH, 5 MULT (the last two not supported yet)
    zrtp_list("key_agreement_methods", "key_agreement_method", "0 1 2 3 4 5",
              "key agreement method"),
    # ids: 0 B32, 1 B256
    zrtp_list("sas_encodings", "sas_encoding", "0 1", "SAS encoding"),
)

CODEC = _section(
    "codec",
    Option("codec_id", Kind.ENUMERATION, "0", tuple(CODEC_IDS),
           doc="Which codec this entry configures (see CODEC_IDS)."),
    _int("priority", 0, "Lower numbers are offered first."),
    _bool("enabled", False, "Offer this codec at all."),
)
CODECS = _list("codecs", CODEC)

ACCOUNT = _section(
    "account",
    # Generic options, in the order of the vendor's example document.
    _str("name", "Label shown in the phone's account list."),
    _str("username", "User name for the account's protocol (required)."),
    _str("password", "Password for the account's protocol (required).", secret=True),
    _bool("register_on_startup", True, "Register as soon as the app starts."),
    _bool("do_not_play_ringback_tones", False, "true: stay silent while the far end rings."),
    _str("voicemail_check_extension", "Number dialled to listen to voicemail."),
    _bool("use_overlap_dialing", False, "Send the dialled number in several steps."),
    _bool("use_number_rewriting", False,
          "Add a country code and international prefix to numbers that lack one."),
    # The vendor's default is the country of the phone's location: nothing fixed to state.
    _str("number_rewriting_country", "Country code assumed for numbers without one."),
    _str("number_rewriting_prefix", "International call prefix put before the country code."),
    _bool("use_strip_dial_chars", True, "Remove separator characters from dialled numbers."),
    _str("strip_dial_chars", "Characters removed from dialled numbers.", " .-()[]{}"),
    # Described but absent from the example; placed where the Android example has them.
    _str("rate_url", "Web page showing the price of a call."),
    _str("balance_url", "Web page showing the account balance."),
    _bool("enable_push_notifications", False, "Wake the app by push for calls (SIP only)."),
    _words("protocol", "sip iax2", "sip", "The account's protocol, i.e. its type."),
    # SIP accounts.
    _str("SIP_domain", "Registrar host or address, optionally host:port (required for SIP)."),
    _bool("SIP_use_outbound_proxy", False, "Send everything through SIP_outbound_proxy."),
    _str("SIP_outbound_proxy", "Outbound proxy host or address, optionally host:port."),
    _words("SIP_transport_type", "udp tcp tls", "udp", "Transport for SIP signalling."),
    _bool("SIP_use_auth_username", False, "Authenticate with SIP_auth_username."),
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
    # IAX2 accounts: described by the vendor but absent from its example.
    _str("IAX2_host", "IAX server host or address, optionally host:port (required for IAX2)."),
    _str("IAX2_context", "Dial-plan context on the IAX server."),
    _str("IAX2_callerId", "Caller ID name for IAX calls."),
    _words("IAX2_dtmf_style", "outband inband disabled", "outband",
           "How key presses are sent on IAX calls."),
    # Subsections, then the registration options, as in the example.
    CODECS,
    STUN,
    ZRTP,
    _words("reregistration_mode", "default custom", "default",
           "Registration refresh: the transport's default, or reregistration_time."),
    # The vendor gives 60 for UDP and 600 for TCP; UDP is the default transport.
    _int("reregistration_time", 60, "Seconds between re-registrations in custom mode.",
         minimum=0),
)
ACCOUNTS = _list("accounts", ACCOUNT)

ROOT = _section("options", ACCOUNTS, DIAGNOSTICS)

# The same protocols and credentials as on Android.
REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "sip": ("username", "password", "SIP_domain"),
    "iax2": ("username", "password", "IAX2_host"),
})

"""Zoiper5 Desktop (Windows, macOS, Linux) 1.16.2: its configuration data, as data.

Source: the vendor's "Zoiper5 configuration data documentation" (1.16.2).
Every section and option it describes is here; where its closing example
disagrees with the descriptions, the descriptions are encoded (see
/work/shared/spec/zoiper/NOTES.md):

- the ZRTP lists hold `cipher_algorithm`, `auth_tag`, `key_agreement_method`
  and `sas_encoding` items (the example calls them all `hash_algorithm`);
- audio devices are `selected_*_device` sections with `use_default` and
  `name` (the example has flat `input_device`, `output_device`, ... strings);
- `history` is a main section (the document's list of them forgets it).

Left out on purpose:

- in the example only, described nowhere: `account/SIP_callerNumber` (the
  document calls it deprecated and omits it), `gui/skin`, `gui/background`,
  and the flat `audio/input_device`, `output_device`, `ringing_device`,
  `speaker_input_device`, `speaker_device` strings;
- `gui/custom_properties`: described, but as a free-form tree whose elements
  carry `type="..."` attributes and whose content the UI defines; this schema
  has no attributes and the vendor gives no options to check.

    options
    ├── general, audio (5 selected_*_device sections), hid
    ├── codecs                  (a list of codec: the codecs for calls matching no account)
    ├── accounts                (a list of account: codecs, stun, zrtp with 5 lists)
    ├── sip_options, iax_options, rtp_options
    ├── stun                    (the phone-wide STUN server)
    ├── diagnostics, network, chat, provision, popup, video, skin
    ├── forwarding_and_auto_answer
    ├── open_url_on_event       (a list of open_url_on_event_item)
    ├── gui, profile
    ├── contact_services        (a list of contact_service: attribute_mappings list)
    ├── google_analytics, crash_handler
    ├── proxy                   (custom_proxy)
    └── history
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bridge.zoiper.android import CODEC, STUN
from bridge.zoiper.ios import ZRTP
from bridge.zoiper.schema import (
    SectionSpec,
    _bool,
    _int,
    _list,
    _port,
    _section,
    _str,
    _words,
)

__all__ = [
    "ACCOUNT",
    "ACCOUNTS",
    "AUDIO",
    "CODEC",
    "CODECS",
    "CONTACT_SERVICE",
    "DIAGNOSTICS",
    "GENERAL",
    "REQUIRED",
    "ROOT",
    "STUN",
    "ZRTP",
]

# The Desktop codec entry has the same options as Android's (bitrate, DTX, VBR included).
CODECS = _list("codecs", CODEC)

GENERAL = _section(
    "general",
    _str("account", "ident of the account used when none is chosen."),
    _int("auto_away", 180, "Idle seconds before presence turns to Away.", minimum=0),
    _bool("minimize_to_tray", False, "Minimize leaves only the tray icon."),
    _bool("minimize_on_close", True, "Close minimizes instead (vendor: false on macOS)."),
    _bool("record_calls", False, "Record every call without pressing Record."),
    # Vendor default: the application data directory, which differs per machine.
    _str("record_path", "Directory for call recordings."),
    _str("record_filename", "File name pattern for recordings ({YYYY}, {MM}, ... fields).",
         "recorded_conversation_{YYYY}-{MM}-{DD}-{HH}_{NN}_{SS}_part{recording_part}"),
    _words("record_format", "wav mp3", "wav", "Recording file format (mp3 not in every build)."),
    _words("record_mode", "mixed local remote stereo", "mixed",
           "Which sides are recorded, and how (only mixed in every build)."),
    _str("record_path_bookmark", "macOS Finder bookmark for the recording directory."),
    _bool("always_on_top", False, "Keep the window above others."),
    _bool("reject_anonymous_calls", False, "Refuse calls without a caller number."),
    _bool("auto_reject_calls", False,
          "Refuse calls automatically; the reject_call_on_* options narrow it down."),
    _bool("reject_call_on_invisible", False, "Auto-reject while presence is Invisible."),
    _bool("reject_call_on_away", False, "Auto-reject while presence is Away."),
    _bool("reject_call_on_busy", False, "Auto-reject while presence is Busy."),
    _bool("reject_call_on_phone", False, "Auto-reject while presence is On the phone."),
    _bool("reject_call_on_lunch", False, "Auto-reject while presence is Out to lunch."),
    _bool("reject_call_on_brb", False, "Auto-reject while presence is Be right back."),
    _bool("new_call_auto_popup", False, "Focus the window on an incoming call."),
    _bool("new_call_blink", True, "Blink the window on an incoming call."),
    _bool("command_line_call_auto_popup", False,
          "Focus the window for a call started from the command line."),
    _bool("command_line_call_blink", False,
          "Blink the window for a call started from the command line."),
    _bool("check_for_updates", True, "Look for application updates regularly."),
    _bool("catch_protocol_requests", True,
          "Handle callto:, tel: and zoiper: links (Windows, macOS; kept locally)."),
    _bool("integrate_into_outlook", True, "Let the Outlook plugin talk to the phone (Windows)."),
    _bool("integrate_into_addressbook", True, "Use the macOS address book for contacts."),
    _bool("add_to_firewall", True, "Be listed as allowed in the Windows Firewall."),
    _bool("start_with_os", True, "Start when the operating system starts."),
    _bool("start_minimized", False, "Start with the window minimized."),
    _bool("use_custom_browser", False, "Open links with custom_browser."),
    _str("custom_browser", "Browser used to open links when use_custom_browser is on."),
    _words("on_transfer_request_style", "accept reject", "reject",
           "Answer to every call transfer request."),
    _bool("open_url_from_network", False, "Allow opening links received in IAX headers."),
    _bool("automatic_open_url_from_network", False,
          "Open such links without asking (needs open_url_from_network)."),
)


def _device(name: str, what: str) -> SectionSpec:
    return _section(
        name,
        _bool("use_default", True, f"Use the system's default {what}, not `name`."),
        _str("name", f"The {what} used when use_default is false."),
    )


AUDIO = _section(
    "audio",
    _device("selected_input_device", "input device"),
    _device("selected_output_device", "output device"),
    _device("selected_ringing_device", "ringing device"),
    _device("selected_speaker_input_device", "speakerphone input device"),
    _device("selected_speaker_output_device", "speakerphone output device"),
    _bool("use_mic_boost", False, "Boost the microphone level."),
    _bool("use_echo_cancellation", True, "Cancel echo in captured audio."),
    _str("ring_tone_file", "Audio file for the ringtone; empty: the built-in one."),
    _bool("pc_speaker_ring", False, "Also ring through the PC speaker."),
    _bool("mute_on_early_media", False, "Mute early media on outgoing calls."),
    _bool("ring_when_talking", True, "Ring for a new call during a call."),
    _bool("disable_dtmf_sounds", False, "true: silent key presses while dialling."),
    # A slider in the UI; the vendor gives no bounds beyond its middle, 50.
    _int("input_volume", 50, "Input device volume level.", minimum=0),
    _int("output_volume", 50, "Output device volume level.", minimum=0),
    _bool("use_alternate_timer", False, "Use an alternate timer for audio devices."),
    _bool("use_auto_mic_selection", False, "Pick the microphone automatically."),
    _bool("use_agc", True, "Automatic gain control on the input."),
    _bool("use_noise_suppression", True, "Suppress noise in the audio."),
    _bool("disable_ringing_sound", False, "true: never play a ringtone."),
)

HID = _section(
    "hid",
    _bool("use_generic_hid", False, "Support generic telephony headsets and handsets."),
    _bool("use_jabra_hid", True, "Support Jabra telephony devices."),
    _bool("use_plantronics_hid", True, "Support Plantronics telephony devices (32-bit only)."),
    _bool("use_sennheiser_hid", True, "Support Sennheiser telephony devices."),
)

ACCOUNT = _section(
    "account",
    # Generic options, in the order of the vendor's example document.
    _str("ident", "The account's unique, fixed id (the phone assigns one if absent)."),
    _str("name", "Label shown in the phone's account list."),
    _bool("save_username", True, "Keep the user name in the stored configuration."),
    _str("username", "User name for the account's protocol (required for SIP and IAX2)."),
    _bool("save_password", True, "Keep the password in the stored configuration."),
    _str("password", "Password for the account's protocol (required for SIP and IAX2).",
         secret=True),
    _bool("register_on_startup", True, "Register as soon as the app starts."),
    _bool("do_not_play_ringback_tones", False, "true: stay silent while the far end rings."),
    _str("voicemail_check_extension", "Number dialled to listen to voicemail."),
    _str("voicemail_transfer_extension", "Number dialled to send a caller to voicemail."),
    _bool("force_rfc3264", False, "Hold calls the RFC 3264 way (Cisco CUCM)."),
    _bool("use_kpml", False, "Send key presses as KPML (Cisco CUCM)."),
    _bool("use_overlap_dialing", False, "Send the dialled number in several steps."),
    _bool("use_custom_ringtone", False, "Ring with custom_ringtone_location for this account."),
    # The vendor ties this to use_custom_certificate, evidently meaning use_custom_ringtone.
    _str("custom_ringtone_location", "Audio file ringing for this account's calls."),
    # The value descriptions of configuration and self_signed are swapped in the document;
    # custom_certificate's own description settles it: configuration = stored here.
    _words("use_custom_certificate", "none common location configuration self_signed", "none",
           "TLS certificate: none, the common one, a file, custom_certificate, or self-signed."),
    _str("custom_certificate_location", "Certificate file, with use_custom_certificate=location."),
    # Treated as a secret: a certificate held in the configuration may carry its private key.
    _str("custom_certificate", "The certificate itself, with use_custom_certificate=configuration.",
         secret=True),
    _words("mwi_subscribe_usage", "disabled before after both", "both",
           "When to subscribe to message-waiting notifications, relative to registering."),
    _bool("use_number_rewriting", False,
          "Add a country code and international prefix to numbers that lack one."),
    # The vendor's default is the country of the computer's location: nothing fixed to state.
    _str("number_rewriting_country", "Country code assumed for numbers without one."),
    _str("number_rewriting_prefix", "International call prefix put before the country code."),
    _bool("use_strip_dial_chars", True, "Remove separator characters from dialled numbers."),
    _str("strip_dial_chars", "Characters removed from dialled numbers.", " .-()[]{}"),
    _words("protocol", "sip iax2 http_phone_control", "sip",
           "The account's protocol (http_phone_control: not in every build)."),
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
    _bool("SIP_use_blf", False, "Busy lamp field: show busy extensions as busy contacts."),
    _bool("SIP_publish_presence", False,
          "Publish our presence status (the app enables it when presence is on)."),
    _bool("SIP_subscribe_presence", False,
          "Watch contacts' presence (the app enables it when presence is on)."),
    _words("SIP_keep_alive_mode", "disabled default custom", "default",
           "Keep-alive: off, the transport's default interval, or SIP_keep_alive_timeout."),
    _int("SIP_keep_alive_timeout", 30, "Seconds between keep-alives in custom mode.",
         minimum=0),
    _bool("SIP_use_cisco", False, "Cisco-style server-side call forwarding (CUCM)."),
    _str("SIP_cisco_device_name", "Cisco device name for that forwarding."),
    _bool("enabled_video_fmtp", True, "Send video format parameters (fmtp) in SDP."),
    # IAX2 and HTTP Phone Control accounts: described but absent from the example.
    _str("IAX2_host", "IAX server host or address, optionally host:port (required for IAX2)."),
    _str("IAX2_context", "Dial-plan context on the IAX server."),
    _str("IAX2_callerId", "Caller ID name for IAX calls."),
    _str("IAX2_callerNumber", "Caller ID number for IAX calls."),
    _words("IAX2_dtmf_style", "outband inband disabled", "outband",
           "How key presses are sent on IAX calls."),
    _str("HTTP_PHONE_CONTROL_host",
         "Desk phone's host or address, optionally host:port (required for this protocol)."),
    _str("HTTP_PHONE_CONTROL_path", "Path of the desk phone's control page."),
    _str("HTTP_PHONE_CONTROL_number", "Request parameter carrying the number to dial.",
         "number="),
    _str("HTTP_PHONE_CONTROL_outgoing_uri", "Request parameter carrying the outgoing URI.",
         "outgoing_uri="),
    _str("HTTP_PHONE_CONTROL_answer", "Request parameter that answers a call.", "key=F4"),
    _str("HTTP_PHONE_CONTROL_hangup", "Request parameter that hangs up.", "key=F4"),
    # Subsections, then the registration options, as in the example.
    CODECS,
    STUN,
    ZRTP,
    _words("reregistration_mode", "default custom", "default",
           "Registration refresh: the transport's default, or reregistration_time."),
    # The vendor gives 60 for UDP and 600 for TCP; UDP is the default transport.
    _int("reregistration_time", 60, "Seconds between re-registrations in custom mode.",
         minimum=0),
    _words("resubscription_mode", "default custom", "default",
           "Subscription refresh: the transport's default, or resubscription_time."),
    _int("resubscription_time", 60, "Seconds between re-subscriptions in custom mode.",
         minimum=0),
    _bool("send_typing_notification", True, "Tell chat peers while we type."),
    _words("rtcp_profile_type", "avp avpf both", "avp",
           "RTCP feedback: off (AVP), AVPF only, or both profiles offered."),
)
ACCOUNTS = _list("accounts", ACCOUNT)

SIP_OPTIONS = _section(
    "sip_options",
    _port("port", 5060, "Local SIP port."),
    _bool("use_random_port", True, "Use a random local SIP port above 32000."),
    _str("tls_certificate_file", "Certificate file for TLS connections."),
    _bool("override_domain_name", False, "Check the TLS certificate against `domain` instead."),
    _str("domain", "Name the TLS certificate is checked against, with override_domain_name."),
    _bool("use_domain_certificate", False, "Trust domain_certificate_file for that name."),
    _str("domain_certificate_file", "Certificate file for the overriding domain name."),
    _bool("use_only_strong_cipher", False, "Allow only strong TLS ciphers."),
    _words("protocol_suite", "sslv23-insecure tlsv1 tlsv1_1 tlsv1_2 tlsv1_3", "tlsv1_2",
           "TLS version (sslv23-insecure is legacy only)."),
)

IAX_OPTIONS = _section(
    "iax_options",
    _port("port", 4569, "Local IAX port."),
)

RTP_OPTIONS = _section(
    "rtp_options",
    _port("port", 8000, "Local RTP port."),
    _bool("use_random_port", False, "Use a random local RTP port above 32000."),
    _str("session_name", "Session name sent to media peers.", "Z"),
    _str("user_name", "User name sent to media peers.", "Z"),
    _str("url", "URL sent to media peers.", "http://www.zoiper.com"),
    _str("email", "E-mail address sent to media peers.", "sales@zoiper.com"),
)

DIAGNOSTICS = _section(
    "diagnostics",
    _bool("enable_debug_log", False, "Write a debug log file."),
    _bool("enable_extra_dmp", False, "Add an extended dump to the debug log."),
    _bool("enable_audio_debug", False, "Log audio debugging messages."),
    _bool("enable_verbose_event_logging", False,
          "Log the event scheduler too (makes logs much larger)."),
)

_DSCP = ("none CS0 CS1 CS2 CS3 CS4 CS5 CS6 CS7 AF11 AF12 AF13 AF21 AF22 AF23 "
         "AF31 AF32 AF33 AF41 AF42 AF43 EF")

NETWORK = _section(
    "network",
    _words("signal_dscp", _DSCP, "none", "DSCP class for signalling packets."),
    _words("media_dscp", _DSCP, "none", "DSCP class for media packets."),
)

CHAT = _section(
    "chat",
    _bool("play_sound", True, "Play a sound for a new chat message."),
    _bool("hide_offline", False, "Hide the message box for contacts going offline."),
    _bool("new_message_auto_popup", False, "Focus the window on a new chat message."),
    _bool("new_message_blink", True, "Blink the window on a new chat message."),
    _str("new_message_sound_file", "Sound file for a new chat message.", "NewMessage.wav"),
)

PROVISION = _section(
    "provision",
    _bool("remember_username_password", False, "Store the provisioning credentials."),
    _str("username", "User name for the provisioning server."),
    _str("password", "Password for the provisioning server.", secret=True),
    _bool("login_automatically", False, "Log in to the provisioning server automatically."),
    _bool("provisioned", False, "Already provisioned (set by the phone)."),
)

POPUP = _section(
    "popup",
    _bool("check_for_focus", True, "Notify only while the window is not focused."),
    _bool("peer_status", True, "Notify when a contact comes online."),
    _bool("im", True, "Notify on a chat message."),
    _bool("call", True, "Notify on an incoming call."),
    _bool("voice_mail", True, "Notify on a new voicemail."),
    _bool("audio_device", True, "Notify when an audio device comes or goes."),
    _bool("network", True, "Notify on a network change."),
    _bool("use_native_popups", True, "Use the platform's own notifications."),
    _int("auto_close_time", 15, "Seconds a notification stays up.", minimum=0),
)

VIDEO = _section(
    "video",
    _str("camera_device", "Camera to capture from (the phone fills in one it finds)."),
    _int("capture_width", 640, "Capture width in pixels.", minimum=0),
    _int("capture_height", 480, "Capture height in pixels.", minimum=0),
    _words("capture_fps", "5fps 15fps 30fps", "5fps", "Capture frame rate."),
    _int("bit_rate", 256000, "Video bit rate in bit/s.", minimum=0),
    _bool("always_accept_video", False, "Accept offered video without asking."),
)

SKIN = _section(
    "skin",
    _str("selected", "Name of the UI theme.", "default"),
)

FORWARDING_AND_AUTO_ANSWER = _section(
    "forwarding_and_auto_answer",
    _words("mode", "none answer_delay answer_instant forward_delay forward_instant",
           "answer_instant", "Forward or answer incoming calls, at once or after a delay."),
    # 1 to 600: the range the vendor's UI states for both delays.
    _int("forward_seconds", 30, "Delay before forwarding, in forward_delay mode.",
         minimum=1, maximum=600),
    _str("forward_extension", "Number calls are forwarded to."),
    _int("autoanswer_seconds", 30, "Delay before answering, in answer_delay mode.",
         minimum=1, maximum=600),
    _bool("play_sound_on_auto_answer", True, "Play a sound when a call is auto-answered."),
    _bool("auto_answer_keep_setting", False, "Keep auto-answer changes across restarts."),
    _bool("enabled", False, "Handle incoming calls by `mode` at all."),
    _bool("auto_answer_with_video", False, "Auto-answer with video."),
    _bool("accept_server_auto_answer", False, "Obey auto-answer requests from the server."),
)

OPEN_URL_ON_EVENT_ITEM = _section(
    "open_url_on_event_item",
    _words("type", "never call presence", "never",
           "Event kind this rule reacts to; never disables the rule."),
    _words("call_state", "ringing answer rejected hangup", "ringing",
           "Call state that triggers the rule (type=call)."),
    _words("call_dir", "both in out", "both", "Call direction that triggers the rule."),
    # The vendor lists the values but states neither the type nor a default.
    _words("presence", "offline invisible online away busy phone lunch be_back", "",
           "Presence state that triggers the rule (type=presence)."),
    _words("method", "url program rest_api", "url",
           "Open `url`, run it as a command, or call it as a REST endpoint."),
    _str("filter", "Filter applied to the URL."),
    _str("url", "URL, command or REST endpoint acted on."),
)
OPEN_URL_ON_EVENT = _list("open_url_on_event", OPEN_URL_ON_EVENT_ITEM)

GUI = _section(
    "gui",
    _bool("switch_contact_on_transfer", False, "Change the call's contact on transfer."),
    _bool("enable_chat_support", True, "Offer chat at all."),
    _bool("collapse_on_hangup", False, "Collapse the window after a call ends."),
    _str("language", "UI language name, in English.", "english"),
    _bool("auto_focus_window_on_incoming_chat", True, "Focus the window on a chat message."),
    _bool("auto_focus_window_on_incoming_call", True, "Focus the window on a call."),
    _bool("show_upgrade_wizard", True, "Show the upgrade-to-Premium wizard at start."),
)

_PRESENCE = "invisible online away busy phone lunch be_back"

PROFILE = _section(
    "profile",
    _words("last_online_manual_state", _PRESENCE, "online",
           "Presence state restored on going back online."),
)

_PROPERTIES = (
    "last_name first_name middle_name display_name company position profession "
    "home_fax work_fax home_mail work_mail home_cell work_cell home_phone work_phone "
    "home_pager work_pager home_custom work_custom home_ipphone work_ipphone home_zip "
    "work_zip home_city work_city home_state work_state home_street work_street "
    "home_country work_country"
)

ATTRIBUTE_MAPPING = _section(
    "attribute_mapping",
    # No default: the service starts with a set of mappings rather than one default.
    _words("property_type", _PROPERTIES, "", "Contact property the LDAP attribute fills."),
    _str("attribute_name", "LDAP attribute mapped."),
    _bool("enabled", True, "Use this mapping."),
)

# One element name for every service type, so the options of all types are merged;
# `username`, `password` and `limit` mean the same for the types that have them.
CONTACT_SERVICE = _section(
    "contact_service",
    _str("ident", "The service's unique, fixed id (ContactServiceLocal for the local one)."),
    _str("name", "Label of the service."),
    _words("type", "local ldap outlook mac google windows xml", "",
           "Where the contacts come from; fixed once created (no default)."),
    _bool("enabled", True, "Use this service (always on for local)."),
    _words("account_mapping_type", "none default custom", "default",
           "Account for dialling: none, the default one, or account_ident."),
    _str("account_ident", "ident of the dialling account, with custom mapping."),
    _words("presence_account_mapping_type", "none custom", "none",
           "Account for presence: none, or presence_account_ident."),
    _str("presence_account_ident", "ident of the presence account, with custom mapping."),
    _bool("hide_contacts_without_name", True, "Hide nameless contacts (local: default false)."),
    _bool("hide_contacts_without_phone", True,
          "Hide contacts without a number (local: default false)."),
    _int("restart_time", 30, "Seconds before retrying a failed service.", minimum=0),
    # ldap and google
    _int("limit", 0, "Most contacts one query returns (ldap, google).", minimum=0),
    # ldap
    _str("host", "LDAP server host or address, optionally host:port."),
    _str("username", "User name for the service (ldap, xml over HTTP)."),
    _str("password", "Password for the service (ldap, outlook, xml over HTTP).", secret=True),
    _str("root", "LDAP base (domain components)."),
    _list("attribute_mappings", ATTRIBUTE_MAPPING),
    _words("authentication_flags", "simple sasl_plain sasl_login sasl_digest_md5", "simple",
           "LDAP bind: simple, or SASL PLAIN / LOGIN / DIGEST-MD5."),
    _bool("use_start_tls", False, "Use StartTLS with the LDAP server."),
    _bool("ignore_certificate_tls", False, "Accept any LDAP server certificate."),
    # outlook
    _str("profile", "Outlook profile name."),
    # google
    _str("access_token", "Google access token.", secret=True),
    _str("refresh_token", "Google refresh token.", secret=True),
    # xml
    _str("uri", "URL or path of the XML contact list."),
    _words("auth_type", "none basic url", "none",
           "HTTP authentication for the XML list: none, Basic, or in the URL."),
)
CONTACT_SERVICES = _list("contact_services", CONTACT_SERVICE)

GOOGLE_ANALYTICS = _section(
    "google_analytics",
    _str("ident", "Analytics id (the phone assigns it)."),
    _bool("enabled", False, "Send usage data (the app enables it with the feature)."),
    _int("queue_message_count", 10, "Messages kept queued.", minimum=0),
)

CRASH_HANDLER = _section(
    "crash_handler",
    _bool("enabled", True, "Write crash dumps."),
    _bool("upload_dumps", True, "Send crash dumps to the vendor."),
)

CUSTOM_PROXY = _section(
    "custom_proxy",
    _str("hostname", "Proxy host or address."),
    # 0, the default, is "not set"; otherwise a port.
    _int("port", 0, "Proxy port.", minimum=0, maximum=65535),
    _str("username", "User name for this proxy."),
    _str("password", "Password for this proxy.", secret=True),
)

# The document indents username/password under `mode`; an option holds no options,
# so they are the proxy section's own (credentials for the system proxy).
PROXY = _section(
    "proxy",
    _words("mode", "disabled manual system", "disabled",
           "No proxy, custom_proxy, or the operating system's proxy."),
    _str("username", "User name for the system proxy."),
    _str("password", "Password for the system proxy.", secret=True),
    CUSTOM_PROXY,
)

HISTORY = _section(
    "history",
    _words("limit_mode", "default custom", "default", "History size: the default, or `limit`."),
    _int("limit", 2000, "Most history entries kept.", minimum=0),
    _words("allowed_overflow_percent_mode", "default custom", "default",
           "Overflow before pruning: 20 %, or allowed_overflow_percent."),
    _int("allowed_overflow_percent", 20, "Percent above `limit` before pruning.", minimum=0),
)

ROOT = _section(
    "options",
    GENERAL,
    AUDIO,
    HID,
    CODECS,
    ACCOUNTS,
    SIP_OPTIONS,
    IAX_OPTIONS,
    RTP_OPTIONS,
    STUN,
    DIAGNOSTICS,
    NETWORK,
    CHAT,
    PROVISION,
    POPUP,
    VIDEO,
    SKIN,
    FORWARDING_AND_AUTO_ANSWER,
    OPEN_URL_ON_EVENT,
    GUI,
    PROFILE,
    CONTACT_SERVICES,
    GOOGLE_ANALYTICS,
    CRASH_HANDLER,
    PROXY,
    HISTORY,
)

# Per protocol, what an account cannot work without (blank counts as missing).
# HTTP Phone Control drives a desk phone over HTTP: the document names no credentials
# for it, only the host (and a path, which may be empty).
REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "sip": ("username", "password", "SIP_domain"),
    "iax2": ("username", "password", "IAX2_host"),
    "http_phone_control": ("HTTP_PHONE_CONTROL_host",),
})

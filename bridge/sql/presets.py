"""PBX schemas as one line of configuration: `preset = "freepbx"` fills the queries.

Each preset is written against the system's published schema (the tables its
installer or migrations create; tests/sql/schemas/ holds the subset the tests
load). The phone logs in with its SIP credentials; the authenticator checks
them against the PBX, and the account source returns the same SIP account with
the columns renamed to one vocabulary, so one [mapping] serves every preset:

    column        Zoiper option (a typical mapping)
    sip_user      username
    sip_password  password
    auth_user     SIP_auth_username
    domain        SIP_domain
    display_name  name, SIP_callerId

    preset             sip_user / sip_password / domain / display_name / auth_user
    asterisk-pjsip     ps_auths.username / ps_auths.password / ps_endpoints.from_domain /
                       ps_endpoints.callerid / ps_auths.username; also endpoint, transport,
                       dtmf_mode, media_encryption (ps_endpoints), max_contacts (ps_aors)
    asterisk-sippeers  sippeers.name / .secret / .fromdomain / .callerid /
                       COALESCE(defaultuser, name); also transport, dtmf_mode
    freepbx            users.extension / sip.data of the 'secret' row / (none: a literal) /
                       users.name / users.extension; also outbound_caller_id (users.outboundcid),
                       device_description (devices.description)
    fusionpbx          v_extensions.extension / .password / v_domains.domain_name /
                       v_extensions.effective_caller_id_name / extension; also
                       caller_id_number, outbound_caller_id
    kamailio           subscriber.username / .password (NULL when empty) / .domain / (none) /
                       username

A NULL column is a missing field, so `{ value = "{account.domain}", default =
"pbx.example.com" }` covers PBXs that leave it empty. Where only a digest hash
is stored (Asterisk `md5_cred`/`md5secret`, Kamailio `ha1`), `sip_password` is
NULL: map `password = "{login.password}"`, the password the phone just proved.

Login names: Asterisk and FreePBX use the auth username / extension as sent;
FusionPBX logs in as `extension@domain` (domains are its tenants: the domain
part picks the v_domains row); Kamailio uses `username` (a name in two domains
is ambiguous and refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

PresetName = Literal["asterisk-pjsip", "asterisk-sippeers", "freepbx", "fusionpbx", "kamailio"]


@dataclass(frozen=True)
class Preset:
    name: str
    auth_query: str
    source_query: str
    # The stored password's column per scheme; the first is the default scheme.
    password_columns: MappingProxyType[str, str]
    realm_column: str | None = None  # for "ha1": the digest realm
    hidden: frozenset[str] = field(default_factory=frozenset)  # never identity attributes


def _columns(**kwargs: str) -> MappingProxyType[str, str]:
    return MappingProxyType(kwargs)


PRESETS: dict[str, Preset] = {
    "asterisk-pjsip": Preset(
        "asterisk-pjsip",
        auth_query="""
SELECT a.username AS username, a.password AS password, a.md5_cred AS md5_cred,
       COALESCE(a.realm, 'asterisk') AS realm, e.callerid AS display_name
FROM ps_auths a JOIN ps_endpoints e ON e.auth = a.id
WHERE a.username = {login.username}""",
        source_query="""
SELECT a.username AS sip_user, a.password AS sip_password, a.username AS auth_user,
       e.from_domain AS domain, e.callerid AS display_name, e.id AS endpoint,
       e.transport AS transport, e.dtmf_mode AS dtmf_mode,
       e.media_encryption AS media_encryption, o.max_contacts AS max_contacts
FROM ps_endpoints e JOIN ps_auths a ON a.id = e.auth LEFT JOIN ps_aors o ON o.id = e.aors
WHERE a.username = {identity.username}""",
        password_columns=_columns(plaintext="password", ha1="md5_cred"),
        realm_column="realm", hidden=frozenset({"password", "md5_cred"})),
    "asterisk-sippeers": Preset(
        "asterisk-sippeers",
        auth_query="""
SELECT name AS username, secret AS password, md5secret AS md5secret,
       'asterisk' AS realm, callerid AS display_name
FROM sippeers WHERE name = {login.username}""",
        source_query="""
SELECT name AS sip_user, secret AS sip_password,
       COALESCE(defaultuser, name) AS auth_user, fromdomain AS domain,
       callerid AS display_name, transport AS transport, dtmfmode AS dtmf_mode
FROM sippeers WHERE name = {identity.username}""",
        password_columns=_columns(plaintext="password", ha1="md5secret"),
        realm_column="realm", hidden=frozenset({"password", "md5secret"})),
    "freepbx": Preset(
        "freepbx",
        auth_query="""
SELECT u.extension AS username, s.data AS password, u.name AS display_name
FROM users u JOIN sip s ON s.id = u.extension AND s.keyword = 'secret'
WHERE u.extension = {login.username}""",
        source_query="""
SELECT u.extension AS sip_user, s.data AS sip_password, u.extension AS auth_user,
       u.name AS display_name, u.outboundcid AS outbound_caller_id,
       d.description AS device_description
FROM users u JOIN sip s ON s.id = u.extension AND s.keyword = 'secret'
LEFT JOIN devices d ON d.user = u.extension
WHERE u.extension = {identity.username}""",
        password_columns=_columns(plaintext="password"), hidden=frozenset({"password"})),
    "fusionpbx": Preset(
        "fusionpbx",
        auth_query="""
SELECT e.extension || '@' || d.domain_name AS username, e.password AS password,
       e.effective_caller_id_name AS display_name, d.domain_name AS domain
FROM v_extensions e JOIN v_domains d ON d.domain_uuid = e.domain_uuid
WHERE e.extension = split_part({login.username}, '@', 1)
  AND d.domain_name = split_part({login.username}, '@', 2)
  AND e.enabled = 'true' AND d.domain_enabled = 'true'""",
        source_query="""
SELECT e.extension AS sip_user, e.password AS sip_password, e.extension AS auth_user,
       d.domain_name AS domain, e.effective_caller_id_name AS display_name,
       e.effective_caller_id_number AS caller_id_number,
       e.outbound_caller_id_number AS outbound_caller_id
FROM v_extensions e JOIN v_domains d ON d.domain_uuid = e.domain_uuid
WHERE e.extension = split_part({identity.username}, '@', 1)
  AND d.domain_name = split_part({identity.username}, '@', 2)
  AND e.enabled = 'true'""",
        password_columns=_columns(plaintext="password"), hidden=frozenset({"password"})),
    "kamailio": Preset(
        "kamailio",
        auth_query="""
SELECT username AS username, password AS password, ha1 AS ha1, domain AS realm,
       domain AS domain
FROM subscriber WHERE username = {login.username}""",
        source_query="""
SELECT username AS sip_user, NULLIF(password, '') AS sip_password, username AS auth_user,
       domain AS domain
FROM subscriber WHERE username = {identity.username}""",
        password_columns=_columns(plaintext="password", ha1="ha1"),
        realm_column="realm", hidden=frozenset({"password", "ha1"})),
}

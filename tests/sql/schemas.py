# ruff: noqa: S608  (test data written as SQL literals by q(); the gateway itself only binds)
"""Each preset's tables, as the system's published schema declares them, with sample rows.

The column names and types are those of the upstream schema files (the subset a
preset reads, plus neighbours, so a query that strays would notice):
  Asterisk realtime   contrib/ast-db-manage (alembic) as rendered in
                      contrib/realtime/{postgresql,mysql}/*_config.sql: ps_endpoints,
                      ps_auths, ps_aors, sippeers
  FreePBX             framework installlib/SQL: sip (id, keyword, data, flags), users,
                      devices (MariaDB only, as FreePBX)
  FusionPBX           app_config.php of app/domains and app/extensions: v_domains,
                      v_extensions (PostgreSQL, as FusionPBX; uuid keys)
  Kamailio            utils/kamctl/{postgres,mysql}/auth_db-create.sql: subscriber
The sample users' names carry quotes, backslashes, % and _, and non-ASCII text.
"""

from __future__ import annotations

import uuid

from bridge import hashes

# (login, SIP password, display name)
USERS = [
    ("alice", "alice-Secret-1", "Alice Liddell"),
    ("o'brien", "pw'with\"quotes", "Conan O'Brien"),
    ("back\\slash", "pw\\back\\", "Back Slash"),
    ("100%_x", "pct%_pw", "Percent Underscore"),
    ("jürgen", "pässwörd-ß", "Jürgen Groß"),
]
# A user whose name a LIKE pattern or a case-folding comparison would confuse with alice.
SIMILAR = ("1000", "thousand-pw", "Thousand")
REALM = "asterisk"
DOMAIN = "pbx.example.com"
OTHER_DOMAIN = "other.example.net"


def q(kind: str, text: str) -> str:
    """An SQL string literal for the load script (test data only; the gateway binds)."""
    text = text.replace("'", "''")
    if kind == "mysql":
        text = text.replace("\\", "\\\\")
    return f"'{text}'"


def _asterisk(kind: str) -> list[str]:
    yesno = "ENUM('yes','no')" if kind == "mysql" else "VARCHAR(3)"
    auth_type = "ENUM('md5','userpass')" if kind == "mysql" else "VARCHAR(8)"
    out = [f"""
CREATE TABLE ps_endpoints (
    id VARCHAR(40) NOT NULL, transport VARCHAR(40), aors VARCHAR(200), auth VARCHAR(40),
    context VARCHAR(40), disallow VARCHAR(200), allow VARCHAR(200), direct_media {yesno},
    dtmf_mode VARCHAR(10), callerid VARCHAR(40), from_domain VARCHAR(40),
    from_user VARCHAR(40), media_encryption VARCHAR(4), UNIQUE (id));
CREATE TABLE ps_auths (
    id VARCHAR(40) NOT NULL, auth_type {auth_type}, nonce_lifetime INTEGER,
    md5_cred VARCHAR(40), password VARCHAR(80), realm VARCHAR(40), username VARCHAR(40),
    UNIQUE (id));
CREATE TABLE ps_aors (
    id VARCHAR(40) NOT NULL, contact VARCHAR(40), default_expiration INTEGER,
    mailboxes VARCHAR(80), max_contacts INTEGER, minimum_expiration INTEGER,
    remove_existing {yesno}, qualify_frequency INTEGER, authenticate_qualify {yesno},
    UNIQUE (id));
CREATE TABLE sippeers (
    id INTEGER NOT NULL, name VARCHAR(40) NOT NULL, host VARCHAR(40), type VARCHAR(6),
    context VARCHAR(40), secret VARCHAR(40), md5secret VARCHAR(40), transport VARCHAR(7),
    dtmfmode VARCHAR(9), callerid VARCHAR(40), defaultuser VARCHAR(40),
    fromdomain VARCHAR(40), fromuser VARCHAR(40), PRIMARY KEY (id), UNIQUE (name));"""]
    for i, (login, password, name) in enumerate([*USERS, SIMILAR]):
        ident = f"ep{i}"
        # Every other user stores only the digest (auth_type md5), as Asterisk allows.
        digest = i % 2 == 1
        out.append(
            f"INSERT INTO ps_endpoints (id, transport, aors, auth, context, callerid, "
            f"from_domain, dtmf_mode, media_encryption) VALUES ({q(kind, ident)}, "
            f"'transport-tls', {q(kind, ident)}, {q(kind, ident)}, 'from-internal', "
            f"{q(kind, name)}, {q(kind, DOMAIN) if i % 3 else 'NULL'}, 'rfc4733', 'sdes');")
        out.append(
            f"INSERT INTO ps_auths (id, auth_type, username, password, md5_cred, realm) VALUES "
            f"({q(kind, ident)}, {q(kind, 'md5' if digest else 'userpass')}, {q(kind, login)}, "
            f"{'NULL' if digest else q(kind, password)}, "
            f"{q(kind, hashes.ha1(login, REALM, password))}, {q(kind, REALM)});")
        out.append(f"INSERT INTO ps_aors (id, max_contacts, remove_existing) VALUES "
                   f"({q(kind, ident)}, {i + 1}, 'yes');")
        out.append(
            f"INSERT INTO sippeers (id, name, host, type, context, secret, md5secret, "
            f"transport, dtmfmode, callerid, defaultuser, fromdomain) VALUES ({i + 1}, "
            f"{q(kind, login)}, 'dynamic', 'friend', 'from-internal', {q(kind, password)}, "
            f"{q(kind, hashes.ha1(login, REALM, password))}, 'tls', 'rfc2833', "
            f"{q(kind, name)}, NULL, {q(kind, DOMAIN)});")
    return out


def _kamailio(kind: str) -> list[str]:
    serial = "SERIAL" if kind == "postgresql" else "INT AUTO_INCREMENT"
    out = [f"""
CREATE TABLE subscriber (
    id {serial} PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain));
CREATE INDEX subscriber_username_idx ON subscriber (username);"""]
    for i, (login, password, _name) in enumerate([*USERS, SIMILAR]):
        # Odd users keep only ha1 (password ''), as kamailio's calculate_ha1 setups do.
        stored = "" if i % 2 else password
        out.append(
            f"INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES "
            f"({q(kind, login)}, {q(kind, DOMAIN)}, {q(kind, stored)}, "
            f"{q(kind, hashes.ha1(login, DOMAIN, password))}, "
            f"{q(kind, hashes.ha1(login + '@' + DOMAIN, DOMAIN, password))});")
    # The same name in two domains: ambiguous for a login without a domain.
    out.append(f"INSERT INTO subscriber (username, domain, password) VALUES "
               f"('twin', {q(kind, DOMAIN)}, 'twin-pw'), ('twin', {q(kind, OTHER_DOMAIN)}, "
               f"'twin-pw');")
    return out


def _freepbx() -> list[str]:
    out = ["""
CREATE TABLE `sip` (
  `id` varchar(20) NOT NULL default '-1',
  `keyword` varchar(30) NOT NULL default '',
  `data` varchar(255) NOT NULL default '',
  `flags` int(1) NOT NULL default '0',
  PRIMARY KEY (`id`,`keyword`));
CREATE TABLE `users` (
  `extension` varchar(20) NOT NULL default '',
  `password` varchar(20) default NULL,
  `name` varchar(50) default NULL,
  `voicemail` varchar(50) default NULL,
  `ringtimer` int(3) default NULL,
  `noanswer` varchar(100) default NULL,
  `recording` varchar(50) default NULL,
  `outboundcid` varchar(50) default NULL,
  `sipname` varchar(50) default NULL);
CREATE TABLE `devices` (
  `id` varchar(20) NOT NULL default '',
  `tech` varchar(10) NOT NULL default '',
  `dial` varchar(50) NOT NULL default '',
  `devicetype` varchar(5) NOT NULL default '',
  `user` varchar(50) default NULL,
  `description` varchar(50) default NULL,
  `emergency_cid` varchar(100) default NULL);"""]
    for login, password, name in [*USERS, SIMILAR]:
        ext = q("mysql", login)
        cid = q("mysql", '"' + name + '" <100>')
        out.append(f"INSERT INTO users (extension, password, name, voicemail, outboundcid) "
                   f"VALUES ({ext}, '', {q('mysql', name)}, 'novm', {cid});")
        out.append(f"INSERT INTO sip (id, keyword, data, flags) VALUES ({ext}, 'secret', "
                   f"{q('mysql', password)}, 2), ({ext}, 'context', 'from-internal', 3), "
                   f"({ext}, 'transport', '0.0.0.0-tls', 4);")
        out.append(f"INSERT INTO devices (id, tech, dial, devicetype, user, description) "
                   f"VALUES ({ext}, 'pjsip', CONCAT('PJSIP/', {ext}), 'fixed', {ext}, "
                   f"{q('mysql', name)});")
    return out


def _fusionpbx() -> list[str]:
    out = ["""
CREATE TABLE v_domains (
    domain_uuid uuid PRIMARY KEY, domain_parent_uuid uuid, domain_name text,
    domain_enabled boolean, domain_description text);
CREATE TABLE v_extensions (
    extension_uuid uuid PRIMARY KEY, domain_uuid uuid, extension text, number_alias text,
    password text, accountcode text, effective_caller_id_name text,
    effective_caller_id_number text, outbound_caller_id_name text,
    outbound_caller_id_number text, user_context text, enabled text, description text);"""]
    domains = {DOMAIN: uuid.uuid4(), OTHER_DOMAIN: uuid.uuid4()}
    for name, key in domains.items():
        out.append(f"INSERT INTO v_domains (domain_uuid, domain_name, domain_enabled) VALUES "
                   f"('{key}', {q('postgresql', name)}, true);")
    for i, (login, password, name) in enumerate([*USERS, SIMILAR]):
        out.append(
            f"INSERT INTO v_extensions (extension_uuid, domain_uuid, extension, password, "
            f"effective_caller_id_name, effective_caller_id_number, user_context, enabled) "
            f"VALUES ('{uuid.uuid4()}', '{domains[DOMAIN]}', {q('postgresql', login)}, "
            f"{q('postgresql', password)}, {q('postgresql', name)}, '{100 + i}', "
            f"{q('postgresql', DOMAIN)}, 'true');")
    # The same extension in the other tenant, another password; and a disabled one.
    out.append(f"INSERT INTO v_extensions (extension_uuid, domain_uuid, extension, password, "
               f"effective_caller_id_name, enabled) VALUES ('{uuid.uuid4()}', "
               f"'{domains[OTHER_DOMAIN]}', 'alice', 'other-tenant-pw', 'Alice Other', 'true'),"
               f" ('{uuid.uuid4()}', '{domains[DOMAIN]}', 'disabled', 'disabled-pw', 'Off', "
               f"'false');")
    return out


def load_script(kind: str) -> str:
    statements = _asterisk(kind) + _kamailio(kind)
    if kind == "mysql":
        statements += _freepbx()
    else:
        statements += _fusionpbx()
    return "\n".join(statements) + "\n"

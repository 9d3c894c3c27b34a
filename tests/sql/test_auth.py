# ruff: noqa: S324, S608  (legacy schemes; test rows written as literals by q())
"""[auth] type = "sql" on PostgreSQL and MariaDB: every stored scheme, decoys, config rules."""

from __future__ import annotations

import hashlib
import logging
import os

import argon2
import bcrypt
import pytest
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt

from bridge import hashes
from bridge.models import Credentials
from tests.sql.helpers import auth, problems
from tests.sql.schemas import q
from tests.sql.servers import Scratch

QUERY = ("SELECT login AS username, pw, salt, realm, full_name, active FROM legacy_users "
         "WHERE login = {login.username}")


def pw(login: str) -> str:
    return f"{login}-Pässwörd'\\%_"


def _hex(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


# login -> (scheme, stored value made by the reference implementation, salt)
ROWS = {
    "plaintext_user": ("plaintext", pw("plaintext_user"), None),
    "md5_user": ("md5", _hex("md5", pw("md5_user")), None),
    "sha1_user": ("sha1", _hex("sha1", pw("sha1_user")).upper(), None),
    "sha256_user": ("sha256", _hex("sha256", pw("sha256_user")), None),
    "sha512_user": ("sha512", _hex("sha512", pw("sha512_user")), None),
    "bcrypt_user": ("bcrypt", bcrypt.hashpw(pw("bcrypt_user").encode(),
                                            bcrypt.gensalt(4, b"2a")).decode(), None),
    "bcrypt2y_user": ("bcrypt", "$2y$" + bcrypt.hashpw(pw("bcrypt2y_user").encode(),
                                                       bcrypt.gensalt(4)).decode()[4:], None),
    "sha512_crypt_user": ("sha512_crypt", sha512_crypt.using(rounds=1000).hash(
        pw("sha512_crypt_user")), None),
    "sha256_crypt_user": ("sha256_crypt", sha256_crypt.using(rounds=1000).hash(
        pw("sha256_crypt_user")), None),
    "md5_crypt_user": ("md5_crypt", md5_crypt.hash(pw("md5_crypt_user")), None),
    "mysql41_user": ("mysql41", "*" + hashlib.sha1(hashlib.sha1(
        pw("mysql41_user").encode()).digest()).hexdigest().upper(), None),
    "argon2_user": ("argon2", argon2.PasswordHasher(time_cost=1, memory_cost=1024,
                                                    parallelism=1).hash(pw("argon2_user")), None),
    "ha1_user": ("ha1", _hex("md5", f"ha1_user:sip.example.com:{pw('ha1_user')}"), None),
    "salted_before": ("sha256", _hex("sha256", "NaCl'" + pw("salted_before")), "NaCl'"),
    "salted_after": ("md5", _hex("md5", pw("salted_after") + "NaCl'"), "NaCl'"),
}
_made: set[str] = set()


@pytest.fixture
def legacy(db: Scratch) -> Scratch:
    """A legacy billing table in the scratch database, made once per server."""
    if db.name not in _made:
        rows = ["CREATE TABLE legacy_users (login VARCHAR(64), pw VARCHAR(255), salt "
                "VARCHAR(64), realm VARCHAR(64), full_name VARCHAR(64), active SMALLINT);"]
        for login, (_, stored, salt) in ROWS.items():
            rows.append(f"INSERT INTO legacy_users VALUES ({q(db.kind, login)}, "
                        f"{q(db.kind, stored)}, {q(db.kind, salt) if salt else 'NULL'}, "
                        f"'sip.example.com', {q(db.kind, login.title())}, 1);")
        rows.append("INSERT INTO legacy_users VALUES ('dup', 'x', NULL, NULL, 'A', 1), "
                    "('dup', 'x', NULL, NULL, 'B', 1);")
        # Made by the servers themselves: pgcrypto's crypt() and MariaDB's PASSWORD().
        if db.kind == "postgresql":
            rows.insert(0, "CREATE EXTENSION IF NOT EXISTS pgcrypto;")
            rows.append("INSERT INTO legacy_users (login, pw, full_name) VALUES "
                        f"('pgcrypto_bf', crypt({q(db.kind, pw('pgcrypto_bf'))}, "
                        f"gen_salt('bf', 4)), 'Bf'), ('pgcrypto_md5', "
                        f"crypt({q(db.kind, pw('pgcrypto_md5'))}, gen_salt('md5')), 'Md5');")
        else:
            rows.append(f"INSERT INTO legacy_users (login, pw, full_name) VALUES "
                        f"('mariadb_password', PASSWORD({q(db.kind, pw('mariadb_password'))}), "
                        f"'Pw');")
        db.run("\n".join(rows))
        _made.add(db.name)
    return db


def table(db: Scratch, **extra: object) -> dict[str, object]:
    return {"url": db.url, "query": QUERY, "password_column": "pw", **extra}


async def check(backend, login: str, password: str, fmt: str = "plaintext"):
    return await backend.authenticate(Credentials(login, password, password_format=fmt))


@pytest.mark.parametrize("login", sorted(set(ROWS) - {"salted_before", "salted_after"}))
async def test_each_scheme_named_in_the_configuration(legacy, login):
    scheme = ROWS[login][0]
    backend = auth(table(legacy, password_scheme=scheme, realm_column="realm"))
    try:
        identity = await check(backend, login, pw(login))
        assert identity is not None
        assert identity.username == login
        assert identity.attributes["full_name"] == login.title()
        assert "pw" not in identity.attributes  # the stored password is never an attribute
        assert await check(backend, login, pw(login) + "x") is None
        assert await check(backend, login, pw(login).upper()) is None
    finally:
        await backend.close()


async def test_auto_recognises_every_shaped_scheme_in_one_table(legacy):
    backend = auth(table(legacy))  # password_scheme = "auto"
    extra = ["pgcrypto_bf", "pgcrypto_md5"] if legacy.kind == "postgresql" \
        else ["mariadb_password"]
    shaped = [login for login, (scheme, _, salt) in ROWS.items()
              if scheme not in ("plaintext", "ha1") and salt is None] + extra
    try:
        for login in shaped:
            assert await check(backend, login, pw(login)) is not None, login
            assert await check(backend, login, "wrong") is None, login
    finally:
        await backend.close()


@pytest.mark.parametrize(("login", "position"), [("salted_before", "before"),
                                                 ("salted_after", "after")])
async def test_salt_from_a_column_before_or_after(legacy, login, position):
    scheme = ROWS[login][0]
    right = auth(table(legacy, password_scheme=scheme, salt_column="salt",
                       salt_position=position))
    wrong_side = auth(table(legacy, password_scheme=scheme, salt_column="salt",
                            salt_position="after" if position == "before" else "before"))
    try:
        identity = await check(right, login, pw(login))
        assert identity is not None and "salt" not in identity.attributes
        assert await check(right, login, "wrong") is None
        assert await check(wrong_side, login, pw(login)) is None
    finally:
        await right.close()
        await wrong_side.close()


async def test_unknown_ambiguous_and_unrecognised_users_are_wrong_passwords(legacy, caplog):
    backend = auth(table(legacy))
    try:
        assert await check(backend, "nobody", "x") is None
        assert await check(backend, "dup", "x") is None  # two rows: refused
        with caplog.at_level(logging.ERROR, logger="bridge.auth.sql"):
            # a plaintext row under "auto": no shape, so no scheme: refused, and said
            assert await check(backend, "plaintext_user", pw("plaintext_user")) is None
        assert "plaintext_user" in caplog.text
        assert pw("plaintext_user") not in caplog.text
    finally:
        await backend.close()


async def test_unknown_users_are_checked_against_a_decoy_of_the_real_cost(legacy):
    backend = auth(table(legacy, password_scheme="bcrypt"))
    try:
        await check(backend, "bcrypt_user", "wrong")
        real = hashes.cost_key("bcrypt", ROWS["bcrypt_user"][1])
        assert await check(backend, "no-such-user", "x") is None
        assert list(backend._decoys) == [real]  # one decoy, with the real rows' cost (4)
        assert real == "bcrypt:04"
    finally:
        await backend.close()


@pytest.mark.parametrize("login", ["' OR '1'='1", "plaintext_user' --", "%", "plaintext%",
                                   "\\'; DROP TABLE legacy_users; --", "plaintext_user\0"])
async def test_injection_attempts_find_nobody_and_change_nothing(legacy, login):
    backend = auth(table(legacy, password_scheme="plaintext"))
    try:
        assert await check(backend, login, "x' OR '1'='1") is None
        assert await check(backend, login, pw("plaintext_user")) is None
        assert await check(backend, "plaintext_user", pw("plaintext_user")) is not None
    finally:
        await backend.close()
    assert legacy.run("SELECT COUNT(*) FROM legacy_users;").strip() == str(len(ROWS) + 2 + (
        2 if legacy.kind == "postgresql" else 1))


async def test_an_md5_from_the_phone(legacy):
    plain = auth(table(legacy, password_scheme="plaintext"))
    md5 = auth(table(legacy, password_scheme="md5"))
    bcrypt_auth = auth(table(legacy, password_scheme="bcrypt"))
    assert plain.password_formats == md5.password_formats == {"plaintext", "md5"}
    assert bcrypt_auth.password_formats == {"plaintext"}
    try:
        sent = _hex("md5", pw("plaintext_user"))
        assert await check(plain, "plaintext_user", sent, "md5") is not None
        assert await check(plain, "plaintext_user", _hex("md5", "x"), "md5") is None
        sent = _hex("md5", pw("md5_user"))
        assert await check(md5, "md5_user", sent, "md5") is not None
    finally:
        for backend in (plain, md5, bcrypt_auth):
            await backend.close()


def test_configuration_rules(tmp_path):
    url = "postgresql://gw:Sup3rSecret@127.0.0.1/x"
    base = {"url": url, "query": QUERY, "password_column": "pw"}
    assert problems("auth", {**base, "password_scheme": "bcrypt", "salt_column": "salt"}) == [
        "Config value 'auth.salt_column': a salt goes with md5, sha1, sha256 or sha512, "
        "not 'bcrypt'"]
    assert problems("auth", {**base, "password_scheme": "ha1"}) == [
        "Config value 'auth.realm_column': ha1 is MD5(username:realm:password): give "
        "realm_column or realm"]
    assert problems("auth", {**base, "password_scheme": "rot13"})[0].startswith(
        "Config value 'auth.password_scheme': expected one of 'auto', 'plaintext'")
    assert problems("auth", {**base, "password_column": "password"}) == [
        "Config value 'auth.password_column': the query returns no column 'password' (it "
        "returns: active, full_name, pw, realm, salt, username)"]
    assert problems("auth", {**base, "preset": "kamailio"}) == [
        "Config value 'auth.query': give either query or preset, not both (preset "
        "'kamailio' has its own query)"]
    assert problems("auth", {"url": url, "preset": "freepbx", "password_scheme": "ha1"}) == [
        "Config value 'auth.password_scheme': preset 'freepbx' stores passwords as plaintext; "
        "give password_column for 'ha1'"]
    assert problems("auth", {**base, "query": "SELECT pw FROM t WHERE a = "
                                               "{login.password}"}) == [
        "Config value 'auth.query': {login.password} may not be sent to the database"]
    assert problems("auth", {**base, "query": "UPDATE t SET pw = 'x' WHERE a = "
                                               "{login.username}"}) == [
        "Config value 'auth.query': must be a SELECT (or WITH ... SELECT) query: the gateway "
        "only reads"]
    for found in (problems("auth", {**base, "url": "oracle://gw:Sup3rSecret@h/x"}),
                  problems("auth", {**base, "url": "gw:Sup3rSecret@nowhere"}),
                  problems("auth", {**base, "url": 5})):
        assert len(found) == 1 and found[0].startswith("Config value 'auth.url'")
        assert "Sup3rSecret" not in found[0]
    os.environ.pop("ZB_NO_SUCH_DSN", None)
    assert problems("auth", {"url_env": "ZB_NO_SUCH_DSN", "preset": "kamailio"}) == [
        "Config value 'auth.url': url_env: environment variable 'ZB_NO_SUCH_DSN' is not set"]

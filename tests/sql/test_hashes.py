# ruff: noqa: S324  (legacy schemes are what these tests are about)
"""bridge.hashes: every stored scheme verifies its password and nothing else."""

from __future__ import annotations

import hashlib

import argon2
import bcrypt
import pytest
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt

from bridge import hashes
from bridge.hashes import Salt

PASSWORD = "Pässwörd 'quoted' \\ 100%_"

# Stored values made by the reference implementations, not by bridge.hashes.
STORED = {
    "plaintext": PASSWORD,
    "md5": hashlib.md5(PASSWORD.encode()).hexdigest(),
    "sha1": hashlib.sha1(PASSWORD.encode()).hexdigest().upper(),  # upper case happens
    "sha256": hashlib.sha256(PASSWORD.encode()).hexdigest(),
    "sha512": hashlib.sha512(PASSWORD.encode()).hexdigest(),
    "bcrypt": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
    "sha512_crypt": sha512_crypt.using(rounds=1000).hash(PASSWORD),
    "sha256_crypt": sha256_crypt.using(rounds=1000).hash(PASSWORD),
    "md5_crypt": md5_crypt.hash(PASSWORD),
    "mysql41": "*" + hashlib.sha1(hashlib.sha1(PASSWORD.encode()).digest()).hexdigest().upper(),
    "argon2": argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD),
    "ha1": hashlib.md5(f"alice:asterisk:{PASSWORD}".encode()).hexdigest(),
}


@pytest.mark.parametrize("scheme", sorted(STORED))
def test_each_scheme_verifies_the_password_and_rejects_others(scheme):
    stored = STORED[scheme]
    assert hashes.verify(scheme, PASSWORD, stored, username="alice", realm="asterisk")
    for wrong in ["", PASSWORD + " ", PASSWORD[:-1], PASSWORD.upper(), "Pa" + "\0"]:
        assert not hashes.verify(scheme, wrong, stored, username="alice", realm="asterisk")


@pytest.mark.parametrize("scheme", sorted(set(STORED) - {"plaintext", "ha1"}))
def test_schemes_are_recognised_by_shape(scheme):
    assert hashes.identify(STORED[scheme]) == scheme


@pytest.mark.parametrize("stored", ["hunter2", "", "$9$unknown", "*ABC", "abcz" * 8, "$2x$"])
def test_no_shape_no_scheme(stored):
    assert hashes.identify(stored) is None


@pytest.mark.parametrize("prefix", ["$2a$", "$2y$", "$2b$"])
def test_bcrypt_variants_of_php_and_pgcrypto(prefix):
    stored = prefix + STORED["bcrypt"][4:]
    assert hashes.verify("bcrypt", PASSWORD, stored)
    assert not hashes.verify("bcrypt", "wrong", stored)


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("scheme", ["md5", "sha1", "sha256", "sha512"])
def test_salted_hex(scheme, position):
    salt = "s@lt'"
    text = salt + PASSWORD if position == "before" else PASSWORD + salt
    stored = hashlib.new(scheme, text.encode()).hexdigest()
    assert hashes.verify(scheme, PASSWORD, stored, Salt(salt, position))
    other = "after" if position == "before" else "before"
    assert not hashes.verify(scheme, PASSWORD, stored, Salt(salt, other))
    assert not hashes.verify(scheme, PASSWORD, stored)


@pytest.mark.parametrize("scheme", ["bcrypt", "sha512_crypt", "argon2", "md5_crypt"])
def test_malformed_stored_values_are_false_not_errors(scheme):
    for stored in ["", "$", STORED[scheme][:-5], STORED[scheme][:10] + "\u00e9" * 20]:
        assert hashes.verify(scheme, PASSWORD, stored) is False


def test_an_md5_sent_by_the_phone_checks_against_plaintext_or_unsalted_md5_only():
    sent = hashlib.md5(PASSWORD.encode()).hexdigest()
    assert hashes.verify_md5("plaintext", sent, STORED["plaintext"])
    assert hashes.verify_md5("md5", sent.upper(), STORED["md5"])
    assert not hashes.verify_md5("plaintext", hashlib.md5(b"x").hexdigest(), PASSWORD)
    for scheme in ("bcrypt", "sha1", "argon2", "ha1"):
        assert not hashes.verify_md5(scheme, sent, STORED[scheme])


@pytest.mark.parametrize("scheme", sorted(STORED))
def test_decoys_match_nothing_and_keep_the_cost(scheme):
    like = STORED[scheme]
    decoy = hashes.decoy(scheme, like)
    assert not hashes.verify(scheme, PASSWORD, decoy)
    assert hashes.cost_key(scheme, decoy) == hashes.cost_key(scheme, like)
    assert decoy != hashes.decoy(scheme, like) or scheme in ("plaintext",)


def test_crypt_decoy_without_a_model_uses_crypts_default_rounds():
    # passlib's own default (656000 rounds) would make unknown users far slower than real ones
    assert hashes.cost_key("sha512_crypt", hashes.decoy("sha512_crypt")) == \
        hashes.cost_key("sha512_crypt", "$6$saltsalt$" + "x" * 86)

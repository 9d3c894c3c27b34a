"""Stored-password schemes of legacy systems: recognise, verify in constant time, make decoys.

Billing systems and PBXs keep passwords in whatever their authors chose years ago.
A scheme is named in the configuration, or recognised by the stored value's shape:

    name          stored value                        recognised by
    plaintext     the password itself                 (never recognised: name it)
    md5 sha1      lower- or upper-case hex digest,     length 32 / 40 / 64 / 128 hex
    sha256 sha512   optionally salted (salt before
                    or after the password)
    bcrypt        $2a$ / $2b$ / $2y$ (pgcrypto bf)     prefix
    sha512_crypt  $6$   crypt(3)                       prefix
    sha256_crypt  $5$   crypt(3)                       prefix
    md5_crypt     $1$   crypt(3), pgcrypto md5         prefix
    mysql41       *HEX: MySQL's PASSWORD()             '*' + 40 hex
    argon2        $argon2id$ / $argon2i$ / $argon2d$   prefix
    ha1           MD5(user:realm:password), the SIP    (never recognised: name it; the
                  digest HA1 (Kamailio ha1, Asterisk     hex looks like md5)
                  md5_cred)

Well-kept libraries do the slow schemes: bcrypt (bcrypt), argon2-cffi (argon2),
libpass, the maintained passlib fork (crypt(3) forms; Python 3.13 has no crypt
module). Hex digests use hashlib and hmac.compare_digest.

A verification never raises for a wrong or malformed stored value: it is False
(the caller logs that the stored value is unusable, never the value).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import argon2
import bcrypt
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt  # type: ignore[import-untyped]

Scheme = Literal["plaintext", "md5", "sha1", "sha256", "sha512", "bcrypt", "sha512_crypt",
                 "sha256_crypt", "md5_crypt", "mysql41", "argon2", "ha1"]
SCHEMES: tuple[str, ...] = Scheme.__args__  # type: ignore[attr-defined]
HEX_SCHEMES = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
CRYPT = {"sha512_crypt": sha512_crypt, "sha256_crypt": sha256_crypt, "md5_crypt": md5_crypt}
_PREFIXES = (("$2a$", "bcrypt"), ("$2b$", "bcrypt"), ("$2y$", "bcrypt"),
             ("$6$", "sha512_crypt"), ("$5$", "sha256_crypt"), ("$1$", "md5_crypt"),
             ("$argon2", "argon2"))
_HEX = re.compile(r"[0-9a-fA-F]+")
_MYSQL41 = re.compile(r"\*[0-9a-fA-F]{40}")
_HASHER = argon2.PasswordHasher()


def identify(stored: str) -> str | None:
    """The scheme a stored value is written in, by its shape; None when it has none."""
    for prefix, scheme in _PREFIXES:
        if stored.startswith(prefix):
            return scheme
    if _MYSQL41.fullmatch(stored):
        return "mysql41"
    if _HEX.fullmatch(stored):
        for scheme, length in HEX_SCHEMES.items():
            if len(stored) == length:
                return scheme
    return None


@dataclass(frozen=True)
class Salt:
    """A salt for the hex schemes: its text and where it goes around the password."""

    value: str = ""
    position: Literal["before", "after"] = "after"

    def apply(self, password: str) -> str:
        return self.value + password if self.position == "before" else password + self.value


NO_SALT = Salt()


def _hex(scheme: str, text: str) -> str:
    return hashlib.new(scheme, text.encode("utf-8"), usedforsecurity=False).hexdigest()


def mysql41(password: str) -> str:
    """MySQL's PASSWORD(): '*' + upper-case hex of SHA1(SHA1(password))."""
    inner = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def ha1(username: str, realm: str, password: str) -> str:
    return _hex("md5", f"{username}:{realm}:{password}")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


def verify(scheme: str, password: str, stored: str, salt: Salt = NO_SALT,
           username: str = "", realm: str = "") -> bool:
    """True when `password` matches `stored` in `scheme`; False for anything else."""
    try:
        if scheme == "plaintext":
            return _same(password, stored)
        if scheme in HEX_SCHEMES:
            return _same(_hex(scheme, salt.apply(password)), stored.lower())
        if scheme == "ha1":
            return _same(ha1(username, realm, password), stored.lower())
        if scheme == "mysql41":
            return _same(mysql41(password), stored.upper())
        if scheme == "bcrypt":
            # bcrypt's $2y$ (PHP) and $2a$ (pgcrypto) hash the same way as $2b$.
            fixed = "$2b$" + stored[4:] if stored[:4] in ("$2a$", "$2y$") else stored
            return bcrypt.checkpw(password.encode("utf-8"), fixed.encode("ascii"))
        if scheme in CRYPT:
            return bool(CRYPT[scheme].verify(password, stored))
        if scheme == "argon2":
            return _HASHER.verify(stored, password)
    except (ValueError, TypeError, UnicodeError, argon2.exceptions.VerificationError,
            argon2.exceptions.InvalidHashError):
        return False
    return False


def verify_md5(scheme: str, md5_hex: str, stored: str) -> bool:
    """Check an MD5 of the password (what Zoiper5 sends with password_format md5).

    Possible only where the stored value is the password itself or its unsalted MD5.
    """
    md5_hex = md5_hex.lower()
    if scheme == "plaintext":
        return _same(md5_hex, _hex("md5", stored))
    if scheme == "md5":
        return _same(md5_hex, stored.lower())
    return False


def make(scheme: str, password: str, salt: Salt = NO_SALT, username: str = "",
         realm: str = "", like: str | None = None) -> str:
    """`password` stored in `scheme` (decoys, tests); with the cost of `like` when given."""
    if scheme == "plaintext":
        return password
    if scheme in HEX_SCHEMES:
        return _hex(scheme, salt.apply(password))
    if scheme == "ha1":
        return ha1(username, realm, password)
    if scheme == "mysql41":
        return mysql41(password)
    if scheme == "bcrypt":
        cost = int(like[4:6]) if like and like[4:6].isdigit() else 12
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(cost)).decode()
    if scheme in CRYPT:
        handler = CRYPT[scheme]
        # Without a model, crypt(3)'s own default (5000), not passlib's much higher one.
        rounds: int | None = (_crypt_rounds(like) if like
                              else None if scheme == "md5_crypt" else 5000)
        return str(handler.using(rounds=rounds).hash(password) if rounds
                   else handler.hash(password))
    if scheme == "argon2":
        if like:
            try:
                p = argon2.extract_parameters(like)
                return argon2.PasswordHasher.from_parameters(p).hash(password)
            except argon2.exceptions.InvalidHashError:
                pass
        return _HASHER.hash(password)
    raise ValueError(f"unknown password scheme {scheme!r}")


def _crypt_rounds(stored: str) -> int | None:
    m = re.match(r"\$[56]\$rounds=([0-9]+)\$", stored)
    if m:
        return int(m.group(1))
    return 5000 if stored[:3] in ("$5$", "$6$") else None  # crypt(3)'s implicit default


def decoy(scheme: str, like: str | None = None) -> str:
    """A stored value no password matches that costs what a real one does to check.

    An unknown user is checked against one, so that a wrong name costs what a wrong
    password costs. `like` (a real stored value) gives the cost parameters.
    """
    return make(scheme, secrets.token_urlsafe(24), like=like)


def cost_key(scheme: str, stored: str) -> str:
    """What determines the cost of checking `stored`: decoys are cached by it."""
    if scheme == "bcrypt":
        return f"bcrypt:{stored[4:6]}"
    if scheme in CRYPT:
        return f"{scheme}:{_crypt_rounds(stored)}"
    if scheme == "argon2":
        return "argon2:" + stored.rsplit("$", 2)[0]
    return scheme

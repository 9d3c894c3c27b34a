"""Salted, deliberately slow password hashes for the file authenticator (stdlib scrypt).

Format: `$scrypt$ln=15,r=8,p=1$<salt>$<key>` (salt and key in unpadded
base64), the same shape passlib writes, so existing hashes can be reused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

DEFAULT_LOG_N = 15
_FORMAT = re.compile(
    r"\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,2}),p=(?P<p>[0-9]{1,2})"
    r"\$(?P<salt>[A-Za-z0-9+/.]+)\$(?P<key>[A-Za-z0-9+/.]+)"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.replace(".", "+") + "=" * (-len(text) % 4))


def hash_password(password: str, log_n: int = DEFAULT_LOG_N) -> str:
    salt = os.urandom(16)
    key = _scrypt(password, salt, log_n, 8, 1)
    return f"$scrypt$ln={log_n},r=8,p=1${_b64(salt)}${_b64(key)}"


def check_format(hashed: str) -> str | None:
    """None when `hashed` is usable, else why not (for configuration errors)."""
    m = _FORMAT.fullmatch(hashed)
    if not m:
        return ("expected a hash like $scrypt$ln=15,r=8,p=1$SALT$KEY "
                "(see `zoiper-bridge hash-password`)")
    if not 10 <= int(m["ln"]) <= 22 or not 1 <= int(m["r"]) <= 32 or not 1 <= int(m["p"]) <= 16:
        return "scrypt parameters out of range (ln 10-22, r 1-32, p 1-16)"
    return None


def verify_password(password: str, hashed: str) -> bool:
    m = _FORMAT.fullmatch(hashed)
    if not m:
        return False
    key = _unb64(m["key"])
    candidate = _scrypt(password, _unb64(m["salt"]), int(m["ln"]), int(m["r"]), int(m["p"]),
                        len(key))
    return hmac.compare_digest(candidate, key)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int, dklen: int = 32) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r * p + (1 << 20), dklen=dklen)


# Unknown users are checked against this so that they cost as much time as known ones.
DUMMY_HASH = hash_password("not a real password", DEFAULT_LOG_N)

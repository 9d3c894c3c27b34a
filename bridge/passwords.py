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
    try:
        salt, key = _unb64(m["salt"]), _unb64(m["key"])
    except ValueError:  # binascii.Error: a length no base64 text has
        return "salt or key is not base64"
    if not salt or not 16 <= len(key) <= 64:
        return "the key must be 16 to 64 bytes long"
    return None


def parameters(hashed: str) -> tuple[int, int, int, int] | None:
    """(ln, r, p, key length): what verifying against `hashed` costs; None when unusable."""
    m = _FORMAT.fullmatch(hashed)
    if not m or check_format(hashed):
        return None
    return int(m["ln"]), int(m["r"]), int(m["p"]), len(_unb64(m["key"]))


def dummy_hash(log_n: int = DEFAULT_LOG_N, r: int = 8, p: int = 1, key_length: int = 32) -> str:
    """A hash no password matches (its key is random) that costs as much to check as a real
    one with the same parameters; unknown users are checked against one."""
    return f"$scrypt$ln={log_n},r={r},p={p}${_b64(os.urandom(16))}${_b64(os.urandom(key_length))}"


def verify_password(password: str, hashed: str) -> bool:
    m = _FORMAT.fullmatch(hashed)
    if not m or check_format(hashed):
        return False
    key = _unb64(m["key"])
    candidate = _scrypt(password, _unb64(m["salt"]), int(m["ln"]), int(m["r"]), int(m["p"]),
                        len(key))
    return hmac.compare_digest(candidate, key)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int, dklen: int = 32) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r * p + (1 << 20), dklen=dklen)


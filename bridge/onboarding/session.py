"""The page's session: one cookie, encrypted and authenticated (AES-256-GCM), short-lived.

The cookie holds everything the page needs between requests (so any worker
or instance can serve the next one, and nothing is stored server side): the
CSRF token, who signed in and through which pipeline, the current QR code's
token (which is why it is encrypted, not only signed), and authlib's state,
nonce and PKCE verifier while an OpenID sign-in is under way. The
associated data binds it to its cookie name and path, so a cookie made for
one profile's page is refused at another's.

Attributes: HttpOnly, SameSite=Lax (Strict would drop it on the provider's
redirect back), Secure over HTTPS, Path = the page, Max-Age = what is left of
the lifetime. The lifetime is absolute: it runs from the first visit and is
renewed only by signing in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "zb_onboarding"
MAX_COOKIE = 3800  # bytes: browsers keep 4096 per cookie, name and attributes included


class Session(dict[str, Any]):
    """The decrypted cookie: a dict with an expiry; `fresh` when there was none (or it
    had expired), `expired` when one was sent but its time was up."""

    def __init__(self, data: dict[str, Any], *, fresh: bool, expired: bool = False) -> None:
        super().__init__(data)
        self.fresh = fresh
        self.expired = expired

    @property
    def signed_in(self) -> bool:
        return bool(self.get("user"))

    @property
    def csrf(self) -> str:
        return str(self.get("csrf", ""))


class SessionCodec:
    def __init__(self, secret: str, path: str, lifetime: float) -> None:
        key = hmac.new(secret.encode(), b"zoiper-bridge onboarding session", hashlib.sha256)
        self._aead = AESGCM(key.digest())
        self.path = path
        self.lifetime = lifetime
        self._aad = f"{COOKIE}\x00{path}".encode()

    def new(self, **data: Any) -> Session:
        """A session starting now (a first visit, or a sign-in)."""
        return Session({"csrf": secrets.token_urlsafe(24),
                        "exp": time.time() + self.lifetime, **data}, fresh=True)

    def load(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return self.new()
        data = self._decrypt(raw)
        if data is None:
            return self.new()
        if not isinstance(data.get("exp"), int | float) or data["exp"] <= time.time():
            session = self.new()
            session.expired = True
            return session
        return Session(data, fresh=False)

    def _decrypt(self, raw: str) -> dict[str, Any] | None:
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            plain = self._aead.decrypt(blob[:12], blob[12:], self._aad)
            data = json.loads(plain)
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def encode(self, session: Session) -> str:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(dict(session)).encode(),
                                          self._aad)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def save(self, response: Response, session: Session, secure: bool) -> None:
        value = self.encode(session)
        if len(value) > MAX_COOKIE:  # a bug, not the user's doing: better no session than half
            raise ValueError(f"onboarding session of {len(value)} bytes")
        left = max(1, int(float(session["exp"]) - time.time()))
        response.set_cookie(COOKIE, value, max_age=left, path=self.path, secure=secure,
                            httponly=True, samesite="lax")

    def clear(self, response: Response, secure: bool) -> None:
        response.delete_cookie(COOKIE, path=self.path, secure=secure, httponly=True,
                               samesite="lax")


def same(given: str | None, expected: str) -> bool:
    """CSRF check in constant time; an empty expected token never matches."""
    return bool(expected) and given is not None and hmac.compare_digest(
        given.encode(), expected.encode())

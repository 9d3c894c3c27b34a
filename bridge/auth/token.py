"""Token as password: the password field carries a token the provider's portal issued.

* "introspection" (RFC 7662): the token goes to the introspection endpoint
  (authenticated as the gateway's client); the answer must say `active: true`,
  and its exp / nbf, iss and aud (when configured), client and scope are
  checked here too: a server that forgets a check must not let a token in;
* "jwt": the token is verified locally against the issuer's JWKS (alg from the
  allow-list, signature, iss, aud, exp, nbf, iat), then client and scope.

A token that fails any check is invalid credentials (None: 401), logged at
info with the reason only. With `match_username` (the default) the name the
phone sent must be the token's `username_claim` (case-insensitively): a token
logs in its own user only, so the gateway's per-user limits count the right
user. The token itself is never logged, nor put in a message: the request flow
registers the password field as a secret for its log lines, and its cache and
limit keys are keyed hashes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bridge.auth.oauth_config import OAuthConfig
from bridge.models import Credentials, Identity
from bridge.upstream.oidc import InvalidToken

if TYPE_CHECKING:
    from bridge.auth.oauth import OAuthAuthenticator

logger = logging.getLogger("bridge.auth.token")


async def introspected(auth: OAuthAuthenticator, credentials: Credentials) -> Identity | None:
    s = auth.settings
    reply = await auth.post_form("introspection_endpoint",
                                 {"token": credentials.password,
                                  "token_type_hint": "access_token"})
    if reply.status != 200:
        raise auth.refused(reply, "introspection")
    answer = auth.json_object(reply, "the introspection answer")
    active = answer.get("active")
    if not isinstance(active, bool):
        raise auth.unusable("introspection answer without \"active\"")
    why = "inactive" if not active else (_time_problem(answer, s.leeway)
                                         or _issuer_problem(answer, s)
                                         or _token_problem(answer, s))
    if why is not None:
        _refused(auth, credentials, why)
        return None
    return _own(auth, answer, credentials)


async def verified(auth: OAuthAuthenticator, credentials: Credentials) -> Identity | None:
    s = auth.settings
    try:
        claims = await auth.provider.verify(credentials.password, algorithms=s.algorithms,
                                            audiences=s.audiences, leeway=s.leeway,
                                            hmac_key=s.hmac_secret)
    except InvalidToken as exc:
        _refused(auth, credentials, str(exc))
        return None
    if (why := _token_problem(claims, s)) is not None:
        _refused(auth, credentials, why)
        return None
    return _own(auth, claims, credentials)


def _refused(auth: OAuthAuthenticator, credentials: Credentials, why: str) -> None:
    logger.info("%s: token of %r refused: %s", auth.upstream.name, credentials.username, why)


def _own(auth: OAuthAuthenticator, claims: dict[str, Any],
         credentials: Credentials) -> Identity | None:
    identity = auth.identity(claims, credentials.username, fallback=False)
    if (auth.settings.match_username
            and identity.username.casefold() != credentials.username.casefold()):
        _refused(auth, credentials, f"it is {identity.username!r}'s")
        return None
    return identity


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value,
                                                                              bool) else None


def _time_problem(claims: dict[str, Any], leeway: int) -> str | None:
    now = time.time()
    exp, nbf = _number(claims.get("exp")), _number(claims.get("nbf"))
    if exp is not None and exp + leeway <= now:
        return "expired"
    if nbf is not None and nbf - leeway > now:
        return "not yet valid"
    return None


def _issuer_problem(claims: dict[str, Any], s: OAuthConfig) -> str | None:
    if s.issuer is not None and "iss" in claims and claims["iss"] != s.issuer:
        return "another issuer's"
    if s.audience:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not set(s.audience) & {a for a in auds if isinstance(a, str)}:
            return "for another audience"
    return None


def _token_problem(claims: dict[str, Any], s: OAuthConfig) -> str | None:
    """Client and scope, for either mode."""
    if s.allowed_clients:
        client = claims.get("client_id", claims.get("azp"))
        if client not in s.allowed_clients:
            return "issued to another client"
    if s.required_scope:
        granted = claims.get("scope", claims.get("scp", ""))
        scopes = set(granted.split() if isinstance(granted, str) else
                     [g for g in granted if isinstance(g, str)] if isinstance(granted, list)
                     else [])
        missing = [scope for scope in s.required_scope if scope not in scopes]
        if missing:
            return f"without the scope(s) {', '.join(missing)}"
    return None

"""An OpenID Connect provider's documents (discovery, JWKS), cached; JWTs checked against them.

Both documents are fetched through the backend's own `UpstreamClient` and
kept for the answer's Cache-Control max-age, bounded to 5 min .. 24 h (1 h
when the answer says nothing; no-store / no-cache: 5 min). One fetch of a
document is in flight at a time; requests that waited for it take its result,
or its failure, without fetching again.

Key rotation: a token whose `kid` the cached JWKS does not know makes the JWKS
be fetched again, at most once per `refresh_interval` (default 30 s), so
tokens with made-up key ids cannot make the gateway hammer the provider.

Failures: a document that cannot be fetched, or that is not what it should be
(not JSON, another issuer, no usable key, an endpoint over plain http) is the
provider's fault for every user: raised as UpstreamError NOT marked answered,
so the backend's breaker counts it. A document past its lifetime that cannot be
refreshed is kept a while (stale-if-error, retried after `refresh_interval`):
a JWKS endpoint that hiccups must not log everyone out. A refresh for an
unknown kid that fails is raised (503), not taken for a bad token (401).

`InvalidToken` says why a JWT is refused: a claim name or an error class,
never the token or any of its values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey, import_key

from bridge.errors import UpstreamError, UpstreamUnavailable
from bridge.upstream.client import Reply, UpstreamClient
from bridge.upstream.config import scheme_problem
from bridge.upstream.documents import Malformed, parse
from bridge.upstream.templates import Prepared

logger = logging.getLogger("bridge.upstream.oidc")

MIN_LIFETIME, DEFAULT_LIFETIME, MAX_LIFETIME = 300.0, 3600.0, 86400.0
DISCOVERY_PATH = "/.well-known/openid-configuration"
_KEY_TYPES: dict[str, type[Key]] = {"RS": RSAKey, "PS": RSAKey, "ES": ECKey, "Ed": OKPKey,
                                    "HS": OctKey}


class InvalidToken(Exception):
    """A JWT that must not be trusted. The message is a reason, never the token."""


def lifetime(headers: httpx.Headers) -> float:
    """Seconds to keep a document, from its Cache-Control, bounded."""
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").lower().split(","):
        name, _, value = part.strip().partition("=")
        directives[name] = value.strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return MIN_LIFETIME
    age = directives.get("max-age", "")
    if not age.isdigit():
        return DEFAULT_LIFETIME
    return min(MAX_LIFETIME, max(MIN_LIFETIME, float(age)))


@dataclass
class _Entry:
    value: Any
    fetched: float
    expires: float


class CachedDocument:
    """One document with a lifetime; `fetch` returns (value, lifetime) or raises UpstreamError."""

    def __init__(self, what: str, fetch: Callable[[], Awaitable[tuple[Any, float]]],
                 refresh_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.fetch = fetch
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.fetches = 0  # fetch attempts that ended (tests and waiters read it)
        self._entry: _Entry | None = None
        self._failed: tuple[type[UpstreamError], str] | None = None
        self._attempted = -float("inf")
        self._lock: asyncio.Lock | None = None  # made in the running loop, on first use

    async def get(self, *, refresh: bool = False) -> Any:
        """The document; `refresh`: fetch again, unless an attempt was made within
        refresh_interval (then what that attempt left: the copy, or its failure)."""
        entry = self._entry
        now = self.clock()
        if entry is not None:
            if refresh and now - self._attempted < self.refresh_interval:
                if self._failed is not None:
                    kind, detail = self._failed
                    raise kind(detail)
                return entry.value
            if not refresh and now < entry.expires:
                return entry.value
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited_for = self.fetches
        async with self._lock:
            if self.fetches != waited_for:  # a fetch ended while we waited: its outcome is ours
                if self._failed is not None and (self._entry is None or refresh):
                    kind, detail = self._failed
                    raise kind(detail)
                if self._entry is not None:
                    return self._entry.value
            return await self._fetch(refresh)

    async def _fetch(self, refresh: bool) -> Any:
        self._attempted = self.clock()
        try:
            value, seconds = await self.fetch()
        except UpstreamError as exc:
            self.fetches += 1
            self._failed = (type(exc), exc.detail)
            entry = self._entry
            if entry is None or refresh:
                raise
            logger.warning("%s: refresh failed (%s); keeping the copy fetched %.0fs ago",
                           self.what, exc.detail, self.clock() - entry.fetched)
            entry.expires = self.clock() + self.refresh_interval
            return entry.value
        now = self.clock()
        self.fetches += 1
        self._failed = None
        self._entry = _Entry(value, now, now + seconds)
        return value


class Provider:
    """Discovery, JWKS and the checks of a JWT against them, for one issuer."""

    def __init__(self, upstream: UpstreamClient, issuer: str | None, endpoints: dict[str, str],
                 refresh_interval: float = 30.0, allow_http: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        self.issuer = issuer
        self.endpoints = endpoints  # configured ones; the rest come from discovery
        self.allow_http = allow_http
        self.discovery = CachedDocument(f"{upstream.name}: discovery", self._discover,
                                        refresh_interval, clock)
        self.jwks = CachedDocument(f"{upstream.name}: JWKS", self._keys, refresh_interval,
                                   clock)

    async def endpoint(self, name: str) -> str:
        if name in self.endpoints:
            return self.endpoints[name]
        metadata = await self.discovery.get()
        url = metadata.get(name)
        if not isinstance(url, str) or not url:
            raise UpstreamUnavailable(f"{self.upstream.name}: the discovery document has no "
                                      f"{name} (configure it in [auth])")
        return url

    async def _get(self, url: str, what: str) -> Reply:
        reply = await self.upstream.call(
            Prepared("GET", httpx.URL(url), [("Accept", b"application/json")]), lambda r: r)
        if reply.status != 200:
            raise UpstreamUnavailable(f"{self.upstream.name}: {what} answered HTTP "
                                      f"{reply.status}")
        return reply

    def _json(self, reply: Reply, what: str) -> dict[str, Any]:
        try:
            document = parse(reply.content, "application/json")
        except Malformed as exc:
            why = str(exc)
        else:
            if isinstance(document, dict):
                return document
            why = "not a JSON object"
        raise UpstreamUnavailable(f"{self.upstream.name}: {what} is {why}")

    async def _discover(self) -> tuple[dict[str, Any], float]:
        assert self.issuer is not None
        reply = await self._get(self.issuer.rstrip("/") + DISCOVERY_PATH, "discovery")
        metadata = self._json(reply, "the discovery document")
        if metadata.get("issuer") != self.issuer:
            logger.error("%s: the discovery document is for another issuer: check [auth] "
                         "issuer (it must be exactly the provider's, trailing slash and all)",
                         self.upstream.name)
            raise UpstreamUnavailable(f"{self.upstream.name}: discovery names another issuer")
        for name, url in metadata.items():
            if name.endswith(("_endpoint", "_uri")) and isinstance(url, str):
                try:
                    problem = scheme_problem(httpx.URL(url), self.allow_http)
                except httpx.InvalidURL:
                    problem = "not a URL"
                if problem is not None:
                    metadata[name] = None  # never used; asking for it names the key
                    logger.warning("%s: discovery's %s is unusable: %s", self.upstream.name,
                                   name, problem)
        return metadata, lifetime(reply.headers)

    async def _keys(self) -> tuple[dict[str | None, list[Key]], float]:
        reply = await self._get(await self.endpoint("jwks_uri"), "the JWKS")
        document = self._json(reply, "the JWKS")
        keys: dict[str | None, list[Key]] = {}
        entries = document.get("keys")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = import_key(entry)
            except (JoseError, ValueError, TypeError):
                continue  # a key type or curve we do not know: others may still serve
            if isinstance(key, OctKey):
                continue  # a shared secret has no business in a public document
            kid = entry.get("kid")
            keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
        if not keys:
            raise UpstreamUnavailable(f"{self.upstream.name}: the JWKS has no usable "
                                      "signing key")
        return keys, lifetime(reply.headers)

    async def signing_keys(self, kid: str | None, alg: str) -> list[Key]:
        """Keys that may have signed a token with this header; refresh once for a new kid."""
        kind = _KEY_TYPES[alg[:2]]
        keys: dict[str | None, list[Key]] = await self.jwks.get()
        if kid is not None and kid not in keys:
            keys = await self.jwks.get(refresh=True)  # rotated? (rate-limited)
        found = keys.get(kid, []) if kid is not None else [k for ks in keys.values()
                                                            for k in ks]
        found = [k for k in found if isinstance(k, kind)]
        if not found:
            raise InvalidToken("signed with a key the provider does not publish"
                               if kid is not None else "no kid, and no key fits its alg")
        return found

    async def verify(self, token: str, *, algorithms: Collection[str], audiences: Collection[str],
                     leeway: int, hmac_key: str = "") -> dict[str, Any]:
        """The claims of a JWT signed by this issuer for one of `audiences`; raise InvalidToken
        (or UpstreamError when the keys cannot be had)."""
        alg, kid = header(token, algorithms)
        keys: list[Key] = ([OctKey.import_key(hmac_key)] if alg.startswith("HS")
                           else await self.signing_keys(kid, alg))
        claims = decode(token, keys, alg)
        check_claims(claims, self.issuer, audiences, leeway)
        return claims


def header(token: str, algorithms: Collection[str]) -> tuple[str, str | None]:
    """(alg, kid) of a compact JWS, before anything is trusted; alg from the allow-list."""
    if token.count(".") != 2:
        raise InvalidToken("not a signed JWT")
    try:
        protected = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise InvalidToken("not a signed JWT") from None
    alg, kid = protected.get("alg"), protected.get("kid")
    if not isinstance(alg, str) or alg not in algorithms or alg[:2] not in _KEY_TYPES:
        raise InvalidToken("its alg is not allowed")  # "none" is never in the list
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("its kid is not a string")
    return alg, kid


def decode(token: str, keys: list[Key], alg: str) -> dict[str, Any]:
    """The payload, when one of `keys` verifies the signature with `alg`."""
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError):
            continue
        return claims
    raise InvalidToken("bad signature")


def check_claims(claims: dict[str, Any], issuer: str | None, audiences: Collection[str],
                 leeway: int, now: int | None = None) -> None:
    """iss, aud, exp (required), nbf and iat (when present), with `leeway` seconds of skew."""
    if not audiences:  # joserfc would take an empty list as "any audience"
        raise InvalidToken("no audience is configured to accept")
    options: dict[str, Any] = {"exp": {"essential": True},
                               "aud": {"essential": True, "values": list(audiences)}}
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    registry = jwt.JWTClaimsRegistry(now=now, leeway=leeway, **options)
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise InvalidToken(exc.description or type(exc).__name__) from None

"""What the page asks of the gateway: sign a user in, list their accounts, issue a code.

The login form goes the phone's way (bridge/provision.py): the tenant by the
username's @domain or the Host, the pipeline's breaker, the profile's Guard
with the very keys the provisioning endpoint uses (so a wrong password here
counts toward the same limits, and a closed username is closed here too),
the request deadline, the authenticator, then [policy] required_groups.

The accounts shown are what the QR code will provision: the pipeline's
source and mapping for the bare username, as the token endpoint sees it;
only each account's `name` option is kept (never a password).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from bridge.errors import AccountNotFound, AuthenticationFailed, NotPermitted, UpstreamTimeout
from bridge.metrics import METRICS
from bridge.models import Credentials, Identity
from bridge.provision import Pipeline, Provisioner
from bridge.runtime import Runtime
from bridge.settings import Profile
from bridge.tokens.service import Issued, TokenService
from bridge.tokens.store import Ticket

logger = logging.getLogger("bridge.onboarding")


@dataclass(frozen=True)
class SignedIn:
    """Who the page serves: the backends' username, and the pipeline that serves them."""

    username: str
    pipeline: str
    tenant: str | None  # for TokenService.issue; None: the profile's own pipeline


def signed_in(runtime: Runtime, profile: Profile, username: str,
              host: str | None) -> tuple[SignedIn, Provisioner, Pipeline]:
    """The tenant of `username` (as a request to the profile's path would find it)."""
    route = runtime.route(profile, profile.path, host, username)
    pipe = route.pipeline
    tenant = pipe.name.rpartition("/")[2] if pipe.name in {t.name for t in profile.tenants} \
        else None
    return SignedIn(route.username, pipe.name, tenant), route.provisioner, pipe


async def password_sign_in(runtime: Runtime, profile: Profile, username: str, password: str,
                           client: str | None, host: str | None) -> SignedIn:
    """The login form: AuthenticationFailed, NotPermitted, RateLimited or an outage."""
    who, provisioner, pipe = signed_in(runtime, profile, username, host)
    if profile.query.password_format == "md5":  # noqa: S105 (the app would send the MD5)
        password = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    credentials = Credentials(who.username, password, client=client,
                              password_format=profile.query.password_format)
    if pipe.auth_breaker.refusing:
        METRICS.inc("bridge_breaker_refusals_total")
        pipe.auth_breaker.check()
    guard = provisioner.guard
    attempt = guard.attempt(credentials, "" if pipe is provisioner.pipeline else pipe.name)
    if await guard.recently_failed(attempt):
        raise AuthenticationFailed(f"onboarding: user {who.username!r}: same password failed "
                                   "recently")
    await guard.admit(attempt)
    outcome = "other"
    try:
        try:
            async with asyncio.timeout(provisioner.deadline):
                with pipe.auth_breaker.guard():
                    identity = await pipe.authenticator.authenticate(credentials)
        except TimeoutError:
            pipe.auth_breaker.failure()
            raise UpstreamTimeout(f"request deadline of {provisioner.deadline}s exceeded "
                                  "asking the authenticator") from None
        if identity is None:
            outcome = "failed"
            raise AuthenticationFailed(f"onboarding: user {who.username!r}: invalid "
                                       "credentials")
        outcome = "ok"
    finally:
        await guard.settle(attempt, outcome)
    check_groups(pipe, identity)
    return who


def check_groups(pipe: Pipeline, identity: Identity) -> None:
    """[policy] required_groups: a token skips them, so the page that issues one may not."""
    if pipe.required_groups and not pipe.required_groups & identity.groups:
        raise NotPermitted(f"onboarding: user {identity.username!r} is in none of the "
                           "required groups")


async def account_names(runtime: Runtime, who: SignedIn, client: str | None) -> list[str]:
    """The `name` of each account the user's QR code will provision."""
    pipe = runtime.pipelines[who.pipeline]
    identity = Identity(who.username)
    credentials = Credentials(who.username, "", client=client)
    deadline = runtime.settings.server.deadline
    if pipe.source_breaker.refusing:
        pipe.source_breaker.check()
    try:
        async with asyncio.timeout(deadline):
            with pipe.source_breaker.guard():
                accounts = await pipe.source.accounts(identity, credentials)
    except TimeoutError:
        pipe.source_breaker.failure()
        raise UpstreamTimeout(f"request deadline of {deadline}s exceeded asking the "
                              "account source") from None
    if not accounts:
        raise AccountNotFound(f"onboarding: user {who.username!r}: no SIP account")
    tree = pipe.mapping.build(identity, accounts, credentials)
    names = []
    for n, account in enumerate(tree["accounts"], 1):
        name = account.get("name")
        names.append(str(name) if name not in (None, "") else f"Account {n}")
    return names


async def issue(tokens: TokenService, profile: Profile, who: SignedIn, ttl: float) -> Issued:
    issued = await tokens.issue(who.username, profile.name, tenant=who.tenant, ttl=ttl, uses=1)
    logger.info("onboarding: code %s for %r", issued.ticket.fingerprint, who.username)
    return issued


async def ticket(tokens: TokenService, digest: str) -> Ticket | None:
    """The code's ticket as stored now (used? revoked?). TokenStore has no lookup by
    hash yet, so this lists: fine for a page reloaded every few seconds by a few users."""
    return next((t for t in await tokens.store.tickets() if t.digest == digest), None)


async def revoke(tokens: TokenService, digest: str) -> None:
    """Revoke the code if it is still live (a spent one keeps its 'spent' status)."""
    found = await ticket(tokens, digest)
    if found is not None and found.status() == "live":
        await tokens.store.revoke([digest])
        logger.info("onboarding: code %s revoked (replaced or signed out)", found.fingerprint)

"""One profile's self-service page: sign in, see your accounts, scan a one-time QR code.

    GET  PATH            sign-in page, or (signed in) the accounts and the QR code
    POST PATH/login      the login form (profiles without [onboarding.oidc])
    GET  PATH/sso        -> the OpenID provider (profiles with [onboarding.oidc])
    GET  PATH/callback   <- the provider: code + state
    POST PATH/code       a fresh code (the previous one is revoked)
    POST PATH/logout     sign out (a code not yet used is revoked)
    GET  PATH/style.css, PATH/theme.css (the configured colours), PATH/logo

Every form carries the session's CSRF token (403 without it); every answer
carries the security headers below and pages are never stored. Failures are
described by the profile's ErrorPolicy (bridge/errors.py: the same status and
message the phone would get) and shown as a page.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from bridge.errors import BadRequest, BridgeError, RateLimited
from bridge.logs import register_secret
from bridge.onboarding import flow
from bridge.onboarding.config import LOGO_TYPES, OnboardingSettings
from bridge.onboarding.oidc import OidcSignIn
from bridge.onboarding.session import COOKIE, Session, SessionCodec, same
from bridge.runtime import Runtime
from bridge.settings import Profile, Settings
from bridge.tokens.service import TokenService

logger = logging.getLogger("bridge.onboarding")

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Cross-Origin-Opener-Policy": "same-origin"}
MAX_FORM = 8192
MAX_NAMES = 20


class GatewayView(Protocol):
    """What the page needs of bridge.app.Gateway."""

    def build(self) -> Runtime: ...

    def client(self, request: Request) -> str | None: ...


class Forbidden(BridgeError):
    status, key = 403, "not_permitted"


def host_of(request: Request) -> str | None:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].partition("]")[0].lower() or None
    return (host.rpartition(":")[0] if host.count(":") == 1 else host).lower() or None


class Site:
    def __init__(self, profile: Profile, config: OnboardingSettings, gateway: GatewayView,
                 tokens: TokenService) -> None:
        assert profile.onboarding_path is not None
        self.profile, self.config, self.gateway, self.tokens = profile, config, gateway, tokens
        self.path = profile.onboarding_path
        self.sessions = SessionCodec(config.secret, self.path, config.session_lifetime)
        self.oidc = (OidcSignIn(profile.onboarding_oidc, f"onboarding-{profile.name}")
                     if profile.onboarding_oidc else None)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.style = (HERE / "static" / "style.css").read_bytes()
        c = config.colors
        self.theme = (f":root {{ --primary: {c.primary}; --on-primary: {c.on_primary}; "
                      f"--background: {c.background}; --text: {c.text}; }}\n").encode()
        self.logo = config.logo.read_bytes() if config.logo else None
        self.logo_type = LOGO_TYPES[config.logo.suffix.lower()] if config.logo else ""

    def routes(self) -> list[Route]:
        p, page = self.path, self.page
        routes = [Route(p, page(self.home), methods=["GET"]),
                  Route(p + "/code", page(self.new_code), methods=["POST"]),
                  Route(p + "/logout", page(self.logout), methods=["POST"]),
                  Route(p + "/style.css", self.asset(self.style, "text/css"), methods=["GET"]),
                  Route(p + "/theme.css", self.asset(self.theme, "text/css"), methods=["GET"])]
        if self.oidc is not None:
            routes += [Route(p + "/sso", page(self.sso), methods=["GET"]),
                       Route(p + "/callback", page(self.callback), methods=["GET"])]
        else:
            routes.append(Route(p + "/login", page(self.login), methods=["POST"]))
        if self.logo is not None:
            routes.append(Route(p + "/logo", self.asset(self.logo, self.logo_type),
                                methods=["GET"]))
        return routes

    # -- plumbing --------------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.config.public_url.startswith("https:")

    def page(self, handler: Callable[[Request, Session], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
        """Session in, session out (when it changed), headers on, failures as a page."""
        async def endpoint(request: Request) -> Response:
            if raw := request.cookies.get(COOKIE):
                register_secret(raw)
            session = self.sessions.load(request)
            request.scope["session"] = session  # authlib keeps its state here
            before = json.dumps(session, sort_keys=True)  # deep: codes are nested dicts
            try:
                response = await handler(request, session)
            except Exception as exc:
                response = self.failure(request, session, exc)
            if session.get("cleared"):
                self.sessions.clear(response, self.secure(request))
            elif session.fresh or json.dumps(session, sort_keys=True) != before:
                self.sessions.save(response, session, self.secure(request))
            response.headers.update(HEADERS)
            response.headers["Cache-Control"] = "no-store"
            return response
        return endpoint

    def asset(self, body: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            response = Response(body, media_type=media_type,
                                headers={**HEADERS, "Cache-Control": "public, max-age=300"})
            if media_type == "image/svg+xml":  # opened on its own, an SVG could run script
                response.headers["Content-Security-Policy"] = CSP + "; sandbox"
            return response
        return endpoint

    def render(self, request: Request, session: Session, template: str, status: int = 200,
               headers: dict[str, str] | None = None, **context: Any) -> Response:
        context.update(site=self, config=self.config, csrf=session.csrf, path=self.path)
        return self.templates.TemplateResponse(request, template, context, status_code=status,
                                               headers=headers)

    def failure(self, request: Request, session: Session, exc: Exception) -> Response:
        status, message, headers = self.profile.errors.describe(exc)
        headers.pop("Allow", None)
        headers.pop("WWW-Authenticate", None)
        if isinstance(exc, Forbidden):
            message = "This form has expired or was not sent by this page. Please try again."
        elif isinstance(exc, BadRequest):  # the phone's wording asks for a password
            message = "This request could not be used. Please start again."
        if status >= 500 or not isinstance(exc, BridgeError):
            logger.warning("onboarding: %s: %s", type(exc).__name__,
                           getattr(exc, "detail", "") or "-",
                           exc_info=None if isinstance(exc, BridgeError) else exc)
        else:
            logger.info("onboarding: %s: %s", type(exc).__name__, exc.detail or "-")
        template = "signin.html" if not session.signed_in else "error.html"
        return self.render(request, session, template, status, headers, error=message)

    async def form(self, request: Request, session: Session, *names: str) -> dict[str, str]:
        """The urlencoded form, each field once; Forbidden without the session's CSRF token."""
        if request.headers.get("content-type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            raise BadRequest("onboarding: a form that is not urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise BadRequest("onboarding: form too large")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("onboarding: a form that does not parse") from None
        if any(len(v) > 1 for v in fields.values()):
            raise BadRequest("onboarding: a form field twice")
        values = {k: v[0] for k, v in fields.items()}
        if not same(values.get("csrf"), session.csrf):
            raise Forbidden("onboarding: form without this session's CSRF token")
        return {name: values.get(name, "") for name in names}

    def back(self) -> Response:
        return RedirectResponse(self.path, status_code=303)

    # -- pages -----------------------------------------------------------------------------

    async def home(self, request: Request, session: Session) -> Response:
        if not session.signed_in:
            notice = "Your session has expired. Please sign in again." if session.expired \
                else None
            return self.render(request, session, "signin.html", notice=notice)
        code = session.get("code")
        status, qr, until, used = "none", None, None, None
        if code:
            found = await flow.ticket(self.tokens, code["digest"])
            status = found.status() if found else "expired"
            if status == "live":
                register_secret(code["token"])
                qr = Markup(segno.make(code["content"], error="m", micro=False).svg_inline(  # noqa: S704
                    scale=1, border=4, dark="#000", light="#fff", omitsize=True,
                    svgclass="qr"))
                until = time.strftime("%H:%M:%S UTC", time.gmtime(code["expires"]))
            elif status == "spent":
                code.setdefault("used", time.time())  # first seen: within `refresh` seconds
                used = time.strftime("%H:%M:%S UTC", time.gmtime(code["used"]))
        return self.render(request, session, "code.html", who=session["who"],
                           names=session.get("names", []), state=status, qr=qr, until=until,
                           used=used, refresh=self.config.refresh if status == "live" else 0)

    async def login(self, request: Request, session: Session) -> Response:
        fields = await self.form(request, session, "username", "password")
        username, password = fields["username"].strip(), fields["password"]
        register_secret(password)
        if not username or not password or len(username) > 256 or len(password) > 1024:
            return self.render(request, session, "signin.html", 400, username=username,
                               error="Enter your username and password.")
        runtime = self.gateway.build()
        try:
            who = await flow.password_sign_in(runtime, self.profile, username, password,
                                              self.gateway.client(request), host_of(request))
        except BridgeError as exc:
            if exc.status >= 500:
                raise
            logger.info("onboarding: %s: %s", type(exc).__name__, exc.detail or "-")
            status, message, headers = self.profile.errors.describe(exc)
            headers.pop("WWW-Authenticate", None)
            return self.render(request, session, "signin.html", status, headers,
                               username=username, error=message)
        return await self.signed_in(request, session, username, who)

    async def sso(self, request: Request, session: Session) -> Response:
        assert self.oidc is not None
        base = self.config.public_url or f"{request.url.scheme}://{request.url.netloc}"
        return await self.oidc.start(request, base + self.path + "/callback")

    async def callback(self, request: Request, session: Session) -> Response:
        assert self.oidc is not None
        identity = await self.oidc.finish(request)
        who, _, pipe = flow.signed_in(self.gateway.build(), self.profile, identity.username,
                                      host_of(request))
        flow.check_groups(pipe, identity)
        return await self.signed_in(request, session, identity.username, who)

    async def signed_in(self, request: Request, session: Session, typed: str,
                        who: flow.SignedIn) -> Response:
        """A new session for the user (new CSRF token, new lifetime), and a first code."""
        names = await flow.account_names(self.gateway.build(), who,
                                         self.gateway.client(request))
        logger.info("onboarding: %r signed in (%s)", who.username, who.pipeline)
        session.clear()
        session.update(self.sessions.new(who=typed[:256], user=who.username,
                                         pipeline=who.pipeline, tenant=who.tenant,
                                         names=[n[:120] for n in names[:MAX_NAMES]],
                                         codes=0))
        await self.issue(session)
        return self.back()

    async def issue(self, session: Session) -> None:
        tokens = self.tokens
        if session.get("codes", 0) >= self.config.max_codes:
            raise RateLimited("onboarding: too many codes for one sign-in", retry_after=60)
        if old := session.get("code"):
            await flow.revoke(tokens, old["digest"])
        who = flow.SignedIn(session["user"], session["pipeline"], session.get("tenant"))
        issued = await flow.issue(tokens, self.profile, who, self.config.code_ttl)
        session["code"] = {"token": issued.token, "digest": issued.ticket.digest,
                           "content": issued.link or issued.token,
                           "expires": issued.ticket.expires}
        session["codes"] = session.get("codes", 0) + 1

    async def new_code(self, request: Request, session: Session) -> Response:
        if not session.signed_in:  # expired: back to sign-in (nothing is changed)
            return self.back()
        await self.form(request, session)
        await self.issue(session)
        return self.back()

    async def logout(self, request: Request, session: Session) -> Response:
        if not session.signed_in:
            return self.back()
        await self.form(request, session)
        if code := session.get("code"):
            await flow.revoke(self.tokens, code["digest"])
        logger.info("onboarding: %r signed out", session.get("user"))
        session.clear()
        session["cleared"] = True
        return self.back()


def onboarding_routes(settings: Settings, gateway: GatewayView,
                      tokens: TokenService) -> list[Route]:
    """The pages of every profile that has one ([onboarding] / [profiles.NAME.onboarding])."""
    config: OnboardingSettings | None = settings.onboarding
    if config is None:
        return []
    routes: list[Route] = []
    for profile in settings.profiles:
        if profile.onboarding_path:
            routes += Site(profile, config, gateway, tokens).routes()
    return routes


"""`[onboarding]` and a profile's `[profiles.NAME.onboarding]`: the self-service page.

    [onboarding]
    path = "/onboard"            # the default profile's page; absent: no page (the default)
    secret_env = "ONBOARD_KEY"   # session cookie key, at least 32 characters
    session_lifetime = "10m"     # a sign-in lasts this long (at most 1 h)
    code_ttl = "5m"              # each QR code works once, for this long
    refresh = 5                  # the code page reloads itself every N seconds until used
    public_url = "https://prov.example.net"   # OIDC redirect_uri base; https: Secure cookie
    name = "Example Telecom"     # the provider's name, shown on every page
    logo = "logo.svg"            # png, svg, jpg, webp or gif, relative to this file
    [onboarding.colors]          # checked for contrast (WCAG AA, 4.5:1)
    primary = "#0b5cad"          # buttons and links
    on_primary = "#ffffff"       # text on buttons
    background = "#ffffff"
    text = "#1b1b1b"
    [onboarding.oidc]            # sign in at an OpenID provider (code flow + PKCE);
    issuer = "https://idp.example.net/realms/staff"   # absent: a login form through the
    client_id = "onboarding"                          # profile's authenticator
    client_secret_env = "ONBOARD_OIDC_SECRET"         # absent: a public client

    [profiles.desktop.onboarding]
    path = "/desktop/onboard"    # another profile's page; it may have its own [.oidc]

Like a token endpoint, a page is served only where it is set, never inherited,
and only for a profile that serves tokens (the page's QR codes are tokens of
that profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from pydantic import Field, PlainValidator, model_validator

from bridge.config import FilePath, Model, Secret, describe, problem
from bridge.tokens.config import Duration, TokenSettings
from bridge.upstream.config import scheme_problem

if TYPE_CHECKING:
    from bridge.settings import Profile, ServerSettings

LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text
SUBPATHS = ("/login", "/sso", "/callback", "/code", "/logout", "/style.css", "/theme.css",
            "/logo")


def _page_path(value: Any) -> str:
    if (not isinstance(value, str) or not value.startswith("/") or value.endswith("/")
            or any(c in value for c in "?#{}% ") or "//" in value):
        raise ValueError(f"expected a path like \"/onboard\" (no trailing '/', no '?', '#', "
                         f"'%', braces or spaces), received {describe(value)}")
    return value


def _color(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    digits = text[1:]
    if not (text.startswith("#") and len(digits) in (3, 6)
            and all(c in "0123456789abcdefABCDEF" for c in digits)):
        raise ValueError(f"expected a colour like \"#0b5cad\" or \"#fff\", received "
                         f"{describe(value)}")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.lower()


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, received {describe(value)}")
    if value:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if (url is None or url.scheme not in ("http", "https") or not url.host
                or url.query or url.fragment):
            raise ValueError(f"expected an http(s) URL without a query, received {value!r}")
    return value.rstrip("/")


PagePath = Annotated[str, PlainValidator(_page_path)]
Color = Annotated[str, PlainValidator(_color)]
Url = Annotated[str, PlainValidator(_url)]


def luminance(color: str) -> float:
    """WCAG 2 relative luminance of #rrggbb."""
    channels = []
    for i in (1, 3, 5):
        c = int(color[i:i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class Colors(Model):
    """`[onboarding.colors]`: the brand, as long as people can still read it."""

    primary: Color = "#0b5cad"
    on_primary: Color = "#ffffff"
    background: Color = "#ffffff"
    text: Color = "#1b1b1b"

    @model_validator(mode="after")
    def _readable(self) -> Colors:
        for fg, bg, key, what in (("text", "background", "text", "text on the background"),
                                  ("primary", "background", "primary",
                                   "links (primary) on the background"),
                                  ("on_primary", "primary", "on_primary",
                                   "button text (on_primary) on primary")):
            ratio = contrast(getattr(self, fg), getattr(self, bg))
            if ratio < MIN_CONTRAST:
                raise problem(f"{what} has a contrast of {ratio:.2f}:1; at least "
                              f"{MIN_CONTRAST}:1 is needed to be readable (WCAG AA)", key)
        return self


class OidcClient(Model):
    """`[onboarding.oidc]`: the page's own client at an OpenID provider (code flow, PKCE)."""

    issuer: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: Secret = ""  # empty: a public client (PKCE only)
    scope: list[str] = ["openid", "profile"]
    username_claim: str = Field("preferred_username", min_length=1)
    groups_claims: list[str] = ["groups"]  # for [policy] required_groups
    label: str = Field("Sign in with your company account", min_length=1, max_length=80)
    timeout: float = Field(5.0, ge=0.1, le=60)
    allow_http: bool = False
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _check(self) -> OidcClient:
        try:
            url = httpx.URL(self.issuer)
        except httpx.InvalidURL:
            raise problem("expected the issuer's URL", "issuer") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise problem("expected the issuer's http(s) URL", "issuer")
        if (why := scheme_problem(url, self.allow_http)) is not None:
            raise problem(why, "issuer")
        if "openid" not in self.scope:
            raise problem("must include \"openid\" (the sign-in is an ID token)", "scope")
        return self


class ProfileOnboarding(Model):
    """`[profiles.NAME.onboarding]`: that profile's page and, optionally, its own provider."""

    path: PagePath
    oidc: OidcClient | None = None


class OnboardingSettings(Model):
    """`[onboarding]`: sessions, codes and branding for every page; the default profile's."""

    path: PagePath | None = None
    oidc: OidcClient | None = None
    secret: Secret = ""
    session_lifetime: Duration = 600.0
    code_ttl: Duration = 300.0
    refresh: int = Field(5, ge=2, le=60)
    max_codes: int = Field(20, ge=1, le=1000)  # fresh codes per sign-in
    public_url: Url = ""
    name: str = Field("Phone app set-up", min_length=1, max_length=80)
    logo: FilePath | None = None
    colors: Colors = Colors()

    @model_validator(mode="after")
    def _check(self) -> OnboardingSettings:
        if len(self.secret) < 32:
            raise problem("is required, at least 32 characters (it protects the session "
                          "cookies; give it as secret_env or secret_file)", "secret")
        if not 5 <= self.session_lifetime <= 3600:
            raise problem("must be between 5 seconds and 1 hour", "session_lifetime")
        if not 30 <= self.code_ttl <= 3600:
            raise problem("must be between 30 seconds and 1 hour", "code_ttl")
        if self.logo is not None and self.logo.suffix.lower() not in LOGO_TYPES:
            raise problem(f"expected a {', '.join(sorted(LOGO_TYPES))} file", "logo")
        return self


def onboarding_problems(onboarding: OnboardingSettings | None, tokens: TokenSettings | None,
                        server: ServerSettings, profiles: Sequence[Profile]) -> list[str]:
    """A page needs tokens for its profile, and an address no other route takes."""
    problems = []
    pages = [p for p in profiles if p.onboarding_path]
    if onboarding is None:
        return [f"Config value 'profiles.{p.name}.onboarding': needs an [onboarding] table "
                f"(the session secret)" for p in pages]
    # Exact routes, and prefixes that take one more path segment (token endpoints, admin).
    exact: list[tuple[str, str]] = [(path, f"profile {p.name!r}")
                                    for p in profiles for path in p.paths]
    prefixes = [(p.token_path, f"the token endpoint of profile {p.name!r}")
                for p in profiles if p.token_path]
    if server.metrics_path:
        exact.append((server.metrics_path, "[server] metrics_path"))
    if tokens is not None and tokens.admin.enabled:
        exact.append((tokens.admin.path, "[tokens.admin] path"))
        prefixes.append((tokens.admin.path + "/", "[tokens.admin] path"))
    for p in pages:
        assert p.onboarding_path is not None
        where = "onboarding.path" if p.name == "default" else f"profiles.{p.name}.onboarding.path"
        if p.token_path is None:
            token_where = "[tokens] path" if p.name == "default" else \
                f"[profiles.{p.name}.tokens] path"
            problems.append(f"Config value '{where}': profile {p.name!r} serves no tokens "
                            f"(set {token_where}): the page's QR codes are its tokens")
        mine = [p.onboarding_path + sub for sub in ("", *SUBPATHS)]
        clash = next((who for path, who in exact if path in mine), None) or next(
            (who for prefix, who in prefixes for route in mine
             if route.startswith(prefix) and "/" not in route[len(prefix):]
             and route != prefix), None)
        if clash is not None:
            problems.append(f"Config value '{where}': {p.onboarding_path!r} overlaps the "
                            f"path of {clash}")
        exact += [(route, f"the onboarding page of profile {p.name!r}") for route in mine]
    return problems

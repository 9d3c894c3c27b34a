"""Signing in at an OpenID provider: the authorization code flow with PKCE (authlib's
Starlette client).

authlib keeps the state, the nonce and the PKCE verifier in `request.session`
(our encrypted cookie: bridge/onboarding/session.py) and checks them on the
way back: a callback whose state is not this browser's is refused, the code is
exchanged with the verifier, and the ID token is verified against the
provider's JWKS (iss, aud, exp, nonce, at_hash). The provider's endpoints come
from discovery; the discovery document must name the configured issuer (a
mix-up defence authlib does not do itself).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx
from authlib.integrations.starlette_client import (  # type: ignore[import-untyped]
    OAuth,
    OAuthError,
)
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import AuthenticationFailed, BadRequest, UpstreamUnavailable
from bridge.logs import register_secret
from bridge.models import Identity
from bridge.net import client_tls_context
from bridge.onboarding.config import OidcClient
from bridge.upstream import documents

logger = logging.getLogger("bridge.onboarding.oidc")

DISCOVERY = "/.well-known/openid-configuration"


class OidcSignIn:
    def __init__(self, config: OidcClient, name: str) -> None:
        self.config = config
        tls: ssl.SSLContext = client_tls_context(
            str(config.ca_file) if config.ca_file else None, verify=True)
        self.oauth = OAuth()
        self.client: Any = self.oauth.register(
            name=name, client_id=config.client_id, client_secret=config.client_secret or None,
            server_metadata_url=config.issuer.rstrip("/") + DISCOVERY,
            client_kwargs={
                "scope": " ".join(config.scope), "code_challenge_method": "S256",
                "token_endpoint_auth_method": ("client_secret_basic" if config.client_secret
                                               else "none"),
                "timeout": config.timeout, "verify": tls,
            })

    async def _metadata(self) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = await self.client.load_server_metadata()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamUnavailable(f"onboarding: OpenID discovery at {self.config.issuer}: "
                                      f"{type(exc).__name__}") from None
        if metadata.get("issuer") != self.config.issuer:
            self.client.server_metadata.clear()  # fetched again next time
            logger.error("onboarding: the discovery document names another issuer than "
                         "[onboarding.oidc] issuer %r", self.config.issuer)
            raise UpstreamUnavailable("onboarding: discovery names another issuer")
        return metadata

    async def start(self, request: Request, redirect_uri: str) -> Response:
        """The redirect to the provider (state, nonce, PKCE challenge kept in the session)."""
        await self._metadata()
        response: Response = await self.client.authorize_redirect(request, redirect_uri)
        return response

    async def finish(self, request: Request) -> Identity:
        """The identity of the callback's code; BadRequest for a state that is not ours,
        AuthenticationFailed when the provider said no or its ID token does not verify."""
        for name in ("code", "state"):
            if value := request.query_params.get(name):
                register_secret(value)
        await self._metadata()
        try:
            token = await self.client.authorize_access_token(request)
        except OAuthError as exc:
            if exc.error == "mismatching_state":
                raise BadRequest("onboarding: callback with a state this browser did not "
                                 "start (an old tab, a replay, or a forged link)") from None
            raise AuthenticationFailed(f"onboarding: the provider refused: "
                                       f"{_code(exc.error)}") from None
        except JoseError as exc:
            logger.warning("onboarding: ID token refused: %s", type(exc).__name__)
            raise AuthenticationFailed(f"onboarding: ID token refused: "
                                       f"{type(exc).__name__}") from None
        except (httpx.HTTPError, ValueError) as exc:  # unreachable, 5xx, not JSON
            raise UpstreamUnavailable(f"onboarding: token endpoint: "
                                      f"{type(exc).__name__}") from None
        claims = token.get("userinfo")
        if not claims:  # authlib verifies an ID token only when there is one
            raise AuthenticationFailed("onboarding: the provider sent no ID token")
        return self.identity(dict(claims))

    def identity(self, claims: dict[str, Any]) -> Identity:
        value = documents.scalar(documents.select(claims, self.config.username_claim))
        if not isinstance(value, str) or not value.strip():
            raise AuthenticationFailed(f"onboarding: the ID token has no "
                                       f"{self.config.username_claim!r} claim")
        groups: set[str] = set()
        for path in self.config.groups_claims:
            found = documents.select(claims, path)
            items = found if isinstance(found, list) else [found]
            groups |= {str(v) for v in items if isinstance(v, str | int)
                       and not isinstance(v, bool)}
        return Identity(value, {}, frozenset(groups))


def _code(error: str | None) -> str:
    """An OAuth2 error code, never echoed text from the redirect."""
    text = error or "no error code"
    return text if text.replace("_", "").isalnum() and len(text) <= 64 else "odd error code"

"""The self-service onboarding page: sign in once in a browser, scan a one-time QR code.

    config.py    [onboarding] / [profiles.NAME.onboarding], declared; colour contrast checked
    session.py   the encrypted session cookie; CSRF tokens
    oidc.py      sign-in at an OpenID provider (authlib's Starlette client: code + PKCE)
    flow.py      the login form through the profile's authenticator and limits; the
                 accounts shown; codes issued and revoked (bridge/tokens)
    site.py      the routes, security headers, pages (templates/, static/)

Kept import-light: bridge.settings imports config.py while it loads.
"""

"""One-time onboarding tokens: a QR code that provisions an app without a password in it.

    config.py      [tokens] / [profiles.NAME.tokens], and what a token cannot serve
    store.py       Ticket and the TokenStore interface
    sql.py         SQLite (default) or PostgreSQL      redisstore.py   Redis
    service.py     issue, redeem (atomic), list, revoke; the per-address guessing limit;
                   TokenDesk, what bridge/provision.py sees of it all
    cli.py         zoiper-bridge token issue | list | revoke      qr.py   PNG, SVG, terminal
    admin.py       the HTTP admin API (off by default, bearer secret)

The branded app's "Token URL" is a profile's token endpoint: the app GETs
token URL + token and gets the configuration of the user the token was issued
for, through that profile's (or tenant's) account source and mapping.
"""

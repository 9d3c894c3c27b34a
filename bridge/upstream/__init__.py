"""Talking to what a provider already runs: HTTP requests built from templates.

* `config`: the keys every HTTP upstream's table shares (connection, TLS,
  timeouts, the request), declared once as models;
* `templates`: request shapes from TOML, with placeholders encoded for where they land;
* `documents`: JSON/XML answers, and dotted paths / JSON Pointers into them;
* `client`: one client (connection pool) per backend, with timeouts, retries,
  a size limit, same-host redirects and a readiness check; httpx errors
  become UpstreamError here and nowhere else;
* `credentials`: how the gateway itself logs in to an API (bearer, API key,
  basic, OAuth2 client credentials through authlib);
* `transport`: the httpx transport over aiohttp's connection pool.
"""

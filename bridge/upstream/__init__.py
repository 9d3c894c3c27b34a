"""Talking to what a provider already runs: HTTP requests built from templates.

* `templates`: request shapes from TOML, with placeholders encoded for where they land;
* `documents`: JSON/XML answers, and dotted paths / JSON Pointers into them;
* `http`: one shared client per upstream, with timeouts, retries, a circuit
  breaker, a size limit and same-host redirects; httpx errors become
  UpstreamError here and nowhere else.
"""

"""The benchmark's billing system: GET /accounts/{user} -> JSON, and a call counter.

Run: uvicorn bench.backend:app. `/_stats` returns how many account lookups it
served, so the benchmark can report upstream calls per gateway request.
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CALLS = {"accounts": 0}
_USER = re.compile(r"user([0-9]+)")


async def accounts(request: Request) -> Response:
    CALLS["accounts"] += 1
    m = _USER.fullmatch(request.path_params["user"])
    if not m:
        return JSONResponse({"accounts": []}, status_code=404)
    n = int(m.group(1))
    return JSONResponse({"accounts": [{
        "sip_user": str(1000 + n),
        "sip_password": f"sip-secret-{n}",
        "domain": "pbx.example.org",
        "caller_id": f"User {n}",
    }]})


async def stats(request: Request) -> Response:
    return JSONResponse(CALLS)


app = Starlette(routes=[Route("/accounts/{user}", accounts), Route("/_stats", stats)])

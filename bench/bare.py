"""The yardstick: a bare Starlette route returning a fixed 3.5 KB XML document.

Every gateway figure is reported as a ratio to this route, served with the same
uvicorn settings in the same run, because absolute numbers on a shared 2-core
machine drift from run to run.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

_CODEC = ("<codec><codec_id>{}</codec_id><priority>{}</priority><enabled>true</enabled>"
          "<bps>0</bps><dtx>false</dtx><vbr>false</vbr></codec>")
BODY = ('<?xml version="1.0" encoding="utf-8"?>\n<options><accounts><account>'
        "<name>user1</name><username>1001</username><password>pass1</password>"
        "<SIP_domain>pbx.example.org</SIP_domain>"
        + "".join(_CODEC.format(i, i) for i in range(20))
        + "</account></accounts></options>").encode()
BODY = BODY + b"<!--" + b" " * (3500 - len(BODY) - 7) + b"-->"
assert len(BODY) == 3500


async def provision(request: object) -> Response:
    return Response(BODY, media_type="application/xml; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


app = Starlette(routes=[Route("/provision", provision)])

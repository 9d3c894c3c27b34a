"""Client CPU per upstream HTTP call: what the account source pays, three ways.

    .venv/bin/python -m bench.http_client [CALLS] [CONCURRENCY]

Runs the benchmark's account backend (bench/backend.py) and, in this process on
uvloop, makes CALLS account lookups with CONCURRENCY in flight:

* "source, direct": `HTTPSource.accounts` as the gateway runs it (a plain call goes
  straight to the aiohttp pool, bridge/upstream/client.py);
* "source, via httpx": the same source and request, forced through httpx and its
  aiohttp transport with a pass-through auth flow (what every call cost before);
* "aiohttp alone": a bare `session.get` + `json()`, the floor for this transport.

Figures are CPU µs of this process per call (time.process_time), median of
`--rounds`, with the rounds listed: compare them with each other, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PYTHON, process  # noqa: E402
from bridge.config import Section  # noqa: E402
from bridge.models import Credentials, Identity  # noqa: E402
from bridge.sources import build_source  # noqa: E402
from bridge.sources.http import HTTPSource  # noqa: E402
from tests.gateway import free_port  # noqa: E402


class PassThrough(httpx.Auth):
    """Changes nothing; its presence sends the call through httpx."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


async def timed(calls: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    async def worker(k: int) -> None:
        for j in range(calls // concurrency):
            await one((k * 7 + j) % 1000 + 1)

    await worker(0)  # connections open, caches warm
    started = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


async def source_calls(port: int, calls: int, concurrency: int, through_httpx: bool) -> float:
    section = Section({"type": "http", "url": f"http://127.0.0.1:{port}/accounts/"
                       "{identity.username}", "accounts_path": "accounts"},
                      "source", [], ROOT)
    source = build_source(section)
    assert not section.problems and isinstance(source, HTTPSource), section.problems
    await source.start()
    login = Credentials("x", "y")
    auth = PassThrough() if through_httpx else None

    async def one(i: int) -> Any:
        if auth is None:
            return await source.accounts(Identity(f"user{i}", {}), login)
        from bridge.upstream.templates import Values

        prepared = source.request.prepare(Values(login, Identity(f"user{i}", {})))
        return await source.upstream.call(prepared, lambda r: r.document(), auth)

    try:
        return await timed(calls, concurrency, one)
    finally:
        await source.close()


async def aiohttp_calls(port: int, calls: int, concurrency: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def one(i: int) -> Any:
            async with session.get(f"http://127.0.0.1:{port}/accounts/user{i}") as r:
                return await r.json()

        return await timed(calls, concurrency, one)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("calls", type=int, nargs="?", default=4000)
    p.add_argument("concurrency", type=int, nargs="?", default=64)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    port = free_port()
    figures: dict[str, list[float]] = {"source, direct": [], "source, via httpx": [],
                                       "aiohttp alone": []}
    workdir = Path(tempfile.mkdtemp(prefix="zb-http-client-"))
    log = workdir / "backend.log"
    with process([PYTHON, "-m", "uvicorn", "bench.backend:app", "--port", str(port),
                  "--no-access-log", "--log-level", "warning"], log,
                 ready_url=f"http://127.0.0.1:{port}/_stats"):
        for _ in range(args.rounds):  # interleaved: drift hits all three alike
            figures["source, direct"].append(
                uvloop.run(source_calls(port, args.calls, args.concurrency, False)))
            figures["source, via httpx"].append(
                uvloop.run(source_calls(port, args.calls, args.concurrency, True)))
            figures["aiohttp alone"].append(
                uvloop.run(aiohttp_calls(port, args.calls, args.concurrency)))
    log.unlink(missing_ok=True)
    workdir.rmdir()
    print(f"{args.calls} calls, {args.concurrency} in flight, client CPU µs per call "
          f"(median of {args.rounds}; rounds):")
    for name, values in figures.items():
        print(f"  {name:18} {statistics.median(values):6.0f}   "
              + " / ".join(f"{v:.0f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())

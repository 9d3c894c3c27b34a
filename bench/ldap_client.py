"""Simple-bind throughput and CPU cost: AsyncLdapClient vs ldap3 against one private slapd.

    .venv/bin/python bench/ldap_client.py [--rounds 3] [--duration 3] [--workdir /tmp/zb-ldap-bench]

starts (or reuses) a slapd with 1000 bulk users (tests/ldap/slapd.py), then runs every cell
(mode x reset x concurrency) once per round, rounds interleaved, each cell in a fresh process:

    .venv/bin/python bench/ldap_client.py cell --mode aio --loop uvloop --conc 64 --reset 1 \
        --uri ldap://127.0.0.1:PORT --slapd-pid PID --duration 3

Modes: aio = AsyncLdapClient (pool_size 8, clear-text ldap://, one task per concurrent user);
ldap3 = ldap3 synchronous, one persistent connection per thread, rebind per request (`conc`
threads). reset=1: after a successful bind, rebind anonymously (AsyncLdapClient's
reset_after_bind; for ldap3 an explicit anonymous rebind). CPU is user+sys of the client
process (getrusage) and of slapd (/proc/PID/stat) over the measured window, after a warm-up.
Prints one JSON object per cell, then a markdown table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NUSERS = 1000
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def creds() -> tuple[str, str]:
    from tests.ldap.slapd import bulk_user_dn

    k = random.randint(1, NUSERS)
    return bulk_user_dn(k), f"pass{k}"


class Window:
    """Counts binds and latencies only between start() and stop()."""

    def __init__(self, slapd_pid: int) -> None:
        self.slapd_pid = slapd_pid
        self.on = False
        self.count = 0
        self.errors = 0
        self.lat: list[float] = []

    def start(self) -> None:
        self.t0, self.c0, self.s0 = time.perf_counter(), self_cpu(), proc_cpu(self.slapd_pid)
        self.on = True

    def stop(self) -> dict[str, float]:
        self.on = False
        dt = time.perf_counter() - self.t0
        client, slapd = self_cpu() - self.c0, proc_cpu(self.slapd_pid) - self.s0
        lat = sorted(self.lat) or [0.0]
        n = max(self.count, 1)
        return {"binds_s": self.count / dt, "errors": self.errors,
                "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
                "client_cpu_pct": 100 * client / dt, "slapd_cpu_pct": 100 * slapd / dt,
                "client_us_bind": 1e6 * client / n, "slapd_us_bind": 1e6 * slapd / n}

    def record(self, t0: float, ok: bool) -> None:
        if self.on:
            self.lat.append(time.perf_counter() - t0)
            self.count += 1
            self.errors += not ok


async def run_aio(uri: str, conc: int, reset: bool, warmup: float, duration: float,
                  window: Window) -> dict[str, float]:
    from bridge.ldap.aio import AsyncLdapClient
    from bridge.ldap.client import ServerSettings, TlsMode

    client = AsyncLdapClient(ServerSettings(uris=[uri], tls=TlsMode.NONE, pool_size=8,
                                            reset_after_bind=reset))
    await client.start()
    stop = False

    async def worker() -> None:
        while not stop:
            dn, pw = creds()
            t0 = time.perf_counter()
            result = await client.bind(dn, pw)
            window.record(t0, result.ok)

    tasks = [asyncio.create_task(worker()) for _ in range(conc)]
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(duration)
    out = window.stop()
    stop = True
    await asyncio.gather(*tasks)
    await client.close()
    return out


def run_ldap3(uri: str, conc: int, reset: bool, warmup: float, duration: float,
              window: Window) -> dict[str, float]:
    from ldap3 import ANONYMOUS, NONE, Connection, Server

    host, port = uri.removeprefix("ldap://").rsplit(":", 1)
    server = Server(host, port=int(port), get_info=NONE)
    stop = threading.Event()

    def worker() -> None:
        dn, pw = creds()
        conn = Connection(server, dn, pw, auto_bind=True)
        while not stop.is_set():
            dn, pw = creds()
            t0 = time.perf_counter()
            ok = conn.rebind(dn, pw)
            if reset and ok:
                conn.user = None
                conn.rebind(authentication=ANONYMOUS)
            window.record(t0, ok)
        conn.unbind()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    window.start()
    time.sleep(duration)
    out = window.stop()
    stop.set()
    for t in threads:
        t.join()
    return out


def cell(args: argparse.Namespace) -> None:
    window = Window(args.slapd_pid)
    reset = bool(args.reset)
    if args.mode == "aio":
        coro = run_aio(args.uri, args.conc, reset, args.warmup, args.duration, window)
        if args.loop == "uvloop":
            import uvloop

            out = uvloop.run(coro)
        else:
            out = asyncio.run(coro)
    else:
        out = run_ldap3(args.uri, args.conc, reset, args.warmup, args.duration, window)
    out.update(mode=args.mode, loop=args.loop if args.mode == "aio" else "-", conc=args.conc,
               reset=reset)
    print(json.dumps(out))


CELLS = [(mode, loop, reset, conc)
         for mode, loop in (("aio", "asyncio"), ("aio", "uvloop"), ("ldap3", "-"))
         for reset in (0, 1) for conc in (1, 64)]


def main(args: argparse.Namespace) -> None:
    from tests.ldap.slapd import Slapd

    s = Slapd(Path(args.workdir), bulk_users=NUSERS)
    s.start()
    pid = s.pid
    assert pid is not None
    print(f"# slapd pid {pid} {s.uri}", file=sys.stderr)
    results: list[dict[str, object]] = []
    try:
        for rnd in range(args.rounds):
            for mode, loop, reset, conc in CELLS:
                cmd = [sys.executable, __file__, "cell", "--mode", mode, "--loop", loop,
                       "--conc", str(conc), "--reset", str(reset), "--uri", s.uri,
                       "--slapd-pid", str(pid), "--duration", str(args.duration),
                       "--warmup", str(args.warmup)]
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                row = json.loads(line.strip().splitlines()[-1])
                row["round"] = rnd
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if not args.keep:
            s.stop()
    print("\n| mode | loop | reset | conc | binds/s | p50 ms | p99 ms | client CPU % | "
          "client µs/bind | slapd µs/bind | binds/s per round |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for mode, loop, reset, conc in CELLS:
        rows = [r for r in results if (r["mode"], r["loop"], r["reset"], r["conc"])
                == (mode, loop, bool(reset), conc)]

        def med(key: str, rows: list[dict[str, object]] = rows) -> float:
            return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

        per = " / ".join(f"{float(r['binds_s']):.0f}" for r in rows)  # type: ignore[arg-type]
        print(f"| {mode} | {loop} | {reset} | {conc} | {med('binds_s'):.0f} | "
              f"{med('p50_ms'):.3f} | {med('p99_ms'):.3f} | {med('client_cpu_pct'):.0f} | "
              f"{med('client_us_bind'):.1f} | {med('slapd_us_bind'):.1f} | {per} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["all", "cell"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir(), "zb-ldap-bench")))
    parser.add_argument("--keep", action="store_true", help="leave slapd running")
    parser.add_argument("--mode", choices=["aio", "ldap3"], default="aio")
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "-"], default="asyncio")
    parser.add_argument("--conc", type=int, default=1)
    parser.add_argument("--reset", type=int, default=0)
    parser.add_argument("--uri", default="")
    parser.add_argument("--slapd-pid", type=int, default=0)
    a = parser.parse_args()
    if a.what == "cell":
        cell(a)
    else:
        main(a)

"""How long can one callback hold the gateway's event loop? (the 10 ms question)

    .venv/bin/python -m bench.loop_blocking [SCENARIO] [CONNECTIONS] [SECONDS]

The loop-lag gauge in /metrics measures how late the loop wakes up, which under
saturation is mostly queueing and preemption by other processes on the same
two cores. This script answers the narrower question: it runs one gateway
worker on the pure-Python asyncio loop (uvloop cannot be instrumented), times
every callback in *thread CPU time* (so preemption does not count), separates
the garbage collector's pauses, and prints the maxima after a wrk run.
"""

from __future__ import annotations

import asyncio.events
import gc
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instrument(report_path: str) -> None:
    """Patch asyncio's Handle._run and hook the collector; write maxima at exit."""
    import atexit

    original = asyncio.events.Handle._run
    stats = {"callbacks": 0, "max_ms": 0.0, "max_without_gc_ms": 0.0, "over_10ms": 0,
             "over_10ms_without_gc": 0, "gc_max_ms": 0.0, "gc_full": 0, "gc_total_s": 0.0,
             "gc_young_max_ms": 0.0, "gc_full_pauses": [], "gc_over_10ms": [],
             "longest_callback": ""}
    started = time.monotonic()
    gc_started = [0.0]

    def run(self: asyncio.events.Handle) -> None:
        gc_before = stats["gc_total_s"]
        start = time.thread_time()
        original(self)
        took = (time.thread_time() - start) * 1000
        # (min: a SIGUSR1 reset during this callback must not make it look longer)
        without_gc = min(took, took - (stats["gc_total_s"] - gc_before) * 1000)
        stats["callbacks"] += 1
        stats["over_10ms"] += took > 10
        stats["over_10ms_without_gc"] += without_gc > 10
        stats["max_ms"] = max(stats["max_ms"], took)
        if without_gc > stats["max_without_gc_ms"]:
            stats["max_without_gc_ms"] = without_gc
            stats["longest_callback"] = repr(self)[:200]  # which one (names, no request data)

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.thread_time()
            return
        took = time.thread_time() - gc_started[0]
        stats["gc_total_s"] += took
        stats["gc_max_ms"] = max(stats["gc_max_ms"], took * 1000)
        full = info.get("generation") == 2
        stats["gc_full"] += full
        if full:  # when (s after start) and how long (ms): at start-up, under load, at exit
            stats["gc_full_pauses"].append((round(time.monotonic() - started, 1),
                                            round(took * 1000, 1)))
        else:
            stats["gc_young_max_ms"] = max(stats["gc_young_max_ms"], took * 1000)
        if took > 0.01:  # a long pause: which generation
            stats["gc_over_10ms"].append((info.get("generation"), round(took * 1000, 1)))

    fresh = {k: (list(v) if isinstance(v, list) else v) for k, v in stats.items()}

    def measure_from_now(signum: int, frame: object) -> None:
        """SIGUSR1 (sent after start-up and warm-up): count the measured window only."""
        for key, value in fresh.items():
            stats[key] = list(value) if isinstance(value, list) else value

    def report(*_: object) -> None:
        """SIGUSR2 (sent when wrk is done), or exit: the figures; only the first counts."""
        if not Path(report_path).exists():
            Path(report_path).write_text(json.dumps(stats))

    asyncio.events.Handle._run = run  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, measure_from_now)
    signal.signal(signal.SIGUSR2, report)
    atexit.register(report)


def serve(config: str, port: int, report_path: str) -> None:
    instrument(report_path)
    import uvicorn

    from bridge.app import create_app
    from bridge.logs import logging_config
    from bridge.settings import load

    uvicorn.run(create_app(load(Path(config))), host="127.0.0.1", port=port, loop="asyncio",
                access_log=False, log_config=logging_config("warning"))


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.run import PYTHON, SCENARIOS, Env, free_port, process, wrk
    from tests.ldap.slapd import Slapd

    key = sys.argv[1] if len(sys.argv) > 1 else "e"
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    workdir = Path(tempfile.mkdtemp(prefix="zb-loop-"))
    report = workdir / "callbacks.json"
    with Slapd(workdir / "slapd", bulk_users=1000) as slapd:
        env = Env(workdir, slapd, free_port(), free_port(), free_port())
        with process([PYTHON, "-m", "uvicorn", "bench.backend:app", "--port",
                      str(env.backend_port), "--log-level", "warning", "--no-access-log"],
                     workdir / "backend.log",
                     ready_url=f"http://127.0.0.1:{env.backend_port}/_stats"), \
             process([PYTHON, "-m", "bench.delayproxy", str(env.proxy_port), str(slapd.port),
                      "0.05"], workdir / "proxy.log"):
            config = workdir / "gateway.toml"
            config.write_text(SCENARIOS[key].config(env))
            port = free_port()
            gateway = subprocess.Popen([PYTHON, "-m", "bench.loop_blocking", "--serve",
                                        str(config), str(port), str(report)], cwd=ROOT)
            time.sleep(3)
            url = f"http://127.0.0.1:{port}/provision"
            users = {"BENCH_USERS": str(SCENARIOS[key].users)}
            wrk(url, 2, connections, users)
            gateway.send_signal(signal.SIGUSR1)  # start-up and warm-up do not count
            load = wrk(url, seconds, connections, users)
            gateway.send_signal(signal.SIGUSR2)  # the window ends with the load
            time.sleep(0.5)
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
    stats = json.loads(report.read_text())
    print(f"scenario {key}, {connections} connections, one worker on the asyncio loop: "
          f"{load.rps:,.0f} req/s")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(ROOT))
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())

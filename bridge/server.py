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

SIGHUP: the supervisor validates the file once (an invalid one is logged and
nothing changes) and passes the signal to every worker, which reloads it
itself (bridge/reload.py, `Reloader`). Workers never outlive the supervisor: the
kernel sends them SIGTERM when it dies (PR_SET_PDEATHSIG), and where that is
not available a thread watches the parent's pid. The workers' metrics meet in
a private folder that the supervisor creates and removes (bridge/metrics.py).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.settings import Settings

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


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """SIGTERM to this process when `parent` dies (uvicorn then stops gracefully)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):  # not Linux: watch the parent's pid instead

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(1)


def _read(config_path: str) -> str:
    """The file's text, or the ConfigError that `bridge.settings.load` would raise."""
    from bridge.config import ConfigError

    try:
        text = Path(config_path).read_text(encoding="utf-8")
        tomllib.loads(text)
    except OSError as exc:
        raise ConfigError([f"Cannot read configuration file {config_path}: "
                           f"{exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"Configuration file {config_path} is not UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{config_path}: not valid TOML: {exc}"]) from None
    return text


def _settings(config_path: str, text: str) -> Settings:
    """The configuration `text` of the file at `config_path` (for its relative paths)."""
    from bridge.settings import from_dict

    path = Path(config_path)
    return from_dict(tomllib.loads(text), base_dir=path.parent.resolve(), origin=path)


def _worker(config_path: str | None, config_text: str, options: dict[str, Any],
            parent: int) -> None:
    # a SIGHUP before the app's handler exists must not kill the worker, nor be lost: it
    # was blocked since the supervisor started this process, and is remembered from here
    from bridge.reload import hold_sighup

    hold_sighup()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    _die_with(parent)
    import uvicorn

    from bridge.app import create_app
    from bridge.settings import load_demo

    # the text the supervisor last validated: a worker restarted after an invalid edit of
    # the file serves what its siblings serve
    settings = _settings(config_path, config_text) if config_path else load_demo()
    try:
        sock = _listen(options["host"], options["port"])
    except OSError as exc:
        print(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror}",
              file=sys.stderr)
        sys.exit(1)
    app = create_app(settings, reload_from=Path(config_path) if config_path else None)
    config = uvicorn.Config(app, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(config_path: str | None, workers: int, options: dict[str, Any],
        metrics_listen: str = "") -> int:
    """Supervise `workers` workers; with `metrics_listen`, answer scrapes there (a thread)."""
    from bridge.config import ConfigError
    from bridge.metrics import MULTIPROC_ENV, serve_on, worker_exited

    context = multiprocessing.get_context("spawn")
    stopping = False
    reloads = 0
    # what workers start from: the file as last validated (cli.py validated it at start)
    config_text = Path(config_path).read_text(encoding="utf-8") if config_path else ""
    metrics_dir = tempfile.mkdtemp(prefix="zoiper-bridge-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the workers
    if metrics_listen:
        try:
            serve_on(metrics_listen)  # reads the workers' files, like a worker's /metrics
        except OSError as exc:
            print(f"cannot serve metrics on {metrics_listen}: {exc.strerror}", file=sys.stderr)
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            return 1

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        process = context.Process(target=_worker,
                                  args=(config_path, config_text, options, os.getpid()),
                                  daemon=False)
        # A spawned worker starts a new interpreter, where SIGHUP would end it until its
        # handler exists (a reload during a worker's start-up stopped the whole gateway). It
        # starts with SIGHUP blocked instead (the mask survives exec): one sent meanwhile
        # stays pending until the worker can remember it (_worker, bridge/reload.py).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        return process, time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def hup(signum: int, frame: object) -> None:
        nonlocal reloads
        reloads += 1

    handled = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: hup}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handled.items()}
    procs = [start() for _ in range(workers)]
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            if reloads:
                reloads = 0
                try:
                    if config_path:
                        text = _read(config_path)
                        _settings(config_path, text)
                        config_text = text
                except ConfigError as exc:
                    print(f"configuration {config_path} not reloaded: "
                          f"{len(exc.problems)} problem(s):", file=sys.stderr)
                    for problem in exc.problems:
                        print(f"  - {problem}", file=sys.stderr)
                else:
                    for process, _ in procs:
                        if process.is_alive() and process.pid is not None:
                            os.kill(process.pid, signal.SIGHUP)
            for i, (process, started) in enumerate(procs):
                if process.is_alive():
                    continue
                if process.pid is not None:
                    worker_exited(process.pid)
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
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status

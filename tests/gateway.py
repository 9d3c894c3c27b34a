"""Run the real gateway (`zoiper-bridge serve`) in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, config: Path | None, workdir: Path, env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), new_session: bool = False) -> None:
        self.config = config
        self.new_session = new_session  # its own process group, to kill it whole
        self.port = free_port()
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Gateway:
        args = [sys.executable, "-m", "bridge.cli", "serve", "--port", str(self.port),
                *self.extra_args]
        if self.config is not None:
            args += ["--config", str(self.config)]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env,
                                        start_new_session=self.new_session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n"
                                   + self.output())
            try:  # a TCP connect: the gateway may speak HTTP or HTTPS
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("gateway did not start:\n" + self.output())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

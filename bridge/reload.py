"""SIGHUP: read the configuration again and serve it without dropping a request.

Each configuration is served by one generation (bridge/app.py `Generation`:
settings, gateway, routes, backends). A reload validates the file, builds and
starts the next generation, swaps the router's routes in one step and retires
the old generation once the requests it took are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from starlette.routing import BaseRoute, Router

from bridge.config import ConfigError
from bridge.logs import set_credential_params
from bridge.settings import Settings, load

logger = logging.getLogger("bridge.reload")


class Generation(Protocol):
    """What the reloader needs of one configuration being served."""

    settings: Settings
    routes: list[BaseRoute]
    token_paths: Any
    quiet_paths: set[str]

    async def start(self) -> None: ...

    async def close(self, grace: float) -> None: ...

    def successor(self, settings: Settings) -> Generation: ...

    def trusts(self, peer: str | None) -> bool: ...


# [server] keys a reload cannot apply to a running process: they need a restart.
RESTART_KEYS = ("host", "port", "workers", "tls_certificate", "tls_key", "access_log",
                "log_level", "log_format", "header_timeout", "idle_timeout",
                "max_target_length", "max_header_size", "max_headers", "max_connections",
                "max_connections_per_address", "max_queue_time", "connection_cap_exempt",
                "metrics_listen")

_early_hup = [False]  # a SIGHUP came before the app's handler existed


def hold_sighup() -> None:
    """Until the app's handler exists, a SIGHUP is remembered, not lost (and kills nothing).

    A worker starting its backends when the supervisor forwards a SIGHUP would
    otherwise ignore it and serve the old file while its siblings serve the new one.
    """
    def remember(signum: int, frame: object) -> None:
        _early_hup[0] = True

    signal.signal(signal.SIGHUP, remember)


class Reloader:
    """The generation being served, and SIGHUP: validate, build, start, swap, retire.

    An invalid file or a backend that fails to start is logged and changes
    nothing. The swap is one assignment of the router's routes (no await in
    between), so each request is served wholly by one configuration.
    """

    def __init__(self, first: Generation, path: Path | None,
                 masked: list[str], quiet: set[str]) -> None:
        self.router: Router | None = None  # the application's, once it exists
        self.current = first
        self.path = path
        self.masked, self.quiet = masked, quiet
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[Any]] = set()

    async def reload(self) -> bool:
        """Serve the configuration file as it is now; False (and a log line) if it cannot."""
        async with self._lock:
            if self.path is None:
                logger.warning("reload requested, but no configuration file to read again")
                return False
            try:
                settings = await asyncio.to_thread(load, self.path)
            except ConfigError as exc:
                logger.error("configuration %s not reloaded: %d problem(s): %s; still serving "
                             "the previous one", self.path, len(exc.problems),
                             "; ".join(exc.problems))
                return False
            old = self.current
            changed = [k for k in RESTART_KEYS
                       if getattr(settings.server, k) != getattr(old.settings.server, k)]
            if changed:
                logger.warning("[server] %s changed: applied at the next restart, not by a "
                               "reload", ", ".join(changed))
            new = old.successor(settings)
            try:
                await new.start()
            except Exception as exc:
                logger.error("configuration %s not reloaded: its backends did not start (%s); "
                             "still serving the previous one", self.path,
                             getattr(exc, "detail", "") or type(exc).__name__)
                return False
            set_credential_params(sorted({*credential_params(old.settings),
                                          *credential_params(settings)}))
            # -- the swap: no await from here to the end of the block --
            self.current = new
            if self.router is not None:
                self.router.routes = new.routes
            self.masked[:] = new.token_paths
            self.quiet.clear()
            self.quiet.update(new.quiet_paths)
            task = asyncio.create_task(old.close(old.settings.server.deadline + 5))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            logger.info("configuration reloaded from %s", self.path)
            return True

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Start the first generation, reload on SIGHUP, close whatever is current at the end."""
        await self.current.start()
        loop = asyncio.get_running_loop()
        hup = self.path is not None
        if hup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            except (ValueError, RuntimeError):  # not the main thread (an in-process test)
                hup = False
            if hup and _early_hup[0]:  # the file may have changed while this one started
                _early_hup[0] = False
                self._on_hup()
        try:
            yield
        finally:
            if hup:  # back to ignoring it (not the default: ending the process)
                loop.remove_signal_handler(signal.SIGHUP)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            # a reload under way finishes (it may retire one more generation) before the end
            while self._retiring:
                await asyncio.gather(*self._retiring, return_exceptions=True)
            async with self._lock:
                await self.current.close(self.current.settings.server.deadline)

    def _on_hup(self) -> None:
        task = asyncio.create_task(self.reload())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def credential_params(settings: Settings) -> list[str]:
    """The query parameters that carry passwords: no log line may show their values."""
    return sorted({profile.query.password for profile in settings.profiles})

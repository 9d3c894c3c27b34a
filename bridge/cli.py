"""zoiper-bridge serve | check-config | render | hash-password | token"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging.config
import sys
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

from bridge.config import ConfigError
from bridge.settings import Settings, load, load_demo

DEMO_WARNING = """\
WARNING: no --config given, serving the built-in DEMO configuration.
         Demo user: alice / wonderland. Do not expose this to the internet.
"""


def _load(path: str | None) -> Settings:
    return load(Path(path)) if path else load_demo()


def _report(exc: ConfigError, path: str | None) -> int:
    print(f"Configuration {path or '(demo)'} has {len(exc.problems)} problem(s):",
          file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bridge.app import create_app
    from bridge.listener import raise_file_limit, uvicorn_options
    from bridge.logs import logging_config
    from bridge.reload import credential_params

    try:
        settings = _load(args.config)
    except ConfigError as exc:
        return _report(exc, args.config)
    if settings.demo:
        print(DEMO_WARNING, file=sys.stderr, end="")
    server = settings.server
    # every log line is scrubbed of these parameters' values, whatever logged it
    log_config = logging_config(server.log_level, credential_params(settings), server.log_format)
    if warning := raise_file_limit(server.listener):
        print(warning, file=sys.stderr)
    workers = args.workers or server.workers
    if workers > 1 and settings.state.backend == "memory":
        print(f"WARNING: {workers} workers with [state] backend = \"memory\": each worker "
              f"counts attempts on its own, so the limits allow up to {workers} times as "
              "many. Use backend = \"redis\" to share them.", file=sys.stderr)
    common = dict(
        host=args.host or server.host,
        port=args.port or server.port,
        log_config=log_config,
        access_log=False,  # uvicorn's prints query strings, i.e. passwords
        proxy_headers=False,
        server_header=False,
        ssl_certfile=server.tls_certificate,
        ssl_keyfile=server.tls_key,
        **uvicorn_options(server.listener, settings.errors.messages,
                          settings.errors.retry_after, tls=server.tls_certificate is not None),
    )
    config_path = Path(args.config).resolve() if args.config else None
    if workers > 1:
        from bridge.server import run

        return run(str(config_path) if config_path else None, workers, common,
                   metrics_listen=server.metrics_listen)
    if server.metrics_listen and not _serve_metrics(server.metrics_listen):
        return 1
    # SIGHUP reloads (installed by the app's lifespan); until then it is remembered
    from bridge.reload import hold_sighup

    hold_sighup()
    uvicorn.run(create_app(settings, reload_from=config_path), **common)
    return 0


def _serve_metrics(listen: str) -> bool:
    """[server] metrics_listen: the metrics there too; False (said why) if it cannot listen."""
    from bridge.metrics import serve_on

    try:
        serve_on(listen)
    except OSError as exc:
        print(f"cannot serve metrics on {listen}: {exc.strerror}", file=sys.stderr)
        return False
    return True


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = load(Path(args.path))
    except ConfigError as exc:
        return _report(exc, args.path)
    if args.connect:
        failed = asyncio.run(_check_backends(settings))
        if failed:
            print(f"{args.path}: valid, but {failed} backend(s) are not ready", file=sys.stderr)
            return 1
    print(f"{args.path}: OK")
    return 0


async def _check_backends(settings: Settings, timeout: float = 10.0) -> int:
    """Start every backend and ask it whether it can serve; print one line each."""
    from bridge.runtime import Runtime, readiness

    runtime = Runtime(settings)
    failed = 0
    async with contextlib.AsyncExitStack() as stack:
        for store in runtime.stores:
            stack.push_async_callback(store.close)
        for where, backend in runtime.described_backends():
            try:
                async with asyncio.timeout(timeout):
                    await backend.start()
                    stack.push_async_callback(backend.close)
                    await backend.ready()
            except Exception as exc:  # any failure is this backend's, reported plainly
                failed += 1
                detail = getattr(exc, "detail", "") or type(exc).__name__
                print(f"  - [{where}] NOT READY: {detail}", file=sys.stderr)
            else:
                print(f"  - [{where}] ready")
        if settings.tokens is not None:  # started as serve starts it (creating its table)
            from bridge.tokens.service import TokenService

            tokens = TokenService(settings)
            try:
                async with asyncio.timeout(timeout):
                    await tokens.start()
                    stack.push_async_callback(tokens.close)
                    await tokens.store.ready()
            except Exception as exc:  # unreachable, refused, timed out: reported plainly
                failed += 1
                detail = getattr(exc, "detail", "") or type(exc).__name__
                print(f"  - [tokens] NOT READY: {detail}", file=sys.stderr)
            else:
                print("  - [tokens] ready")
        if settings.state.backend == "redis":  # a shared store: reachable, whatever on_failure
            if why := await readiness(runtime.stores[0], timeout):
                failed += 1
                print(f"  - [state] NOT READY: {why}", file=sys.stderr)
            else:
                print("  - [state] ready")
    return failed


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def cmd_render(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlencode

    from bridge.errors import BridgeError
    from bridge.logs import logging_config
    from bridge.params import credentials_from_query

    try:
        settings = _load(args.config)
    except ConfigError as exc:
        return _report(exc, args.config)
    profiles = {p.name: p for p in settings.profiles}
    if args.profile not in profiles:
        print(f"No profile {args.profile!r}; the configuration has: {', '.join(profiles)}",
              file=sys.stderr)
        return 2
    profile = profiles[args.profile]
    logging.config.dictConfig(logging_config("warning"))
    password = _read_password(f"Password for {args.username}: ")
    # The same parser as the endpoint, so render refuses what the endpoint refuses (for a
    # profile taking HTTP Basic, the query string form of the same credentials).
    q = profile.query.model_copy(update={"credentials": "query"})
    query = urlencode({q.username: args.username, q.password: password}, quote_via=quote)
    from bridge.runtime import Runtime

    runtime = Runtime(settings)

    async def run() -> tuple[int, bytes]:
        async with runtime.running():
            try:
                credentials = credentials_from_query(query.encode(), q)
                route = runtime.route(profile, profile.path, args.host, credentials.username)
                credentials = replace(credentials, username=route.username)
                return 200, await route.provisioner.provision(credentials, route.pipeline)
            except Exception as exc:
                status, _, _ = profile.errors.describe(exc)
                detail = exc.detail if isinstance(exc, BridgeError) else type(exc).__name__
                print(f"HTTP {status}: {detail}", file=sys.stderr)
                return status, bytes(profile.errors.response(exc).body)

    status, body = asyncio.run(run())
    sys.stdout.write(body.decode("utf-8"))
    return 0 if status == 200 else 1


def cmd_hash(args: argparse.Namespace) -> int:
    from bridge.passwords import hash_password

    password = _read_password("Password: ")
    if sys.stdin.isatty() and getpass.getpass("Again: ") != password:
        print("The passwords differ.", file=sys.stderr)
        return 1
    if not password:
        print("An empty password cannot be hashed.", file=sys.stderr)
        return 1
    if args.md5:
        from bridge.auth.file import md5_hex

        password = md5_hex(password)
    print(hash_password(password, args.cost))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zoiper-bridge")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class _Epilog(TypedDict):
    epilog: str
    formatter_class: type[argparse.HelpFormatter]


def _example(*lines: str) -> _Epilog:
    """argparse keywords for a command's epilog: examples shown as written."""
    return {"epilog": "example:\n" + "\n".join(f"  {line}" for line in lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoiper-bridge", description="Provisioning gateway for Zoiper phones.",
        **_example("zoiper-bridge check-config /etc/zoiper-bridge/config.toml",
                   "zoiper-bridge serve --config /etc/zoiper-bridge/config.toml",
                   "zoiper-bridge <command> --help   (an example for each command)"))
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve", help="run the gateway (the built-in demo without --config)",
        description="Run the gateway. SIGHUP reloads the configuration file (an invalid "
                    "one is logged and the running configuration kept); SIGTERM stops "
                    "after the requests in flight.",
        **_example("zoiper-bridge serve --config /etc/zoiper-bridge/config.toml --workers 2",
                   "kill -HUP $(pidof -s zoiper-bridge)   # reload"))
    s.add_argument("--config", help="configuration file (TOML)")
    s.add_argument("--host", help="address to listen on (default from config, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default from config, 8080)")
    s.add_argument("--workers", type=int, help="worker processes (default from config, 1)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser(
        "check-config", help="validate a configuration file and exit",
        description="Validate a configuration file: every problem is listed (exit 2).",
        **_example("zoiper-bridge check-config --connect /etc/zoiper-bridge/config.toml"))
    c.add_argument("path")
    c.add_argument("--connect", action="store_true",
                   help="also start every backend and check that it can serve (exit 1 if not)")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser(
        "render", help="print what a user would receive (password on stdin)",
        description="Print the document a user would receive, through the real backends.",
        **_example("echo \"$PASSWORD\" | zoiper-bridge render --config config.toml "
                   "--username alice"))
    r.add_argument("--config", help="configuration file (TOML); the demo without it")
    r.add_argument("--username", required=True)
    r.add_argument("--profile", default="default",
                   help="which profile answers (default: the top-level one)")
    r.add_argument("--host", help="the Host the phone would ask (for tenants chosen by host)")
    r.set_defaults(func=cmd_render)

    h = sub.add_parser(
        "hash-password", help="print a password hash for the users file",
        description="Print a scrypt hash for the users file (password asked twice on a "
                    "terminal, else read from stdin).",
        **_example("zoiper-bridge hash-password          # asks for the password"))
    h.add_argument("--cost", type=int, default=15, choices=range(10, 23), metavar="LOG2_N",
                   help="scrypt cost as log2(N), 10-22 (default 15)")
    h.add_argument("--md5", action="store_true",
                   help="hash the password's MD5, for the users file's password_md5 (apps "
                        "that send an MD5 of the password, e.g. Zoiper5 Desktop)")
    h.set_defaults(func=cmd_hash)

    from bridge.tokens.cli import register as register_token_commands

    register_token_commands(sub)  # zoiper-bridge token issue | list | revoke
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

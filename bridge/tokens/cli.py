"""`zoiper-bridge token issue | list | revoke`: the operator's side of onboarding tokens.

The commands open the configured token store directly (the gateway need not
run): SQLite's file, PostgreSQL or Redis, as `[tokens]` says. A token is
printed once, by `issue`; nothing can show it again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.config import ConfigError
from bridge.errors import BridgeError
from bridge.tokens.config import parse_duration

if TYPE_CHECKING:
    from bridge.tokens.service import Issued, TokenService
    from bridge.tokens.store import Ticket


def register(sub: Any) -> None:
    """Add `token` and its subcommands to the main parser's subparsers."""
    t = sub.add_parser("token", help="issue, list and revoke one-time onboarding tokens (QR)")
    commands = t.add_subparsers(dest="token_command", required=True)

    i = commands.add_parser("issue", help="issue a token; print it, its link and QR code")
    i.add_argument("--config", required=True, help="configuration file (TOML) with [tokens]")
    i.add_argument("--username", required=True, help="the user the token provisions")
    i.add_argument("--profile", default="default", help="whose token endpoint accepts it")
    i.add_argument("--tenant", help="the tenant (default: by the username's @domain)")
    i.add_argument("--ttl", type=_duration, help="lifetime: 90s, 30m, 24h, 7d (default "
                                                  "[tokens] ttl, 24h)")
    i.add_argument("--uses", type=int, help="how many times it can be used (default 1)")
    i.add_argument("--qr-dir", type=Path, help="write FINGERPRINT.png and .svg here")
    i.add_argument("--terminal", action="store_true", help="draw the QR code in the terminal")
    i.set_defaults(func=cmd_issue)

    ls = commands.add_parser("list", help="list tokens by fingerprint (never the token)")
    ls.add_argument("--config", required=True)
    ls.add_argument("--username")
    ls.add_argument("--all", action="store_true", help="also spent, expired and revoked ones")
    ls.set_defaults(func=cmd_list)

    r = commands.add_parser("revoke", help="revoke one token, or all of a user's")
    r.add_argument("--config", required=True)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("fingerprint", nargs="?", help="as `token list` shows it")
    which.add_argument("--username", help="revoke every live token of this user")
    r.set_defaults(func=cmd_revoke)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace,
         work: Callable[[TokenService], Awaitable[int]]) -> int:
    from bridge.logs import logging_config
    from bridge.settings import load
    from bridge.tokens.service import TokenError, TokenService

    try:
        settings = load(Path(args.config))
    except ConfigError as exc:
        print(f"Configuration {args.config} has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    if settings.tokens is None:
        print(f"{args.config} has no [tokens] table: tokens are not configured",
              file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config("warning"))
    service = TokenService(settings)

    async def run() -> int:
        try:
            await service.start()
            return await work(service)
        except (TokenError, BridgeError) as exc:
            print(f"error: {getattr(exc, 'detail', '') or exc}", file=sys.stderr)
            return 1
        finally:
            await service.close()

    return asyncio.run(run())


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def cmd_issue(args: argparse.Namespace) -> int:
    from bridge.tokens.service import TokenError

    async def work(service: TokenService) -> int:
        if args.qr_dir is not None or args.terminal:
            profile, _, _ = service.target(args.profile, args.username, args.tenant)
            if not service.link(profile, "x"):
                raise TokenError("no link for the QR code: set [tokens] link (the landing "
                                 "URL with {token})")
        issued = await service.issue(args.username, args.profile, tenant=args.tenant,
                                     ttl=args.ttl, uses=args.uses)
        _print_issued(issued, args)
        return 0

    return _run(args, work)


def _print_issued(issued: Issued, args: argparse.Namespace) -> None:
    from bridge.tokens import qr

    t = issued.ticket
    print(f"token        {issued.token}")
    if issued.link:
        print(f"link         {issued.link}")
    print(f"fingerprint  {t.fingerprint}")
    print(f"user         {t.username} (profile {t.profile}, {t.pipeline})")
    print(f"expires      {_when(t.expires)} ({t.uses} use{'s' if t.uses > 1 else ''})")
    if args.qr_dir is not None:
        png, svg = qr.write(issued.link, args.qr_dir, t.fingerprint)
        print(f"qr           {png} {svg}")
    if args.terminal:
        print(qr.terminal(issued.link))


def _row(t: Ticket) -> str:
    return (f"{t.fingerprint:11} {t.status():8} {f'{t.used}/{t.uses}':6} {_when(t.expires)}  "
            f"{t.profile:12} {t.username} ({t.pipeline})")


def cmd_list(args: argparse.Namespace) -> int:
    async def work(service: TokenService) -> int:
        tickets = [t for t in await service.tickets(args.username)
                   if args.all or t.status() == "live"]
        print(f"{'fingerprint':11} {'status':8} {'uses':6} {'expires':25}{'profile':13}user")
        for t in tickets:
            print(_row(t))
        return 0

    return _run(args, work)


def cmd_revoke(args: argparse.Namespace) -> int:
    async def work(service: TokenService) -> int:
        for t in await service.revoke(args.fingerprint, args.username):
            print(f"revoked {t.fingerprint} ({t.username})")
        return 0

    return _run(args, work)

"""A served Zoiper account, turned into the configuration of a real SIP user agent (baresip).

The translator reads the options the way Zoiper does:

    username                the user part of the address of record (sip:username@domain)
    password                the digest password
    SIP_domain              host[:port]: the AOR's domain; where REGISTER goes when no
                            outbound proxy is used
    SIP_auth_username       the digest username when set (Android: whenever it is set;
                            iOS/Desktop: only with SIP_use_auth_username = true), else username
    SIP_transport_type      udp (Zoiper's default) | tcp | tls
    SIP_use_outbound_proxy  true: REGISTER goes to SIP_outbound_proxy (host[:port])
    sip_options.port        Desktop: the local SIP port, unless use_random_port (the default)

and nothing else: an option the agent would need but the document lacks is not
filled in from elsewhere, so a wrong document fails to register.

baresip (Debian's baresip-core, 1.0.0) registers over UDP, TCP and TLS; tests/sip/sipp.py
renders the same AgentConfig for SIPp (UDP and TCP: Debian 12's build has no TLS).
baresip has no "register once and exit" mode, so
`register()` runs it, reads its log until the registration's outcome line, lets the
caller look at the registrar while the binding exists, and stops it. baresip 1.0.0
does not verify the server's TLS certificate (`sip_cafile` is loaded, but a wrong CA is
not refused); the tests check Kamailio's certificate themselves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

MODULE_DIR = Path("/usr/lib/baresip/modules")
TRANSPORTS = ("udp", "tcp", "tls")
T = TypeVar("T")


def missing() -> str | None:
    if shutil.which("baresip") is None:
        return "baresip not installed (Debian: baresip-core)"
    if not (MODULE_DIR / "account.so").exists():
        return f"baresip's account module not found under {MODULE_DIR}"
    return None


@dataclass(frozen=True)
class AgentConfig:
    """What the user agent is told: one account and where to listen."""

    user: str
    domain: str  # host[:port]
    transport: str
    auth_user: str
    password: str
    outbound: str | None  # host[:port] or None: REGISTER goes to the domain
    local_port: int = 0  # 0: any

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"


class NotRegistrable(ValueError):
    """The document cannot even be given to the agent (no username, unknown transport)."""


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def translate(account: Mapping[str, Any], options: Mapping[str, Any] | None = None, *,
              auth_flag: bool = False) -> AgentConfig:
    """One `<account>` of a parsed document (bridge.zoiper.document.parse_config) as an
    AgentConfig. `auth_flag`: the dialect has SIP_use_auth_username (iOS, Desktop), so
    SIP_auth_username counts only when that flag is true. `options`: the document's
    top-level sections (Desktop's sip_options)."""
    try:
        user, domain = str(account["username"]), str(account["SIP_domain"])
    except KeyError as exc:
        raise NotRegistrable(f"the account has no {exc.args[0]}") from None
    transport = str(account.get("SIP_transport_type", "udp"))
    if transport not in TRANSPORTS:
        raise NotRegistrable(f"transport {transport!r} is not SIP over {TRANSPORTS}")
    auth_user = user
    if account.get("SIP_auth_username") and (
            not auth_flag or _flag(account.get("SIP_use_auth_username", False))):
        auth_user = str(account["SIP_auth_username"])
    outbound = None
    if _flag(account.get("SIP_use_outbound_proxy", False)):
        if not account.get("SIP_outbound_proxy"):
            raise NotRegistrable("SIP_use_outbound_proxy without SIP_outbound_proxy")
        outbound = str(account["SIP_outbound_proxy"])
    local_port = 0
    sip_options = (options or {}).get("sip_options") or {}
    if sip_options.get("port") and not _flag(sip_options.get("use_random_port", True)):
        local_port = int(sip_options["port"])
    return AgentConfig(user=user, domain=domain, transport=transport, auth_user=auth_user,
                       password=str(account.get("password", "")), outbound=outbound,
                       local_port=local_port)


def _quoted(value: str) -> str:
    if any(c in value for c in '"\r\n'):
        raise NotRegistrable("a value baresip's account file cannot quote")
    return f'"{value}"'


def accounts_line(config: AgentConfig) -> str:
    """The account in baresip's `accounts` file syntax."""
    params = [f"auth_user={_quoted(config.auth_user)}", f"auth_pass={_quoted(config.password)}",
              "regint=600"]
    if config.outbound is not None:
        params.append(f'outbound="sip:{config.outbound};transport={config.transport}"')
    return f"<{config.aor};transport={config.transport}>;" + ";".join(params) + "\n"


def write(folder: Path, config: AgentConfig, ca_file: Path) -> Path:
    """A baresip configuration folder with this one account; no audio, no video."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_text(
        f"module_path {MODULE_DIR}\n"
        f"sip_listen 127.0.0.1:{config.local_port}\n"
        f"sip_cafile {ca_file}\n"
        "module_app account.so\n")
    (folder / "accounts").write_text(accounts_line(config))
    return folder


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Outcome:
    registered: bool
    line: str  # baresip's own line saying so
    log: str  # everything it printed
    exit_code: int
    seen: Any = None  # what `while_registered` returned


def register(config: AgentConfig, folder: Path, ca_file: Path,
             while_registered: Callable[[], T] | None = None,
             timeout: float = 10.0) -> Outcome:
    """Run baresip with `config` until it says how its REGISTER went; call
    `while_registered` (e.g. to read the registrar's location table) while the binding
    exists, then stop the agent (which unregisters) and wait for it to exit."""
    write(folder, config, ca_file)
    # -t: a hard bound on its life, should the outcome line never come
    process = subprocess.Popen(["baresip", "-f", str(folder), "-t", str(int(timeout) + 5)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace")
    assert process.stdout is not None
    lines: list[str] = []
    done = threading.Event()
    verdict: list[tuple[bool, str]] = []
    ok = re.compile(rf"^{re.escape(config.user)}@\S+: \{{\d+/{config.transport}/v4\}} "
                    r"200 OK", re.IGNORECASE)
    failed = re.compile(r"^reg: sip:\S+: ")

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = _ANSI.sub("", raw).rstrip()
            lines.append(line)
            if not verdict and (ok.search(line) or failed.search(line)):
                verdict.append((bool(ok.search(line)), line))
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done.wait(timeout)
    seen = None
    if verdict and verdict[0][0] and while_registered is not None:
        seen = while_registered()
    process.terminate()
    try:
        exit_code = process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        exit_code = process.wait()
    reader.join(5)
    registered, line = verdict[0] if verdict else (False, "no outcome line (see the log)")
    return Outcome(registered, line, "\n".join(lines), exit_code, seen)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()

"""The same translated account (tests/sip/agent.py AgentConfig), as a SIPp scenario.

SIPp is a second, independent SIP stack whose verdict is its exit status: 0 when the
scenario ran to its end (REGISTER, 401, REGISTER with digest credentials from `-au`/`-ap`,
200, a pause while the binding exists, un-REGISTER, 200), 1 when a step got something
else (a second 401, a 403), other codes for fatal errors (a refused connection). Debian
12's SIPp (package sip-tester) is built without TLS, so TLS accounts are baresip's only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sip.agent import AgentConfig, NotRegistrable

TRANSPORT_FLAGS = {"udp": "u1", "tcp": "t1"}  # "l1" (TLS) is not in Debian's build
PAUSE_MS = 800  # registered for this long: the test reads the location table meanwhile


def missing() -> str | None:
    return None if shutil.which("sipp") else "sipp not installed (Debian: sip-tester)"


def _register(config: AgentConfig, cseq: int, expires: int, auth: bool) -> str:
    aor = f"sip:{config.user}@{config.domain}"
    headers = [
        f"REGISTER sip:{config.domain} SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "Max-Forwards: 70",
        f"From: <{aor}>;tag=[pid]SIPpTag[call_number]",
        f"To: <{aor}>",
        "Call-ID: [call_id]",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{config.user}@[local_ip]:[local_port];transport=[transport]>",
        *(["[authentication]"] if auth else []),  # digest from -au/-ap and the last 401
        f"Expires: {expires}",
        "User-Agent: sipp",
        "Content-Length: 0",
    ]
    message = "\n".join(headers)
    return f'  <send retrans="500"><![CDATA[\n{message}\n\n]]></send>\n'


def scenario(config: AgentConfig) -> str:
    """REGISTER → 401 → REGISTER with digest auth → 200; pause; un-REGISTER → 200."""
    if any(c in config.user + config.domain for c in "<>]&\"\r\n "):
        raise NotRegistrable("a user or domain SIPp's scenario cannot carry")
    return ('<?xml version="1.0" encoding="UTF-8" ?>\n<scenario name="register">\n'
            + _register(config, 1, 60, auth=False)
            + '  <recv response="401" auth="true"/>\n'
            + _register(config, 2, 60, auth=True)
            + '  <recv response="200"/>\n'
            + f'  <pause milliseconds="{PAUSE_MS}"/>\n'
            + _register(config, 3, 0, auth=True)
            + '  <recv response="200"/>\n</scenario>\n')


def command(config: AgentConfig, scenario_file: Path, folder: Path) -> list[str]:
    """The sipp command line for one registration of `config`."""
    if config.transport not in TRANSPORT_FLAGS:
        raise NotRegistrable(f"Debian's sipp has no {config.transport.upper()} transport")
    remote = config.outbound or config.domain
    return ["sipp", "-sf", str(scenario_file), "-t", TRANSPORT_FLAGS[config.transport],
            "-au", config.auth_user, "-ap", config.password, "-s", config.user,
            "-i", "127.0.0.1", "-p", str(config.local_port), "-m", "1", "-timeout", "10s",
            "-trace_msg", "-message_file", str(folder / "messages.log"),
            "-trace_err", "-error_file", str(folder / "errors.log"), remote]


@dataclass
class SippOutcome:
    exit_code: int
    messages: str  # every SIP message sent and received
    errors: str
    seen: Any = None  # the first non-empty answer of `while_running`


def register(config: AgentConfig, folder: Path,
             while_running: Callable[[], Any] | None = None) -> SippOutcome:
    """Run the scenario; ask `while_running` (e.g. the location table) until it answers
    something, while sipp runs."""
    folder.mkdir(parents=True, exist_ok=True)
    scenario_file = folder / "register.xml"
    scenario_file.write_text(scenario(config))
    with (folder / "screen.log").open("wb") as screen:
        process = subprocess.Popen(command(config, scenario_file, folder), cwd=folder,
                                   stdout=screen, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        seen = None
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            if while_running is not None and not seen:
                seen = while_running()
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        exit_code = process.wait()

    def read(name: str) -> str:
        path = folder / name
        return path.read_text(errors="replace") if path.exists() else ""

    return SippOutcome(exit_code, read("messages.log"), read("errors.log"), seen)

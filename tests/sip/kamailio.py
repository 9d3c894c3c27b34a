# ruff: noqa: S608  (test rows written as SQL literals by _lit(); the gateway itself only binds)
"""A private Kamailio registrar on loopback, its users in a scratch PostgreSQL database.

Kamailio runs in the foreground as a child process (`kamailio -DD -E`) with a
generated kamailio.cfg: UDP, TCP and TLS listeners on free loopback ports, REGISTER
handled with digest authentication against the `subscriber` table (auth_db,
plaintext `password` column), the registration stored in the `location` table
(usrloc db_mode 1, write-through) so a test reads what the registrar accepted.

A digest username that differs from the To user is accepted only when the `uri`
table says so (uri_db `check_to()`, Kamailio's own mechanism for "this auth ID may
register that AOR"); otherwise they must be equal. Everything else is answered 405:
no dialogs, no NAT handling, no relaying.

The tables are made from the SQL files the Debian package ships
(/usr/share/kamailio/postgres/*-create.sql), so they are Kamailio's published schema
for this version, not a copy of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.sql.servers import Scratch

SCHEMA_DIR = Path("/usr/share/kamailio/postgres")
SCHEMA_FILES = ("standard", "auth_db", "usrloc", "uri_db")
MODULES = ("sl", "pv", "maxfwd", "textops", "xlog", "db_postgres", "usrloc", "registrar",
           "auth", "auth_db", "uri_db", "tls")
DB_MODULE = "db_postgres.so"
TLS_MODULE = "tls.so"


def _module_dir() -> Path | None:
    candidates = [*sorted(Path("/usr/lib").glob("*/kamailio/modules")),
                  Path("/usr/lib/kamailio/modules")]
    for candidate in candidates:
        if (candidate / "registrar.so").exists():
            return candidate
    return None


def missing() -> str | None:
    """Why Kamailio cannot run here, or None."""
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        return "kamailio not installed (Debian: kamailio)"
    modules = _module_dir()
    if modules is None:
        return "kamailio modules not found (Debian: kamailio)"
    if not (modules / DB_MODULE).exists():
        return "kamailio's PostgreSQL module missing (Debian: kamailio-postgres-modules)"
    if not (modules / TLS_MODULE).exists():
        return "kamailio's TLS module missing (Debian: kamailio-tls-modules)"
    if not all((SCHEMA_DIR / f"{name}-create.sql").exists() for name in SCHEMA_FILES):
        return f"kamailio's PostgreSQL schema not found under {SCHEMA_DIR}"
    return None


def schema_sql() -> str:
    return "\n".join((SCHEMA_DIR / f"{name}-create.sql").read_text() for name in SCHEMA_FILES)


def free_port(kind: int) -> int:
    """A loopback port free for `kind` (SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_both() -> int:
    """A port free for UDP and TCP alike, so a wrong transport finds nobody there."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


@dataclass(frozen=True)
class Registration:
    """One row of Kamailio's location table."""

    username: str
    domain: str
    contact: str
    socket: str
    user_agent: str


class Kamailio:
    def __init__(self, folder: Path, db: Scratch, cert: Path, key: Path) -> None:
        self.folder = folder
        self.db = db
        self.cert, self.key = cert, key
        self.udp_port = free_both()
        self.tcp_port = free_port(socket.SOCK_STREAM)
        self.tls_port = free_port(socket.SOCK_STREAM)
        self.log_path = folder / "kamailio.log"
        self.config = folder / "kamailio.cfg"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def db_url(self) -> str:
        # trust authentication on loopback: the role's password is not needed (and would
        # need escaping Kamailio's URL parser does not do)
        return f"postgres://{self.db.name}@127.0.0.1:5432/{self.db.name}"

    def port(self, transport: str) -> int:
        return {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}[transport]

    def write_config(self) -> None:
        loads = "\n".join(f'loadmodule "{name}.so"' for name in MODULES)
        self.config.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
enable_tls=yes
listen=udp:127.0.0.1:{self.udp_port}
listen=tcp:127.0.0.1:{self.tcp_port}
listen=tls:127.0.0.1:{self.tls_port}
mpath="{_module_dir()}/"

{loads}

modparam("usrloc", "db_url", "{self.db_url}")
modparam("usrloc", "db_mode", 1)
modparam("usrloc", "use_domain", 1)
modparam("auth_db", "db_url", "{self.db_url}")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "use_domain", 1)
modparam("uri_db", "db_url", "{self.db_url}")
modparam("uri_db", "use_uri_table", 1)
modparam("uri_db", "db_table", "uri")
modparam("tls", "certificate", "{self.cert}")
modparam("tls", "private_key", "{self.key}")
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "verify_certificate", 0)
modparam("tls", "require_certificate", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (!is_method("REGISTER")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if (!www_authorize("$td", "subscriber")) {{
        xlog("L_NOTICE", "zb: challenge $tu over $proto (auth user '$au')\\n");
        www_challenge("$td", "0");
        exit;
    }}
    if ($au != $tU && !check_to()) {{
        xlog("L_NOTICE", "zb: auth user '$au' may not register $tu\\n");
        sl_send_reply("403", "Forbidden auth ID");
        exit;
    }}
    consume_credentials();
    if (!save("location")) {{
        sl_reply_error();
        exit;
    }}
    xlog("L_NOTICE", "zb: registered $tu over $proto (auth user '$au')\\n");
    exit;
}}
""")

    def check_config(self) -> None:
        """`kamailio -c`: a config or module problem is reported with Kamailio's message."""
        result = subprocess.run(["kamailio", "-c", "-f", str(self.config)],
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kamailio -c failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 15.0) -> Kamailio:
        self.db.run(schema_sql())
        self.write_config()
        self.check_config()
        log = self.log_path.open("ab")
        # -DD: no fork into the background, -E: log to stderr; its own process group so
        # the children go with it
        self.process = subprocess.Popen(
            ["kamailio", "-DD", "-E", "-f", str(self.config), "-P", str(self.folder / "pid"),
             "-Y", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.process.returncode}:\n"
                                   + self.output())
            if self._listening():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("kamailio did not start:\n" + self.output())

    def _listening(self) -> bool:
        for port in (self.tcp_port, self.tls_port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
            except OSError:
                return False
        return True

    def stop(self) -> int | None:
        """SIGTERM to the main process, which stops its children; its exit status (None:
        not running). Should it hang, the whole process group is killed."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def add_subscriber(self, username: str, domain: str, password: str) -> None:
        self.db.run(f"INSERT INTO subscriber (username, domain, password) "
                    f"VALUES ({_lit(username)}, {_lit(domain)}, {_lit(password)});")

    def allow_aor(self, auth_user: str, domain: str, aor_user: str) -> None:
        """A row of the uri table: digest user `auth_user` may register `aor_user`."""
        self.db.run(f"INSERT INTO uri (username, domain, uri_user) "
                    f"VALUES ({_lit(auth_user)}, {_lit(domain)}, {_lit(aor_user)});")

    def registrations(self, username: str) -> list[Registration]:
        out = self.db.run(
            "SELECT username, domain, contact, COALESCE(socket, ''), user_agent "
            f"FROM location WHERE username = {_lit(username)} ORDER BY id;")
        return [Registration(*line.split("|")) for line in out.splitlines() if line]

    def log_lines(self, since: int = 0) -> list[str]:
        """The script's own log lines (xlog "zb: ..."), from byte `since` of the log on."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return [line.split("zb: ", 1)[1] for line in text.splitlines() if "zb: " in line]


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"

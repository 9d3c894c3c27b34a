"""The machine's PostgreSQL and MariaDB, spoken to with their own clients (psql, mariadb).

Tests never touch anything but their scratch databases and roles (unique names
per run, dropped afterwards). The outage test gets a private PostgreSQL
(initdb + pg_ctl on a free port) that it may stop and start at will.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PG_HOST, PG_PORT = "127.0.0.1", 5432
MY_HOST, MY_PORT = "127.0.0.1", 3306
PASSWORD = "p@ss:w/rd%"  # the scratch role's: URL-quoted in DSNs, never to appear in a log


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def psql(sql: str, database: str = "postgres", port: int = PG_PORT,
         host: str = PG_HOST, user: str = "postgres") -> str:
    result = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
         "-U", user, "-d", database],
        input=sql, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr}")
    return result.stdout


def mariadb(sql: str, database: str = "") -> str:
    args = ["mariadb", "-h", MY_HOST, "-P", str(MY_PORT), "-u", "root", "-N", "-B",
            "--default-character-set=utf8mb4"]
    result = subprocess.run(args + ([database] if database else []), input=sql,
                            capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"mariadb failed: {result.stderr}")
    return result.stdout


def pg_missing() -> str | None:
    if shutil.which("psql") is None:
        return "psql not installed (Debian: postgresql)"
    if not port_open(PG_HOST, PG_PORT):
        return f"PostgreSQL not answering on {PG_HOST}:{PG_PORT} (tests/run.sh starts it)"
    return None


def my_missing() -> str | None:
    if shutil.which("mariadb") is None:
        return "mariadb client not installed (Debian: mariadb-server)"
    if not port_open(MY_HOST, MY_PORT):
        return f"MariaDB not answering on {MY_HOST}:{MY_PORT} (tests/run.sh starts it)"
    return None


@dataclass
class Scratch:
    """One scratch database and the role that owns it, on one server."""

    kind: str  # "postgresql" or "mysql"
    name: str

    @property
    def url(self) -> str:
        host, port = (PG_HOST, PG_PORT) if self.kind == "postgresql" else (MY_HOST, MY_PORT)
        return f"{self.kind}://{self.name}:{quote(PASSWORD, safe='')}@{host}:{port}/{self.name}"

    def run(self, sql: str) -> str:
        if self.kind == "postgresql":  # as the owner role: the gateway reads what it made
            return psql(sql, self.name, user=self.name)
        return mariadb(sql, self.name)

    def drop(self) -> None:
        if self.kind == "postgresql":
            psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE);\n"
                 f"DROP ROLE IF EXISTS {self.name};")
        else:
            mariadb(f"DROP DATABASE IF EXISTS {self.name}; DROP USER IF EXISTS "
                    f"'{self.name}'@'%'; DROP USER IF EXISTS '{self.name}'@'localhost';")


def scratch(kind: str) -> Scratch:
    name = f"zb_{uuid.uuid4().hex[:12]}"
    if kind == "postgresql":
        psql(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}';\n"
             f"CREATE DATABASE {name} OWNER {name} ENCODING 'UTF8' TEMPLATE template0;")
        psql(f"ALTER SCHEMA public OWNER TO {name};", name)
    else:
        mariadb(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;\n"
                f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}';\n"
                f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{PASSWORD}';\n"
                f"GRANT ALL ON {name}.* TO '{name}'@'%';\n"
                f"GRANT ALL ON {name}.* TO '{name}'@'localhost';")
    return Scratch(kind, name)


def _pg_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if found:
        return found[-1]
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found")
    return path


class PrivatePostgres:
    """A PostgreSQL of the test's own (initdb on a free port): stop and start it freely."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(directory, pw.pw_uid, pw.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._user, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> PrivatePostgres:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c full_page_writes=off")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.dir / "log"), "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def sql(self, text: str, database: str = "postgres") -> str:
        return psql(text, database, port=self.port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def wait_stopped(self) -> None:
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

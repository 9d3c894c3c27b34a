"""A private, throwaway OpenLDAP server (slapd) for tests and benchmarks.

    with Slapd(tmp_path) as ldap:          # or ldap = Slapd(dir); ldap.start(); ...; ldap.stop()
        ldap.uri, ldap.ldaps_uri, ldap.ca_file, USERS["alice"].dn, USERS["alice"].password

Everything (config, database, certificates, pid file, log) lives in ``workdir``; the system
slapd (/etc/ldap, /var/lib/ldap, port 389) is never touched.  slapd listens on 127.0.0.1 only:
plain LDAP with StartTLS on ``port`` and LDAPS on ``tls_port`` (both picked free when not
given, and kept for ``restart()``, so a test can stop the server and bring it back on the same
ports with the same data).  The certificate is issued for 127.0.0.1 and localhost by a CA made
for this workdir (``ca_file``).

Directory layout seeded into ``dc=example,dc=org`` (see ``USERS`` and ``GROUPS``):

    ou=people     inetOrgPerson + posixAccount.  SIP data lives in standard attributes:
                  telephoneNumber = the extension / SIP user name (first value is the primary
                  one; erin has two values), displayName = caller id, mail,
                  labeledURI = "sip:<extension>@pbx.example.org SIP".
    ou=groups     voip (groupOfNames; contains the group staff -> nested), staff, phones-unique
                  (groupOfUniqueNames), sipusers (posixGroup, memberUid), loop-a/loop-b
                  (groupOfNames that contain each other: a cycle).
    ou=services   cn=gateway: the service account for search-then-bind (reads people + groups).

Passwords are stored as {SSHA}.  ``bulk_users=N`` adds uid=user1..userN (password passN,
telephoneNumber 1000+i, members of voip), loaded offline with slapadd like the rest.

Gotchas (Debian 12, slapd 2.5): back_mdb is a loadable module (moduleload); schema order is
core, cosine, nis, inetorgperson; slapd runs in the foreground here (``-d none``: only
errors reach the log, nothing per operation), so the pid is ours; "loglevel 0" keeps syslog
quiet; Ubuntu's AppArmor profile for slapd forbids workdirs outside /var/lib/ldap etc.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ldap3 import Connection, Tls

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
SERVICES_DN = f"ou=services,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
SERVICE_DN = f"cn=gateway,{SERVICES_DN}"
SERVICE_PASSWORD = "gateway-secret"
SIP_DOMAIN = "pbx.example.org"
HOST = "127.0.0.1"
TLS_NAMES = ("127.0.0.1", "localhost")  # subjectAltNames of the server certificate

SLAPD_CANDIDATES = ("/usr/sbin/slapd", "slapd")
SLAPADD_CANDIDATES = ("/usr/sbin/slapadd", "slapadd")
MODULE_PATH = Path("/usr/lib/ldap")
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")  # order matters


MONITOR_CONF = f"""
database        monitor
access to dn.subtree="cn=Monitor"
        by dn.exact="{ADMIN_DN}" read
        by * none
"""


def bind_count(monitor: Connection) -> int:
    """Bind operations completed since slapd started (all DNs, anonymous rebinds included)."""
    from ldap3 import BASE

    monitor.search("cn=Bind,cn=Operations,cn=Monitor", "(objectClass=*)", BASE,
                   attributes=["monitorOpCompleted"])
    return int(monitor.response[0]["raw_attributes"]["monitorOpCompleted"][0])


def operation_count(monitor: Connection) -> int:
    """LDAP operations of every kind completed since slapd started (binds, searches, ...)."""
    from ldap3 import BASE

    monitor.search("cn=Operations,cn=Monitor", "(objectClass=*)", BASE,
                   attributes=["monitorOpCompleted"])
    return int(monitor.response[0]["raw_attributes"]["monitorOpCompleted"][0])


def search_count(monitor: Connection) -> int:
    """Search operations completed since slapd started (the monitor's own included)."""
    from ldap3 import BASE

    monitor.search("cn=Search,cn=Operations,cn=Monitor", "(objectClass=*)", BASE,
                   attributes=["monitorOpCompleted"])
    return int(monitor.response[0]["raw_attributes"]["monitorOpCompleted"][0])


def bound_as(monitor: Connection) -> list[str]:
    """The authorization DN of every open connection ('' = anonymous)."""
    from ldap3 import SUBTREE

    monitor.search("cn=Connections,cn=Monitor", "(objectClass=monitorConnection)", SUBTREE,
                   attributes=["monitorConnectionAuthzDN"])
    return [(e["raw_attributes"].get("monitorConnectionAuthzDN") or [b""])[0].decode()
            for e in monitor.response if e.get("type") == "searchResEntry"]


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for a DN (RFC 4514 2.4) the way slapd prints it: hex pairs.

    slapd answers with this form (uid=\\23ops\\2Bdev..., not uid=\\#ops\\+dev...), so the DNs in
    USERS/GROUPS compare equal, as strings, to the DNs that searches return.
    """
    out = []
    for i, ch in enumerate(value):
        if ch in '"+,;<>\\=\0' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class SeedUser:
    uid: str
    password: str | None  # None: the entry has no userPassword (cannot bind)
    cn: str
    sn: str
    mail: str
    phones: tuple[str, ...]  # telephoneNumber values; phones[0] is the extension
    uid_number: int
    rdn: str = ""  # "cn=..." for entries named by cn; default uid=<uid>
    groups: tuple[str, ...] = ()  # direct memberships (names in GROUPS)

    @property
    def dn(self) -> str:
        rdn = self.rdn or f"uid={escape_dn_value(self.uid)}"
        return f"{rdn},{PEOPLE_DN}"

    @property
    def display_name(self) -> str:
        return self.cn

    @property
    def extension(self) -> str:
        return self.phones[0]

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.extension}@{SIP_DOMAIN}"


@dataclass(frozen=True)
class SeedGroup:
    name: str
    object_class: str  # groupOfNames | groupOfUniqueNames | posixGroup
    member_attr: str  # member | uniqueMember | memberUid
    members: tuple[str, ...] = ()  # DNs (member/uniqueMember) or uids (memberUid)
    gid_number: int | None = None

    @property
    def dn(self) -> str:
        return f"cn={escape_dn_value(self.name)},{GROUPS_DN}"


def _user(uid: str, password: str | None, cn: str, ext: str, n: int, *, mail: str = "",
          phones: tuple[str, ...] = (), rdn: str = "", groups: tuple[str, ...] = ()) -> SeedUser:
    return SeedUser(uid=uid, password=password, cn=cn, sn=cn.split()[-1], mail=mail or
                    f"{uid}@example.org", phones=phones or (ext,), uid_number=10000 + n,
                    rdn=rdn, groups=groups)


USERS: dict[str, SeedUser] = {u.uid: u for u in (
    _user("alice", "wonderland-ldap", "Alice Liddell", "101", 1,
          groups=("voip", "phones-unique", "sipusers")),
    _user("bob", "builder", "Bob Builder", "102", 2),
    _user("carol", "c4rol", "Carol Danvers", "103", 3, groups=("staff",)),
    _user("dave", "p&ss+w%rd #ünï€", "Dave Lister", "104", 4, groups=("voip",)),
    _user("erin", "erin-pw", "Erin Hannon", "105", 5, phones=("105", "+49 30 5550105"),
          groups=("voip", "loop-b")),
    _user("o'brien", "irish-coffee", "Conan O'Brien", "106", 6, mail="obrien@example.org",
          groups=("voip",)),
    _user("zoë", "zoë-pw", "Zoë Saldaña", "107", 7, mail="zoe@example.org", groups=("voip",)),
    # named by cn: DN cn=Smith\2C John\2B1,ou=people,... (slapd's form of cn=Smith\, John\+1)
    _user("jsmith", "smith-pw", "Smith, John+1", "108", 8,
          rdn=f"cn={escape_dn_value('Smith, John+1')}",
          groups=("voip",)),
    # a uid with every DN special character that a user can still type
    _user("#ops+dev,team=1", "ops-pw", "Ops Dev", "109", 9, mail="ops@example.org",
          groups=("voip",)),
    # twin1 and twin2 share one mail value: a search by mail finds two entries
    _user("twin1", "twin1-pw", "Twin One", "110", 10, mail="twins@example.org", groups=("voip",)),
    _user("twin2", "twin2-pw", "Twin Two", "111", 11, mail="twins@example.org", groups=("voip",)),
    # exists, is in voip, but has no userPassword: every bind fails with 49
    _user("nopass", None, "No Password", "112", 12, groups=("voip",)),
)}


def _members(name: str) -> tuple[str, ...]:
    return tuple(u.dn for u in USERS.values() if name in u.groups)


GROUPS: dict[str, SeedGroup] = {g.name: g for g in (
    SeedGroup("voip", "groupOfNames", "member",
              (*_members("voip"), f"cn=staff,{GROUPS_DN}")),
    SeedGroup("staff", "groupOfNames", "member", _members("staff")),
    SeedGroup("phones-unique", "groupOfUniqueNames", "uniqueMember", _members("phones-unique")),
    SeedGroup("sipusers", "posixGroup", "memberUid",
              tuple(u.uid for u in USERS.values() if "sipusers" in u.groups), gid_number=10000),
    SeedGroup("loop-a", "groupOfNames", "member", (f"cn=loop-b,{GROUPS_DN}",)),
    SeedGroup("loop-b", "groupOfNames", "member",
              (f"cn=loop-a,{GROUPS_DN}", *_members("loop-b"))),
)}


def bulk_user_dn(i: int) -> str:
    return f"uid=user{i},{PEOPLE_DN}"


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 -- {SSHA} is SHA-1
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _ldif_line(attr: str, value: str) -> str:
    # LDIF (RFC 2849): values that are not SAFE-STRING (non-ASCII, leading space/colon/<,
    # trailing space) are written base64-encoded with "::".
    safe = value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<"))
    if safe and not value.endswith(" "):
        return f"{attr}: {value}"
    return f"{attr}:: {base64.b64encode(value.encode()).decode()}"


def _entry(dn: str, attrs: Iterable[tuple[str, str]]) -> str:
    return "\n".join([_ldif_line("dn", dn), *(_ldif_line(a, v) for a, v in attrs)]) + "\n"


def _person(dn: str, *, uid: str, password: str | None, cn: str, sn: str,
            mail: str, phones: Iterable[str], uid_number: int) -> str:
    attrs = [("objectClass", "inetOrgPerson"), ("objectClass", "posixAccount"),
             ("uid", uid), ("cn", cn), ("sn", sn), ("displayName", cn), ("mail", mail)]
    phones = list(phones)
    attrs += [("telephoneNumber", p) for p in phones]
    attrs += [("labeledURI", f"sip:{phones[0]}@{SIP_DOMAIN} SIP"),
              ("uidNumber", str(uid_number)), ("gidNumber", "10000"),
              ("homeDirectory", f"/home/{uid_number}")]
    if password is not None:
        attrs.append(("userPassword", ssha(password)))
    return _entry(dn, attrs)


def seed_ldif(bulk_users: int = 0) -> str:
    """The whole directory as LDIF (for slapadd)."""
    out = [
        _entry(BASE_DN, [("objectClass", "dcObject"), ("objectClass", "organization"),
                         ("dc", "example"), ("o", "Example")]),
        *(_entry(f"ou={ou},{BASE_DN}", [("objectClass", "organizationalUnit"), ("ou", ou)])
          for ou in ("people", "groups", "services")),
        _entry(SERVICE_DN, [("objectClass", "organizationalRole"),
                            ("objectClass", "simpleSecurityObject"), ("cn", "gateway"),
                            ("description", "service account of the gateway"),
                            ("userPassword", ssha(SERVICE_PASSWORD))]),
    ]
    for u in USERS.values():
        out.append(_person(u.dn, uid=u.uid, password=u.password, cn=u.cn, sn=u.sn,
                           mail=u.mail, phones=u.phones, uid_number=u.uid_number))
    for i in range(1, bulk_users + 1):
        out.append(_person(bulk_user_dn(i), uid=f"user{i}", password=f"pass{i}",
                           cn=f"User {i}", sn=str(i), mail=f"user{i}@example.org",
                           phones=(str(1000 + i),), uid_number=100000 + i))
    for g in GROUPS.values():
        attrs = [("objectClass", g.object_class), ("cn", g.name)]
        members = list(g.members)
        if g.name == "voip":
            members += [bulk_user_dn(i) for i in range(1, bulk_users + 1)]
        attrs += [(g.member_attr, m) for m in members]
        if g.gid_number is not None:
            attrs.append(("gidNumber", str(g.gid_number)))
        out.append(_entry(g.dn, attrs))
    return "\n".join(out)


def _find(candidates: Iterable[str]) -> str | None:
    for c in candidates:
        path = shutil.which(c) if "/" not in c else (c if os.access(c, os.X_OK) else None)
        if path:
            return path
    return None


def missing() -> str | None:
    """Why this machine cannot run the fixture (None when it can)."""
    hint = "apt-get install -y slapd ldap-utils"
    if _find(SLAPD_CANDIDATES) is None or _find(SLAPADD_CANDIDATES) is None:
        return f"slapd/slapadd not installed ({hint})"
    if not (MODULE_PATH / "back_mdb.so").exists() and not (MODULE_PATH / "back_mdb.la").exists():
        return f"{MODULE_PATH}/back_mdb.so not found ({hint})"
    for s in SCHEMAS:
        if not (SCHEMA_DIR / f"{s}.schema").exists():
            return f"{SCHEMA_DIR}/{s}.schema not found ({hint})"
    try:
        import ldap3  # noqa: F401
        import trustme  # noqa: F401
    except ImportError as exc:
        return f"python package missing: {exc.name} (pip install -e '.[test]')"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class SlapdError(RuntimeError):
    pass


@dataclass
class Slapd:
    """One slapd instance in ``workdir``.  Start/stop/kill/restart keep ports and data."""

    workdir: Path
    port: int | None = None
    tls_port: int | None = None
    bulk_users: int = 0
    loglevel: str = "0"
    threads: int = 8
    start_timeout: float = 15.0
    with_monitor: bool = False  # cn=Monitor, readable by the admin: bind counts, connections
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _auto_ports: bool = field(default=False, init=False, repr=False)

    base_dn = BASE_DN
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    service_dn = SERVICE_DN
    service_password = SERVICE_PASSWORD
    host = HOST
    tls_name = "localhost"  # a DNS SAN of the cert (for ldap3 valid_names on Python >= 3.12)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).absolute()
        state = self._read_state()
        self._auto_ports = self.port is None and self.tls_port is None and not state
        if self.port is None:
            self.port = state.get("port") or free_port()
        if self.tls_port is None:
            self.tls_port = state.get("tls_port") or free_port()
            while self.tls_port == self.port:
                self.tls_port = free_port()

    # ---- public attributes -------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"ldap://{HOST}:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://{HOST}:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def conf_file(self) -> Path:
        return self.workdir / "slapd.conf"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "slapd.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "slapd.log"

    @property
    def pid(self) -> int | None:
        """pid of our running slapd, from the pid file (None when it is not running)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def ldap3_tls(self) -> Tls:
        """An ``ldap3.Tls`` that verifies the server against ``ca_file``."""
        import ssl

        from ldap3 import Tls

        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file),
                   version=ssl.PROTOCOL_TLS_CLIENT, valid_names=[self.tls_name])

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> Slapd:
        """Start (idempotent: a running, answering instance is left alone)."""
        if self.running:
            if self._answers():
                return self
            raise SlapdError(f"slapd {self.pid} runs in {self.workdir} but does not answer "
                             f"(paused?); stop() it first")
        reason = missing()
        if reason:
            raise SlapdError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)  # stale after kill()
        self._write_certs()
        self._write_conf()
        self._load()
        for attempt in range(3):
            try:
                self._launch()
                break
            except SlapdError as exc:
                # a port picked free at construction was taken since: pick new ones, but
                # only before the first successful start (restarts must keep their ports)
                if not (self._auto_ports and "errno=98" in str(exc)) or attempt == 2:
                    raise
                self.port, self.tls_port = free_port(), free_port()
                self._write_conf()
        self._auto_ports = False
        self._write_state()
        return self

    def _launch(self) -> None:
        slapd = _find(SLAPD_CANDIDATES)
        assert slapd
        urls = f"ldap://{HOST}:{self.port}/ ldaps://{HOST}:{self.tls_port}/"
        with self.log_file.open("ab") as log:
            # -d none: stay in the foreground (the pid is ours) and print only errors
            self._proc = subprocess.Popen(
                [slapd, "-d", "none", "-h", urls, "-f", str(self.conf_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True)
        self._wait_ready()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our slapd (by pid file) and wait until it has exited."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL our slapd: a crash.  start() afterwards recovers on the same ports/data."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self) -> Slapd:
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: slapd keeps its sockets but answers nothing (for timeout tests)."""
        pid = self.pid
        if pid:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid
        if pid:
            os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    # ---- internals ---------------------------------------------------------------------
    def _is_ours(self, pid: int) -> bool:
        # a live, non-zombie slapd whose command line names our config file
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        return (bool(cmdline) and os.path.basename(cmdline[0]) == b"slapd"
                and str(self.conf_file).encode() in cmdline)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            if sig != signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # in case it was paused
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while self._is_ours(pid):
                if self._proc is not None and self._proc.pid == pid:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(0.05)  # reap our child so it does not stay a zombie
                else:
                    time.sleep(0.05)
                if time.monotonic() > deadline:
                    if sig == signal.SIGKILL:
                        raise SlapdError(f"slapd {pid} did not die")
                    os.kill(pid, signal.SIGKILL)
                    deadline = time.monotonic() + 5
                    sig = signal.SIGKILL
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None
        if sig != signal.SIGKILL:
            self.pid_file.unlink(missing_ok=True)  # after kill() it stays behind, like a crash

    def _answers(self) -> bool:
        from ldap3 import Connection, Server
        from ldap3.core.exceptions import LDAPException

        try:
            conn = Connection(Server(HOST, port=self.port, connect_timeout=1),
                              user=ADMIN_DN, password=ADMIN_PASSWORD, receive_timeout=2)
            ok = bool(conn.bind())
            conn.unbind()
        except LDAPException:
            return False
        return ok

    def _answers_tls(self) -> bool:
        from ldap3 import Connection, Server
        from ldap3.core.exceptions import LDAPException

        try:
            conn = Connection(Server(HOST, port=self.tls_port, use_ssl=True,
                                     tls=self.ldap3_tls(), connect_timeout=1),
                              user=ADMIN_DN, password=ADMIN_PASSWORD, receive_timeout=2)
            ok = bool(conn.bind())
            conn.unbind()
        except LDAPException:
            return False
        return ok

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        plain_ok = False
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                self._proc = None
                raise SlapdError(f"slapd exited with status {proc.returncode} at start "
                                 f"({self.uri}, {self.ldaps_uri}); log {self.log_file}:\n"
                                 f"{self.log_tail()}")
            plain_ok = plain_ok or self._answers()
            if plain_ok and self._answers_tls():
                return
            time.sleep(0.05)
        self.kill()
        raise SlapdError(f"slapd did not answer on {self.uri} and {self.ldaps_uri} within "
                         f"{self.start_timeout:.0f}s; log {self.log_file}:\n{self.log_tail()}")

    def _read_state(self) -> dict[str, int]:
        try:
            state = json.loads((self.workdir / "instance.json").read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        state = {"port": self.port, "tls_port": self.tls_port, "bulk_users": self.bulk_users}
        (self.workdir / "instance.json").write_text(json.dumps(state) + "\n")

    def _write_certs(self) -> None:
        tls = self.workdir / "tls"
        if (tls / "server.pem").exists():
            return  # one CA per workdir: keep it across restarts
        import trustme

        tls.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="zoiper-bridge tests")
        cert = ca.issue_cert(*TLS_NAMES, common_name="localhost")
        key = tls / "server.key"
        cert.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        cert.cert_chain_pems[0].write_to_path(str(tls / "server.pem"))
        ca.cert_pem.write_to_path(str(tls / "ca.pem"))

    def _write_conf(self) -> None:
        tls = self.workdir / "tls"
        includes = "\n".join(f"include         {SCHEMA_DIR}/{s}.schema" for s in SCHEMAS)
        self.conf_file.write_text(f"""\
# generated by tests/ldap/slapd.py: throwaway test instance
{includes}

modulepath      {MODULE_PATH}
moduleload      back_mdb

pidfile         {self.pid_file}
argsfile        {self.workdir}/slapd.args
loglevel        {self.loglevel}
threads         {self.threads}

TLSCACertificateFile    {tls}/ca.pem
TLSCertificateFile      {tls}/server.pem
TLSCertificateKeyFile   {tls}/server.key

database        mdb
maxsize         1073741824
suffix          "{BASE_DN}"
rootdn          "{ADMIN_DN}"
rootpw          {ssha(ADMIN_PASSWORD)}
directory       {self.workdir}/data
index           objectClass                     eq
index           uid,mail,telephoneNumber        eq
index           cn                              eq,sub
index           member,uniqueMember,memberUid   eq

# bind needs "auth" for anonymous (a bind is evaluated as anonymous); hashes stay hidden
access to attrs=userPassword
        by self write
        by anonymous auth
        by * none
access to *
        by dn.exact="{SERVICE_DN}" read
        by * read
""" + (MONITOR_CONF if self.with_monitor else ""))

    def monitor(self) -> Connection:
        """An admin connection for cn=Monitor (needs with_monitor=True); unbind it after use."""
        from ldap3 import NONE, Connection, Server

        return Connection(Server(self.host, port=self.port, connect_timeout=2, get_info=NONE),
                          ADMIN_DN, ADMIN_PASSWORD, auto_bind=True, receive_timeout=5,
                          check_names=False)

    def _load(self) -> None:
        marker = self.workdir / ".loaded"
        signature = f"bulk_users={self.bulk_users}\n"
        if marker.exists() and marker.read_text() == signature:
            return
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        ldif = self.workdir / "seed.ldif"
        ldif.write_text(seed_ldif(self.bulk_users), encoding="utf-8")
        slapadd = _find(SLAPADD_CANDIDATES)
        assert slapadd
        # -q: quick mode, offline (slapd is not running)
        res = subprocess.run([slapadd, "-q", "-f", str(self.conf_file), "-l", str(ldif)],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SlapdError(f"slapadd failed ({res.returncode}):\n{res.stderr[-3000:]}")
        marker.write_text(signature)


if __name__ == "__main__":  # python -m tests.ldap.slapd DIR [BULK]: start and print details
    import sys

    d = Slapd(Path(sys.argv[1]), bulk_users=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    t0 = time.monotonic()
    d.start()
    print(f"slapd pid {d.pid} {d.uri} {d.ldaps_uri} ca={d.ca_file} "
          f"({time.monotonic() - t0:.2f}s); stop: kill {d.pid}")

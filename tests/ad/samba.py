"""A throwaway Samba 4 Active Directory DC for tests: a thin wrapper of the scripts next to it.

    env = start(directory)     # provisions once (~8-17 s), later starts take < 1 s
    env["AD_LDAPS_URL"], env["AD_CA_FILE"], env["AD_TLS_NAME"], env["AD_SVC_UPN"], ...
    stop(directory)            # stops the DC and removes its network namespace; keeps directory

The values are those of DIR/ad.env written by start_samba_ad.sh (see its header), plus AD_DIR.
Needs root and the packages of install_samba_ad.sh.

Each running DC gets its own network namespace and addresses (a "slot" n in 1..63), so two
test sessions on one machine (two developers, or a developer and CI) do not collide: namespace
zbad<n>, veth zbad<n>-h/-n, 10.200.<n>.1/30 (host) and 10.200.<n>.2 (DC), or, where no
namespace can be made, 127.0.<n>.20 on the host.  A directory keeps its slot while it is free.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL = HERE / "install_samba_ad.sh"
START = HERE / "start_samba_ad.sh"
STOP = HERE / "stop_samba_ad.sh"
SLOTS = 64

REALM = "EXAMPLE.TEST"
UPN_SUFFIX = "example.test"
BASE_DN = "DC=example,DC=test"
USERS_DN = f"CN=Users,{BASE_DN}"


@dataclass(frozen=True)
class ADUser:
    sam: str  # sAMAccountName
    password: str
    cn: str
    bind_data: str | None  # None: binds; else the "data XXX" code of the 49 answer

    @property
    def upn(self) -> str:
        return f"{self.sam}@{UPN_SUFFIX}"

    @property
    def dn(self) -> str:
        """The DN exactly as the server returns it."""
        return f"CN={self.cn},{USERS_DN}"


# seeded by start_samba_ad.sh; groupInner contains alice, groupOuter contains groupInner
AD_USERS: dict[str, ADUser] = {u.sam: u for u in (
    ADUser("alice", "Alice-Passw0rd", "Alice Anders", None),
    ADUser("bob", "Bob-Passw0rd", "bob", "533"),  # disabled
    ADUser("carol", "Carol-Passw0rd", "carol", "773"),  # must change password
    ADUser("dave", "Dave-Passw0rd", "dave", "701"),  # account expired
    ADUser("zoë.o'brien(x)", "Pä&+%#ss wörd€1", "Zoë O'Brien\\, Jr. (\\#1\\+2)", None),
)}
AD_GROUPS: dict[str, str] = {
    "groupInner": f"CN=groupInner,{USERS_DN}",
    "groupOuter": f"CN=groupOuter,{USERS_DN}",
}
WRONG_PASSWORD_DATA = "52e"  # wrong password or unknown user


class SambaError(RuntimeError):
    pass


def missing() -> str | None:
    """Why this machine cannot run the DC (None when it can)."""
    if os.geteuid() != 0:
        return "Samba AD needs root (provisioning sets NT ACL xattrs; network namespace)"
    for tool in ("samba", "samba-tool", "ldapsearch", "openssl", "ip"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} not found (run tests/ad/install_samba_ad.sh)"
    if not list(Path("/usr/lib").glob("*/samba/vfs/acl_xattr.so")) and not list(
            Path("/usr/lib").glob("samba/vfs/acl_xattr.so")):
        return "samba-vfs-modules not installed (run tests/ad/install_samba_ad.sh)"
    return None


def _slot_env(slot: int) -> dict[str, str]:
    return {
        "AD_NETNS": f"zbad{slot}",
        "AD_VETH": f"zbad{slot}",
        "AD_HOST_IP": f"10.200.{slot}.1",
        "AD_DC_IP": f"10.200.{slot}.2",
        "AD_LOOPBACK_IP": f"127.0.{slot}.20",
    }


def _slot_free(slot: int) -> bool:
    env = _slot_env(slot)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=False).stdout.split()
    addrs = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                           check=False).stdout
    return (env["AD_NETNS"] not in netns and f" {env['AD_HOST_IP']}/" not in addrs
            and not Path(f"/sys/class/net/{env['AD_VETH']}-h").exists())


def _choose_slot(directory: Path) -> int:
    # keep the directory's slot when possible (its namespace may be a leftover of ours after
    # a SIGKILL); the start script reissues the server cert when the DC address changes
    saved = directory / "slot"
    if saved.exists():
        slot = int(saved.read_text())
        ns_file = directory / "run" / "netns"
        ours = ns_file.exists() and ns_file.read_text().split()[:1] == [f"zbad{slot}"]
        if ours or _slot_free(slot):
            return slot
    for slot in range(1, SLOTS):
        if _slot_free(slot):
            directory.mkdir(parents=True, exist_ok=True)
            saved.write_text(f"{slot}\n")
            return slot
    raise SambaError(f"no free Samba AD slot (namespaces zbad1..zbad{SLOTS - 1} all in use)")


def read_env(directory: Path) -> dict[str, str]:
    env = {"AD_DIR": str(Path(directory).resolve())}
    for line in (Path(directory) / "ad.env").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


def start(directory: Path, *, slot: int | None = None, timeout: float = 300,
          extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Provision (once) and start the DC in ``directory``; return the ad.env values."""
    reason = missing()
    if reason:
        raise SambaError(reason)
    directory = Path(directory).resolve()
    env = {**os.environ, **_slot_env(slot if slot is not None else _choose_slot(directory)),
           **(extra_env or {})}
    res = subprocess.run(["bash", str(START), str(directory)], env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise SambaError(f"start_samba_ad.sh {directory} failed ({res.returncode}):\n"
                         f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return read_env(directory)


def stop(directory: Path, timeout: float = 60) -> None:
    """Stop the DC of ``directory`` (by its pid file) and remove its namespace."""
    res = subprocess.run(["bash", str(STOP), str(directory)], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if res.returncode != 0:
        raise SambaError(f"stop_samba_ad.sh {directory} failed ({res.returncode}):\n"
                         f"{res.stdout}\n{res.stderr}")

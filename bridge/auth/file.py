"""Users kept in a TOML file with scrypt hashes: the embedded default, and small sites.

    [users.alice]
    password = "$scrypt$ln=15,r=8,p=1$..."    # zoiper-bridge hash-password
    groups = ["staff"]
    displayName = "Alice Liddell"              # any other key: an identity attribute
    password_md5 = "$scrypt$ln=15,r=8,p=1$..." # hash-password --md5: for apps that send
                                               # an MD5 of the password (Zoiper5 Desktop)

`password_md5` is a scrypt hash of the password's MD5 (lower-case hex), so one
entry serves both password formats: an MD5 is checked against it directly, a
password is first turned into its MD5. A user may have either key or both.

An unknown username must cost what a known one with a wrong password costs, or
usernames can be enumerated by timing. scrypt's cost is in each hash (ln, r, p,
key length), and a file may mix costs (hashes made over the years with
different `--cost`), so one built-in dummy would not do: at load a decoy hash
is made for each parameter set the file uses, and an unknown username is
checked against one of them, picked by a keyed hash of the name with odds
proportional to how many users have that set. The same unknown name always
costs the same (a real user does too), and which decoy a name gets cannot be
predicted without the file. The key is derived from the file's hashes (random
salts the attacker never sees), so every worker and restart picks the same one.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import tomllib
from collections import Counter
from dataclasses import dataclass

from bridge.auth import Authenticator
from bridge.config import Section
from bridge.models import Credentials, Identity, Scalar
from bridge.passwords import (
    DEFAULT_LOG_N,
    check_format,
    dummy_hash,
    parameters,
    verify_password,
)

DEFAULT_PARAMETERS = (DEFAULT_LOG_N, 8, 1, 32)  # what `hash-password` writes


@dataclass(frozen=True)
class FileUser:
    password_hash: str  # "" when the user has only password_md5
    groups: frozenset[str]
    attributes: dict[str, Scalar]
    md5_hash: str = ""

    def hash_for(self, credentials: Credentials) -> tuple[str, str] | None:
        """(what to verify, the hash to verify it against), or None: no usable hash."""
        if credentials.password_format == "md5":  # noqa: S105
            return (credentials.password, self.md5_hash) if self.md5_hash else None
        if self.password_hash:
            return credentials.password, self.password_hash
        if self.md5_hash:
            return md5_hex(credentials.password), self.md5_hash
        return None


def md5_hex(password: str) -> str:
    """What Zoiper5 Desktop sends with password_format 0 (not a password hash: a format)."""
    return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()


class Decoys:
    """Hashes no password matches, in the file's own proportions of scrypt parameters."""

    def __init__(self, hashes: list[str]) -> None:
        usable = sorted(h for h in hashes if parameters(h) is not None)
        counts = Counter(p for h in usable if (p := parameters(h)) is not None)
        if not counts:  # an empty file: the cost `hash-password` would use
            counts[DEFAULT_PARAMETERS] = 1
        self._hashes: list[str] = []
        self._bounds: list[int] = []  # cumulative counts, for a weighted pick
        total = 0
        for params, count in sorted(counts.items()):
            self._hashes.append(dummy_hash(*params))
            total += count
            self._bounds.append(total)
        self._key = hashlib.blake2b("\n".join(usable).encode(), digest_size=32).digest()

    def __len__(self) -> int:
        return len(self._hashes)

    def pick(self, username: str) -> str:
        if len(self._hashes) == 1:
            return self._hashes[0]
        mac = hashlib.blake2b(username.encode("utf-8", "surrogatepass"), key=self._key,
                              digest_size=8).digest()
        slot = int.from_bytes(mac, "big") % self._bounds[-1]
        return self._hashes[bisect.bisect_right(self._bounds, slot)]


class FileAuthenticator(Authenticator):
    password_formats = frozenset({"plaintext", "md5"})

    def __init__(self, users: dict[str, FileUser]) -> None:
        self.users = users
        self.decoys = Decoys([h for u in users.values()
                              for h in (u.password_hash, u.md5_hash) if h])

    @classmethod
    def from_config(cls, cfg: Section) -> FileAuthenticator:
        path = cfg.path_value("path")
        if not path.is_file():
            return cls({})
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            cfg.problem("path", f"cannot read users file {path}: {exc}")
            return cls({})
        users_cfg = Section(data, f"{path.name}: users", cfg.problems, path.parent)
        table = users_cfg.table("users", required=True)
        users: dict[str, FileUser] = {}
        for name in list(table.keys()):
            entry = table.table(name)
            hashes = {}
            for key in ("password", "password_md5"):
                hashed = entry.str(key, "")
                if hashed and (why := check_format(hashed)):
                    entry.problem(key, why)
                hashes[key] = hashed
            if not any(hashes.values()):
                entry.problem("password", "is required (or password_md5)")
            groups = frozenset(entry.list_str("groups", []))
            attributes = entry.scalars(skip=("password", "password_md5", "groups"))
            entry.done()
            users[name] = FileUser(hashes["password"], groups, attributes,
                                   hashes["password_md5"])
        users_cfg.done()
        return cls(users)

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        user = self.users.get(credentials.username)
        check = user.hash_for(credentials) if user is not None else None
        if check is not None and parameters(check[1]) is not None:
            secret, hashed = check
        else:  # unknown, or no usable hash for this format: the cost of a wrong password
            secret, hashed = credentials.password, self.decoys.pick(credentials.username)
            user = None
        # scrypt releases the GIL; running it in a thread keeps the event loop free.
        ok = await asyncio.to_thread(verify_password, secret, hashed)
        if not ok or user is None:
            return None
        return Identity(credentials.username, user.attributes, user.groups)

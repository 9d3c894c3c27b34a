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

`password` may also be a hash imported from another system, recognised by its
shape (bridge/hashes.py): bcrypt, argon2, crypt(3) $6$/$5$/$1$, MySQL's *HEX, or
a hex MD5/SHA digest. `[auth] case_insensitive = true` finds "Alice" as "alice"
(the identity keeps the file's spelling; two names differing only in case are
then a configuration error).

An unknown username must cost what a known one with a wrong password costs, or
usernames can be enumerated by timing. scrypt's cost is in each hash (ln, r, p,
key length), and a file may mix costs (hashes made over the years with
different `--cost`), so one built-in dummy would not do: at load a decoy hash
is made for each scheme and cost the file uses, and an unknown username is
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
import unicodedata
from collections import Counter
from dataclasses import dataclass

from bridge import hashes as legacy
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


def scheme_of(stored: str) -> str | None:
    """The stored value's scheme: our scrypt, or an imported one (bridge.hashes), or None."""
    if parameters(stored) is not None:
        return "scrypt"
    return legacy.identify(stored)


def verify_stored(secret: str, stored: str) -> bool:
    """Constant-time check of `secret` against a stored value of any accepted scheme."""
    scheme = scheme_of(stored)
    if scheme == "scrypt":
        return verify_password(secret, stored)
    return scheme is not None and legacy.verify(scheme, secret, stored)


def _cost(stored: str) -> str | None:
    """What checking `stored` costs (scrypt parameters, bcrypt rounds, ...): decoys match it."""
    params = parameters(stored)
    if params is not None:
        return "scrypt:" + ",".join(map(str, params))
    scheme = legacy.identify(stored)
    return legacy.cost_key(scheme, stored) if scheme else None


def _decoy(stored: str) -> str:
    params = parameters(stored)
    if params is not None:
        return dummy_hash(*params)
    scheme = legacy.identify(stored)
    assert scheme is not None
    return legacy.decoy(scheme, like=stored)


class Decoys:
    """Hashes no password matches, in the file's own proportions of schemes and costs."""

    def __init__(self, hashes: list[str]) -> None:
        usable = sorted(h for h in hashes if _cost(h) is not None)
        model: dict[str, str] = {}  # cost -> one real stored value with it
        counts: Counter[str] = Counter()
        for stored in usable:
            cost = _cost(stored)
            assert cost is not None
            model.setdefault(cost, stored)
            counts[cost] += 1
        self._hashes: list[str] = []
        self._bounds: list[int] = []  # cumulative counts, for a weighted pick
        total = 0
        if not counts:  # an empty file: the cost `hash-password` would use
            self._hashes.append(dummy_hash(*DEFAULT_PARAMETERS))
            self._bounds.append(1)
        for cost, count in sorted(counts.items()):
            self._hashes.append(_decoy(model[cost]))
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

    def __init__(self, users: dict[str, FileUser], case_insensitive: bool = False) -> None:
        self.case_insensitive = case_insensitive
        # With case-insensitive names, users are found by a folded key; the identity keeps
        # the file's spelling.
        self.names = {self._key(name): name for name in users}
        self.users = {self._key(name): user for name, user in users.items()}
        self.decoys = Decoys([h for u in users.values()
                              for h in (u.password_hash, u.md5_hash) if h])

    def _key(self, name: str) -> str:
        return unicodedata.normalize("NFKC", name).casefold() if self.case_insensitive else name

    @classmethod
    def from_config(cls, cfg: Section) -> FileAuthenticator:
        case_insensitive = cfg.bool("case_insensitive", False)
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
        folded_names: dict[str, str] = {}
        for name in list(table.keys()):
            entry = table.table(name)
            hashes = {}
            for key in ("password", "password_md5"):
                hashed = entry.str(key, "")
                if hashed and (why := check_format(hashed)) and (
                        key == "password_md5" or legacy.identify(hashed) is None):
                    entry.problem(key, why + (" or a hash imported from another system "
                                              "(bcrypt, argon2, crypt(3) $6$/$5$/$1$, "
                                              "MySQL *HEX, hex MD5/SHA digests)"
                                              if key == "password" else ""))
                hashes[key] = hashed
            if not any(hashes.values()):
                entry.problem("password", "is required (or password_md5)")
            groups = frozenset(entry.list_str("groups", []))
            attributes = entry.scalars(skip=("password", "password_md5", "groups"))
            entry.done()
            users[name] = FileUser(hashes["password"], groups, attributes,
                                   hashes["password_md5"])
            if case_insensitive and (folded := unicodedata.normalize("NFKC", name).casefold()) \
                    in folded_names:
                table.problem(name, f"is the same name as {folded_names[folded]!r} with "
                                    "case_insensitive = true")
            folded_names[unicodedata.normalize("NFKC", name).casefold()] = name
        users_cfg.done()
        return cls(users, case_insensitive)

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        key = self._key(credentials.username)
        user = self.users.get(key)
        check = user.hash_for(credentials) if user is not None else None
        if check is not None and _cost(check[1]) is not None:
            secret, hashed = check
        else:  # unknown, or no usable hash for this format: the cost of a wrong password
            secret, hashed = credentials.password, self.decoys.pick(key)
            user = None
        # scrypt, bcrypt and argon2 release the GIL: a thread keeps the event loop free.
        ok = await asyncio.to_thread(verify_stored, secret, hashed)
        if not ok or user is None:
            return None
        return Identity(self.names[key], user.attributes, user.groups)

"""Users kept in a TOML file with scrypt hashes: the embedded default, and small sites.

    [users.alice]
    password = "$scrypt$ln=15,r=8,p=1$..."    # zoiper-bridge hash-password
    groups = ["staff"]
    displayName = "Alice Liddell"              # any other key: an identity attribute
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass

from bridge.auth import Authenticator
from bridge.config import Section
from bridge.models import Credentials, Identity, Scalar
from bridge.passwords import DUMMY_HASH, check_format, verify_password


@dataclass(frozen=True)
class FileUser:
    password_hash: str
    groups: frozenset[str]
    attributes: dict[str, Scalar]


class FileAuthenticator(Authenticator):
    def __init__(self, users: dict[str, FileUser]) -> None:
        self.users = users

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
            hashed = entry.str("password")
            if hashed and (why := check_format(hashed)):
                entry.problem("password", why)
            groups = frozenset(entry.list_str("groups", []))
            attributes = entry.scalars(skip=("password", "groups"))
            entry.done()
            users[name] = FileUser(hashed, groups, attributes)
        users_cfg.done()
        return cls(users)

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        user = self.users.get(credentials.username)
        hashed = user.password_hash if user else DUMMY_HASH
        # scrypt releases the GIL; running it in a thread keeps the event loop free.
        ok = await asyncio.to_thread(verify_password, credentials.password, hashed)
        if not ok or user is None:
            return None
        return Identity(credentials.username, user.attributes, user.groups)

"""Where tokens live: one interface, one module per backend.

    SQLTokenStore    bridge/tokens/sql.py    SQLite (the default, a file) or PostgreSQL
    RedisTokenStore  bridge/tokens/redisstore.py

A store never sees a token: only its keyed hash (`digest`, 64 hex digits),
under which it keeps the `Ticket` the token was issued for. `spend` is the one
operation that must be atomic: it counts one use only if the token is live,
belongs to the asking profile and has uses left, in a single statement (SQL:
`UPDATE ... WHERE used < uses RETURNING`; Redis: one script), so two phones
racing with a one-use token get one success between them, whichever instance
each one asks. A store that cannot be reached raises UpstreamUnavailable (503:
the phone keeps its configuration and the token is not spent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

Status = Literal["live", "spent", "expired", "revoked"]

# Spent, revoked and expired tokens stay listable this long after they expire.
RETENTION = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one token was issued for. Holds its hash, never the token."""

    digest: str      # keyed hash of the token (hex); its first 8 digits are the fingerprint
    username: str    # as the backends see it (a tenant's domain already stripped)
    profile: str     # the only profile whose token endpoint accepts it
    pipeline: str    # the profile's own pipeline or one tenant's ("default/acme")
    created: float   # Unix time
    expires: float   # Unix time
    uses: int = 1
    used: int = 0
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        return self.digest[:8]

    def status(self, now: float | None = None) -> Status:
        if self.revoked:
            return "revoked"
        if self.used >= self.uses:
            return "spent"
        if self.expires <= (time.time() if now is None else now):
            return "expired"
        return "live"


class TokenStore:
    async def start(self) -> None:
        """Connect, and create the table (or nothing) the store needs."""

    async def close(self) -> None:
        """Release connections."""

    async def ready(self) -> None:
        """Raise if the store cannot serve (/readyz, check-config --connect)."""

    async def add(self, ticket: Ticket) -> None:
        raise NotImplementedError

    async def spend(self, digest: str, profile: str, now: float) -> Ticket | None:
        """Count one use, atomically, of a live token of `profile`; None if there is none."""
        raise NotImplementedError

    async def give_back(self, digest: str) -> None:
        """Undo one use (the document it paid for could not be delivered)."""
        raise NotImplementedError

    async def tickets(self) -> list[Ticket]:
        """Every ticket still kept, oldest first."""
        raise NotImplementedError

    async def revoke(self, digests: list[str]) -> int:
        """Mark these tickets revoked; how many there were."""
        raise NotImplementedError

    async def purge(self, before: float) -> int:
        """Forget tickets that expired before `before` (Redis expires them itself)."""
        return 0

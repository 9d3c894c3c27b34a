"""The LDAP operations the gateway needs, and what can go wrong with them.

Only three things are ever asked of a directory: a simple bind (is this
password right?), a search as the service account (find the user, check a
group, read attributes) and StartTLS/LDAPS around both; plus, for Active
Directory logins by user principal name, one search as the user who just
bound (`bind_and_search`: the only way to learn the entry's DN without a
service account). Keeping the contract this small lets the wire
implementation be chosen for speed (see aio.py and threaded.py) without
touching the authenticator or the account source.

Errors: a bind that the server answers — with success or with any result
code — is a `LdapResult`, not an exception (wrong password is result 49).
Exceptions are for infrastructure: `LdapUnavailable` (refused, reset, TLS
failure, busy/unavailable result codes, every server down, a service account
the server refuses) and `LdapTimeout`.

Failover (`settings.uris` in order, a server skipped for `down_for` seconds
after a failed setup, including one that accepts TCP and never answers the
first operation) and the hold-back of a service account a server refuses (an
outage of the operator's making: LdapUnavailable at once for `down_for`
seconds, one connection at a time tries the account, so that a wrong password
cannot lock it under an AD lockout policy) are one policy, `failover.py`,
shared by both clients.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

INVALID_CREDENTIALS = 49
# Result codes that mean "the directory cannot answer now": the 5xx path, never a 401.
# timeLimitExceeded, adminLimitExceeded, busy, unavailable, other
UNAVAILABLE_CODES = frozenset({3, 11, 51, 52, 80})
SIZE_LIMIT_EXCEEDED = 4  # what arrived is the answer
DOWN_FOR = 3.0  # seconds a server is skipped after a failed setup or a refused service account


class Scope(enum.IntEnum):
    BASE = 0
    ONELEVEL = 1
    SUBTREE = 2


@dataclass(frozen=True, slots=True)
class LdapResult:
    code: int
    message: str = ""
    matched_dn: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True, slots=True)
class Entry:
    """One search result entry. Attribute names are lower-cased; values stay bytes."""

    dn: str
    attributes: dict[str, list[bytes]] = field(default_factory=dict)

    def values(self, name: str) -> list[bytes]:
        return self.attributes.get(name.lower(), [])


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One search, for `bind_and_search` (the arguments of `LdapClient.search`)."""

    base: str
    scope: Scope
    filter: str
    attributes: Sequence[str] = ()
    size_limit: int = 0


class LdapError(Exception):
    """A directory problem; the message names the server, never a password."""


class LdapUnavailable(LdapError):
    pass


class LdapTimeout(LdapError):
    pass


class LdapOperationError(LdapError):
    """The server answered an operation with an unexpected result code."""

    def __init__(self, result: LdapResult, operation: str) -> None:
        super().__init__(f"{operation} failed with result {result.code}: {result.message}")
        self.result = result


class TlsMode(enum.Enum):
    NONE = "none"          # ldap:// without StartTLS (refused to non-loopback hosts by default)
    STARTTLS = "starttls"  # ldap:// then the StartTLS extended operation
    LDAPS = "ldaps"        # ldaps://, TLS from the first byte


@dataclass(frozen=True)
class ServerSettings:
    uris: Sequence[str]                 # tried in order: failover
    tls: TlsMode = TlsMode.STARTTLS     # for ldap:// URIs; ldaps:// URIs always use LDAPS
    ca_file: str | None = None          # None: the system's CA store
    verify: bool = True                 # certificate and host name verification
    tls_name: str | None = None         # name to check the certificate against (default: host)
    connect_timeout: float = 3.0
    timeout: float = 5.0                # per operation
    pool_size: int = 8                  # persistent connections per pool and worker
    service_dn: str | None = None       # for searches; None: anonymous searches
    service_password: str | None = field(default=None, repr=False)
    reset_after_bind: bool = True       # no idle connection stays bound as a user (aio: after
                                        # RESET_DELAY; ldap3: at once); only binds follow a user's
    down_for: float = DOWN_FOR          # skip a failed server / hold back a refused service account


class LdapClient:
    """Implementations: aio.AsyncLdapClient (default), threaded.Ldap3Client."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    async def start(self) -> None:
        """Open nothing yet or a first connection; must not fail when the directory is down."""

    async def close(self) -> None:
        """Close every pooled connection."""

    async def bind(self, dn: str, password: str) -> LdapResult:
        """Simple bind as a user on a connection reserved for binds.

        Refuses an empty password (ValueError): an empty-password bind is an
        unauthenticated bind that many servers report as success.
        """
        raise NotImplementedError

    async def bind_and_search(self, dn: str, password: str,
                              request: SearchRequest) -> tuple[LdapResult, list[Entry]]:
        """`bind`, then, only when it succeeded, `request` as that user on the same connection.

        The entries are [] when the bind failed. The search is never retried:
        its connection is bound as the user, and an outage after the bind
        raises like any search (LdapUnavailable, LdapTimeout). LdapOperationError
        comes from the search only, i.e. after a successful bind. The connection
        is reset afterwards like after `bind` (reset_after_bind: before anything
        but another user's bind runs on it, and when it stays idle).
        """
        raise NotImplementedError

    async def search(
        self,
        base: str,
        scope: Scope,
        filter: str,
        attributes: Sequence[str],
        *,
        size_limit: int = 0,
    ) -> list[Entry]:
        """Search as the service account; continuation references are skipped.

        `filter` is an RFC 4515 string whose user-supplied parts the caller has
        already escaped. Result 4 (sizeLimitExceeded) returns what arrived;
        other non-zero results raise LdapOperationError (or LdapUnavailable for
        UNAVAILABLE_CODES).
        """
        raise NotImplementedError

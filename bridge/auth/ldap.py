"""Corporate logins against OpenLDAP or Active Directory (after dex's LDAP connector).

Three ways to find the user; exactly one of `user_dn`, `user_upn` or
`[auth.user_search]` names the bind:

* `user_dn = "uid={username},ou=people,dc=example,dc=org"`: direct bind, the
  name DN-escaped (RFC 4514);
* `user_upn = "{username}@example.test"`: direct bind with an AD user
  principal name (names with characters AD forbids in logon names are
  refused before any bind);
* `[auth.user_search]` alone: search-then-bind as the service account, the
  name filter-escaped (RFC 4515). Zero or several entries = invalid
  credentials, never "the first one". With user_dn/user_upn the search only
  reads the entry after the bind.

A wrong password is a result (None), not an error; so is an unknown user,
and so is an AD bind refused with data 52e/525. AD's other sub-codes (533
disabled, 701 expired, 773 must change password, 775 locked, 530/531/532)
mean "right password, but no": NotPermitted, like a missing required group
or a disabled/expired entry (userAccountControl, accountExpires). A directory
that cannot answer raises UpstreamUnavailable/UpstreamTimeout; result codes
that can only come from a wrong configuration (no such base, bad DN syntax,
a service account the server refuses, a server that wants TLS) raise
InternalError so that they are not retried as an outage.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from bridge.auth import Authenticator
from bridge.config import Section
from bridge.errors import (
    BridgeError,
    InternalError,
    NotPermitted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.ldap.client import (
    INVALID_CREDENTIALS,
    Entry,
    LdapClient,
    LdapError,
    LdapOperationError,
    LdapTimeout,
    Scope,
)
from bridge.ldap.config import (
    BINARY_ENCODINGS,
    Directory,
    first_text,
    read_attribute_map,
    read_directory,
    read_scope,
    read_template,
)
from bridge.ldap.escape import (
    ad_data_code,
    dn_key,
    escape_dn_value,
    escape_filter_value,
    fill,
    rdn_value,
)
from bridge.models import Credentials, Identity, Scalar

logger = logging.getLogger("bridge.auth.ldap")

IN_CHAIN = "1.2.840.113556.1.4.1941"  # AD's LDAP_MATCHING_RULE_IN_CHAIN
MEMBERSHIPS = ("member", "uniqueMember", "memberUid", "memberOf", "in_chain")
# AD bind sub-codes (the "data NNN" of a result 49) that mean: password right, logon refused.
AD_REFUSALS = {
    "530": "logon not permitted at this time",
    "531": "logon not permitted from this workstation",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "password must be changed",
    "775": "account locked out",
}
# Result codes only a wrong configuration produces: 500, not "the directory is down".
CONFIG_CODES = {
    8: "strongerAuthRequired (the server wants TLS or signing)",
    13: "confidentialityRequired (the server wants TLS)",
    17: "undefinedAttributeType",
    10: "referral (the base DN is not held by this server)",
    32: "noSuchObject (is the base DN right?)",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    50: "insufficientAccessRights (can the service account read this?)",
    87: "filterError",
}
# Characters AD forbids in logon names; in a UPN bind they could change how the name is read.
_UPN_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@\x00-\x1f\x7f]')
UAC_ACCOUNTDISABLE = 0x2
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 to 1970-01-01 in 100 ns steps
_NEVER = {0, 0x7FFFFFFFFFFFFFFF}
_MAX_OR_CLAUSES = 100


@dataclass(frozen=True)
class UserSearch:
    base: str
    scope: Scope
    filter: str


@dataclass(frozen=True)
class GroupPolicy:
    required: tuple[str, ...] = ()       # DNs, or bare names matched against the first RDN
    membership: tuple[str, ...] = ("member",)
    base: str | None = None
    scope: Scope = Scope.SUBTREE
    filter: str | None = None            # ANDed with every group search
    nested: bool = True
    max_depth: int = 8
    member_uid_attribute: str = "uid"

    def allows(self, groups: dict[tuple, str]) -> bool:
        if not self.required:
            return True
        names = {rdn_value(dn).casefold() for dn in groups.values()}
        return any((dn_key(r) in groups) if "=" in r else (r.casefold() in names)
                   for r in self.required)


@dataclass(frozen=True)
class Lookup:
    user_dn: str | None = None
    user_upn: str | None = None
    search: UserSearch | None = None
    username_attribute: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    binary: str = "hex"
    groups: GroupPolicy | None = None


class LdapAuthenticator(Authenticator):
    type_name = "ldap"

    def __init__(self, directory: Directory, lookup: Lookup) -> None:
        self.directory = directory
        self.lookup = lookup
        self._client: LdapClient | None = None

    @property
    def client(self) -> LdapClient:
        """Made on first use, not at configuration time: building a backend has no effects."""
        if self._client is None:
            self._client = self.directory.make_client()
        return self._client

    # -- configuration ----------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: Section) -> LdapAuthenticator:
        directory = read_directory(cfg)
        user_dn = read_template(cfg, "user_dn", ("username",), kind="dn", required=False,
                                needs="username")
        user_upn = read_template(cfg, "user_upn", ("username",), kind="upn", required=False,
                                 needs="username")
        if user_upn is not None and not re.fullmatch(r"\{username\}@[^@\s{}]+", user_upn):
            cfg.problem("user_upn", "expected \"{username}@DOMAIN\", e.g. "
                                    "\"{username}@example.test\"")
        search = None
        if "user_search" in cfg:
            table = cfg.table("user_search")
            search = UserSearch(
                base=table.str("base", nonempty=True),
                scope=read_scope(table, "scope"),
                filter=read_template(table, "filter", ("username",), kind="filter",
                                     needs="username") or "",
            )
            table.done()
        if [user_dn, user_upn].count(None) == 2 and search is None:
            cfg.problem("user_search", "give one of user_dn, user_upn or [user_search] to say "
                                       "how a login name becomes a directory entry")
        elif user_dn is not None and user_upn is not None:
            cfg.problem("user_upn", "give user_dn or user_upn, not both")
        reserved = {"username": "'username' is the canonical name (username_attribute)",
                    "dn": "'dn' is always the entry's DN"}
        attributes = read_attribute_map(cfg, "attributes", reserved)
        binary = cfg.str("binary_attributes", "hex", choices=BINARY_ENCODINGS)
        username_attribute = (cfg.str("username_attribute", nonempty=True)
                              if "username_attribute" in cfg else None)
        groups = _read_groups(cfg) if "groups" in cfg else None
        needs_entry = bool(attributes or username_attribute or groups)
        if needs_entry and user_upn is not None and search is None:
            cfg.problem("user_upn", "reading attributes or groups after a UPN bind needs "
                                    "[user_search] to find the entry")
        lookup = Lookup(user_dn, user_upn, search, username_attribute, attributes, binary, groups)
        return cls(directory, lookup)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- authentication -------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        # Defence in depth: the core refuses these with a 400 already. An empty
        # password would be an unauthenticated bind, which servers report as success.
        if not credentials.password or not credentials.username:
            return None
        try:
            return await self._authenticate(credentials.username, credentials.password)
        except BridgeError:
            raise
        except LdapError as exc:
            raise translate(exc) from exc
        except ValueError as exc:  # a filter the client cannot encode: the configuration's fault
            raise InternalError(f"LDAP configuration: {exc}") from exc

    async def _authenticate(self, username: str, password: str) -> Identity | None:
        lk = self.lookup
        entry: Entry | None = None
        if lk.user_dn is not None:
            bind_name = fill(lk.user_dn, escape_dn_value, username=username)
        elif lk.user_upn is not None:
            if _UPN_FORBIDDEN.search(username) or username != username.strip():
                logger.debug("LDAP: %r cannot be an AD logon name; refused without a bind",
                             username)
                return None
            bind_name = lk.user_upn.replace("{username}", username)
        else:
            entry = await self._find(username)
            if entry is None:
                return None
            bind_name = entry.dn
        result = await self.client.bind(bind_name, password)
        if not result.ok:
            if result.code == INVALID_CREDENTIALS:
                code = ad_data_code(result.message)
                if code in AD_REFUSALS:
                    raise NotPermitted(f"LDAP: {username!r} has the right password, but the "
                                       f"directory refuses the logon: {AD_REFUSALS[code]} "
                                       f"(AD data {code})")
                return None
            if result.code == 34:  # a typed name that is not a valid DN part: no such user
                return None
            raise translate(LdapOperationError(result, f"bind as {bind_name!r}"))
        if entry is None and (lk.attributes or lk.username_attribute or lk.groups):
            entry = await self._read_entry(bind_name, username)
        return await self._identity(username, entry)

    async def _find(self, username: str) -> Entry | None:
        search = self.lookup.search
        assert search is not None
        flt = fill(search.filter, escape_filter_value, username=username)
        entries = await self.client.search(search.base, search.scope, flt, self._wanted(),
                                           size_limit=2)
        if len(entries) != 1:
            logger.debug("LDAP: %d entries for %s: invalid credentials", len(entries), flt)
            return None
        return entries[0]

    async def _read_entry(self, bind_name: str, username: str) -> Entry:
        """The entry of a user who bound directly (by DN, or by UPN with a search)."""
        if self.lookup.search is not None:
            search = self.lookup.search
            flt = fill(search.filter, escape_filter_value, username=username)
            entries = await self.client.search(search.base, search.scope, flt, self._wanted(),
                                               size_limit=2)
            where = f"{flt} under {search.base!r}"
        else:
            entries = await self.client.search(bind_name, Scope.BASE, "(objectClass=*)",
                                               self._wanted())
            where = f"the entry {bind_name!r}"
        if len(entries) != 1:
            raise InternalError(f"LDAP: {username!r} bound, but {len(entries)} entries were "
                                f"found reading {where} (can the service account read it?)")
        return entries[0]

    def _wanted(self) -> list[str]:
        lk = self.lookup
        wanted = {*lk.attributes.values(), "userAccountControl", "accountExpires"}
        if lk.username_attribute:
            wanted.add(lk.username_attribute)
        if lk.groups is not None:
            if "memberOf" in lk.groups.membership:
                wanted.add("memberOf")
            if "memberUid" in lk.groups.membership:
                wanted.add(lk.groups.member_uid_attribute)
        return sorted(wanted)

    # -- identity and policy ------------------------------------------------------------

    async def _identity(self, username: str, entry: Entry | None) -> Identity:
        lk = self.lookup
        if entry is None:
            return Identity(username)
        account_refusal(entry, username)
        groups: dict[tuple, str] = {}
        if lk.groups is not None:
            groups = await self._groups(entry, lk.groups)
            if not lk.groups.allows(groups):
                raise NotPermitted(f"LDAP: {username!r} ({entry.dn}) is in none of the "
                                   f"required groups {list(lk.groups.required)}")
        attributes: dict[str, Scalar] = {"dn": entry.dn}
        for name, attribute in lk.attributes.items():
            value = first_text(entry, attribute, lk.binary)
            if value is not None:
                attributes[name] = value
        canonical = username
        if lk.username_attribute:
            canonical = first_text(entry, lk.username_attribute, lk.binary) or username
        return Identity(canonical, attributes, frozenset(groups.values()))

    async def _groups(self, entry: Entry, policy: GroupPolicy) -> dict[tuple, str]:
        """Every group found by the configured methods, keyed by a comparable DN."""
        found: dict[tuple, str] = {}
        methods = set(policy.membership)
        if "memberOf" in methods:
            for raw in entry.values("memberOf"):
                dn = raw.decode("utf-8", "replace")
                found.setdefault(dn_key(dn), dn)
        if policy.base is None:
            return found
        if "in_chain" in methods:
            await self._collect(policy, f"(member:{IN_CHAIN}:={escape_filter_value(entry.dn)})",
                                found)
        if "memberUid" in methods:
            uid = first_text(entry, policy.member_uid_attribute)
            if uid:
                await self._collect(policy, f"(memberUid={escape_filter_value(uid)})", found)
        member_attrs = [a for a in ("member", "uniqueMember") if a in methods]
        if member_attrs:
            await self._nested(entry.dn, member_attrs, policy, found)
        return found

    async def _nested(self, dn: str, attrs: list[str], policy: GroupPolicy,
                      found: dict[tuple, str]) -> None:
        """Groups that contain `dn`, then groups that contain those, to max_depth; no cycles."""
        seen = {dn_key(dn)}
        frontier = [dn]
        for _ in range(policy.max_depth if policy.nested else 1):
            clauses = [f"({a}={escape_filter_value(d)})" for d in frontier for a in attrs]
            frontier = []
            for i in range(0, len(clauses), _MAX_OR_CLAUSES):
                chunk = clauses[i:i + _MAX_OR_CLAUSES]
                flt = chunk[0] if len(chunk) == 1 else f"(|{''.join(chunk)})"
                for group in await self._collect(policy, flt, found):
                    if (key := dn_key(group)) not in seen:
                        seen.add(key)
                        frontier.append(group)
            if not frontier:
                return
        logger.debug("LDAP: group nesting of %s deeper than %d levels: stopped there",
                     dn, policy.max_depth)

    async def _collect(self, policy: GroupPolicy, flt: str, found: dict[tuple, str]) -> list[str]:
        assert policy.base is not None
        if policy.filter:
            flt = f"(&{policy.filter}{flt})"
        entries = await self.client.search(policy.base, policy.scope, flt, ["1.1"])
        for e in entries:
            found.setdefault(dn_key(e.dn), e.dn)
        return [e.dn for e in entries]


def account_refusal(entry: Entry, username: str, now: float | None = None) -> None:
    """Refuse AD entries that are disabled or expired (NotPermitted), even if a bind worked."""
    uac = first_text(entry, "userAccountControl")
    if uac and uac.lstrip("-").isdigit() and int(uac) & UAC_ACCOUNTDISABLE:
        raise NotPermitted(f"LDAP: {username!r} ({entry.dn}) is disabled "
                           f"(userAccountControl {uac})")
    expires = first_text(entry, "accountExpires")
    if expires and expires.lstrip("-").isdigit() and int(expires) not in _NEVER:
        at = (int(expires) - _FILETIME_EPOCH) / 10_000_000
        if at <= (time.time() if now is None else now):
            raise NotPermitted(f"LDAP: {username!r} ({entry.dn}) expired at "
                               f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(at))}")


def translate(exc: LdapError) -> BridgeError:
    """LDAP failure -> the gateway's error classes (the detail goes to the log only)."""
    if isinstance(exc, LdapTimeout):
        return UpstreamTimeout(f"LDAP: {exc}")
    if isinstance(exc, LdapOperationError):
        code = exc.result.code
        if code in CONFIG_CODES:
            return InternalError(f"LDAP configuration: {exc} [{CONFIG_CODES[code]}]")
        return UpstreamUnavailable(f"LDAP: {exc} (result {code})")
    return UpstreamUnavailable(f"LDAP: {exc}")


def _read_groups(cfg: Section) -> GroupPolicy:
    table = cfg.table("groups")
    d = GroupPolicy()
    required = table.list_str("required", [])
    raw_membership = table.raw("membership", list(d.membership))
    membership = [raw_membership] if isinstance(raw_membership, str) else raw_membership
    if not isinstance(membership, list) or not membership or any(
            m not in MEMBERSHIPS for m in membership):
        table.problem("membership", f"expected one or a list of {', '.join(map(repr, MEMBERSHIPS))}"
                                    f", received {membership!r}")
        membership = list(d.membership)
    base = table.str("base", None, nonempty=True) if "base" in table else None
    if base is None and set(membership) - {"memberOf"}:
        table.problem("base", "is required to search for groups (membership other than "
                              "\"memberOf\")")
    policy = GroupPolicy(
        required=tuple(required),
        membership=tuple(membership),
        base=base,
        scope=read_scope(table, "scope"),
        filter=read_template(table, "filter", (), kind="filter", required=False),
        nested=table.bool("nested", d.nested),
        max_depth=table.int("max_depth", d.max_depth, min=1, max=64),
        member_uid_attribute=table.str("member_uid_attribute", d.member_uid_attribute,
                                       nonempty=True),
    )
    table.done()
    return policy

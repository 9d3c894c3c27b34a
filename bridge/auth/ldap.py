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

Placeholders (bridge.placeholders; `{{`/`}}` are literal braces): the templates
user_dn, user_upn and user_search.filter can hold one thing, what the phone
typed: `{login.username}`, or its alias `{username}` (the older spelling,
kept). No identity exists yet, and `{login.password}` has no place in a DN
or a filter. [auth.groups] filter holds no placeholders. A typed name that
cannot be placed (a NUL into a DN, a character AD forbids in a logon name)
is invalid credentials, without a bind: it cannot be anyone's.

`{identity.dn}` is always set (the account source's default base is "{dn}"):
the entry's DN when the entry is read (a search, attributes or groups), else
the DN bound (user_dn), and for a UPN bind with nothing else configured the
entry found, as the user who just bound, by (userPrincipalName=UPN) under the
domain's defaultNamingContext (read from the root DSE once). An account
without a userPrincipalName value (bound by its implicit UPN) has no entry to
find: its identity has no `dn` and the log says why; use [auth.user_search].

Round trips per login (what the benchmark counts with slapd's monitor):
search-then-bind reads the attributes with the search that finds the entry,
so the bind is the only other operation. A direct bind (user_dn, or user_upn
with [auth.user_search]) that needs the entry reads it afterwards: as the
service account by default (`read_entry_as = "service"`, a second pooled
connection), or with `read_entry_as = "user"` on the connection the user has
just bound, right after the bind (no service account connection, and a
directory that hides entries from the service account still answers). Use
"user" only where users may read their own entry; an operator can tell with
`ldapwhoami -x -D USERDN -W` and `ldapsearch -x -D USERDN -W -b USERDN -s base
ATTRIBUTES`: the entry and the attributes must come back. Where they do not,
the login is a 500 naming the setting, never a wrong password.

Group lookups ("which groups contain this DN?", the user's at the first level
and a group's at every nested level) are cached per DN looked up for
`[auth.groups] cache_ttl` seconds (default 30; 0 turns it off): a change of
membership takes effect within that time, never later, and a lookup that
failed is not cached. With memberOf the groups come with the entry and cost no
lookup at all.

A wrong password is a result (None), not an error; so is an unknown user,
and so is an AD bind refused with data 52e/525. So is 775 (account locked
out): AD answers it to ANY password, so telling it apart would confirm to a
guesser that the account exists and is locked, and the attempt must count as
a failure. AD's other sub-codes (533 disabled, 701 expired, 773 must change
password, 530/531 logon hours/workstation, 532 password expired) are only
answered to the right password (Microsoft's documentation of the codes, and
Samba for 533/701/773, tests/ad): "right password, but no", NotPermitted,
like a missing required group or a disabled/expired entry
(userAccountControl, accountExpires).

A directory that cannot answer raises UpstreamUnavailable/UpstreamTimeout
(503), and so does a service account the server refuses: an outage of the
operator's making, which the LDAP clients do not retry per request (see
bridge.ldap.client). Result codes that can only come from a wrong
configuration (no such base, bad DN syntax, a server that wants TLS) raise
InternalError so that they are not retried as an outage.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator
from pydantic_core import PydanticCustomError

from bridge import placeholders
from bridge.auth import Authenticator
from bridge.config import Model, describe, problem
from bridge.errors import BridgeError, InternalError, NotPermitted
from bridge.ldap import escape
from bridge.ldap.checked import Checked
from bridge.ldap.client import (
    INVALID_CREDENTIALS,
    Entry,
    LdapClient,
    LdapError,
    LdapOperationError,
    LdapResult,
    Scope,
    SearchRequest,
)
from bridge.ldap.config import (
    AUTH_ALIASES,
    Binary,
    DirectoryConfig,
    NonEmpty,
    ScopeName,
    attribute_map,
    first_text,
    probe,
    render_dn,
    render_filter,
    template,
)
from bridge.ldap.errors import translate
from bridge.ldap.escape import ad_data_code
from bridge.models import Credentials, Identity, Scalar
from bridge.placeholders import Escaper, Refused, Template, UnsafeValue, Values

logger = logging.getLogger("bridge.auth.ldap")

IN_CHAIN = "1.2.840.113556.1.4.1941"  # AD's LDAP_MATCHING_RULE_IN_CHAIN
MEMBERSHIPS = ("member", "uniqueMember", "memberUid", "memberOf", "in_chain")
# AD bind sub-codes (the "data NNN" of a result 49) that mean: password right, logon refused.
# AD answers them only to the right password (to a wrong one: 52e).
AD_REFUSALS = {
    "530": "logon not permitted at this time",
    "531": "logon not permitted from this workstation",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "password must be changed",
}
# Answered to ANY password: invalid credentials, or a guesser learns the account exists.
AD_LOCKED_OUT = "775"
# Characters AD forbids in logon names; in a UPN bind they could change how the name is read.
_UPN_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@\x00-\x1f\x7f]')
UAC_ACCOUNTDISABLE = 0x2


def _logon_name(text: str) -> str:
    if _UPN_FORBIDDEN.search(text) or text != text.strip():
        raise Refused("a character AD forbids in logon names, or spaces at an end")
    return text


UPN = Escaper("an AD logon name", _logon_name)
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 to 1970-01-01 in 100 ns steps
_NEVER = {0, 0x7FFFFFFFFFFFFFFF}
_MAX_OR_CLAUSES = 100
DnKey = tuple[tuple[tuple[str, str], ...], ...]  # escape.dn_key: a DN to compare
# The same DNs (groups, bases, required groups, users) come back on every login: parsed
# once (they were a tenth of the gateway's CPU in the AD-like benchmark).
dn_key = functools.lru_cache(maxsize=8192)(escape.dn_key)
rdn_value = functools.lru_cache(maxsize=8192)(escape.rdn_value)
escape_filter_value = functools.lru_cache(maxsize=8192)(escape.escape_filter_value)

# -- the table ----------------------------------------------------------------------------

_TYPED = placeholders.Field("login", "username")
_AS_TYPED = ("login.username",)
UserDn = Annotated[Template, PlainValidator(template("dn", _AS_TYPED, AUTH_ALIASES, _TYPED))]
UserUpn = Annotated[Template, PlainValidator(template("upn", _AS_TYPED, AUTH_ALIASES, _TYPED))]
UserFilter = Annotated[Template, PlainValidator(template("filter", _AS_TYPED, AUTH_ALIASES,
                                                         _TYPED))]
GroupFilter = Annotated[Template, PlainValidator(template("filter", ()))]
Attributes = Annotated[dict[str, str], PlainValidator(attribute_map({
    "username": "'username' is the canonical name (username_attribute)",
    "dn": "'dn' is always the entry's DN"}))]


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise problem(f"expected a list of strings, received {describe(value)}")


def _memberships(value: Any) -> tuple[str, ...]:
    methods = [value] if isinstance(value, str) else value
    if not isinstance(methods, list | tuple) or not methods or any(
            m not in MEMBERSHIPS for m in methods):
        raise problem(f"expected one or a list of {', '.join(map(repr, MEMBERSHIPS))}, "
                      f"received {describe(value)}")
    return tuple(methods)


class UserSearch(Model):
    """`[auth.user_search]`: find the entry (as the service account), then bind as it."""

    base: NonEmpty
    scope: ScopeName = Scope.SUBTREE
    filter: UserFilter


class GroupPolicy(Checked):
    """`[auth.groups]`: who may log in, by group; and the groups of an identity."""

    required: Annotated[tuple[str, ...], PlainValidator(_names)] = ()
    """DNs, or bare names matched against the first RDN of a group under `base`."""
    membership: Annotated[tuple[str, ...], PlainValidator(_memberships)] = ("member",)
    base: NonEmpty | None = None
    scope: ScopeName = Scope.SUBTREE
    filter: GroupFilter | None = None
    """ANDed with every group search."""
    nested: bool = True
    max_depth: int = Field(8, ge=1, le=64)
    member_uid_attribute: NonEmpty = "uid"
    cache_ttl: float = Field(30.0, ge=0, le=3600)
    """Seconds a group lookup is reused; 0: every login asks the directory."""

    def rules(self) -> Iterator[PydanticCustomError]:
        if not self.valid("base"):
            return
        # an invalid membership list still says which methods are meant
        raw = self.given("membership")
        methods = set(self.membership) if self.valid("membership") else {
            m for m in ([raw] if isinstance(raw, str) else raw if isinstance(raw, list) else [])
            if isinstance(m, str)}
        if self.base is None and methods & set(MEMBERSHIPS) - {"memberOf"}:
            yield problem("is required to search for groups (membership other than "
                          "\"memberOf\")", "base")
        bare = [name for name in self.required if "=" not in name] \
            if self.valid("required") else []
        if bare and self.base is None:
            yield problem(f"bare group names ({', '.join(map(repr, bare))}) only match groups "
                          "under [groups] base: set base, or give the groups' DNs", "required")

    def allows(self, groups: dict[DnKey, str]) -> bool:
        """Any required DN among `groups`, or a bare name as the first RDN of a group in scope.

        Bare names only count for groups under `base` (within `scope`): a group
        of that name elsewhere (found through memberOf, which lists groups
        anywhere) must not let anyone in.
        """
        if not self.required:
            return True
        names = {rdn_value(dn).casefold() for key, dn in groups.items() if self.in_scope(key)} \
            if any("=" not in r for r in self.required) else set()
        return any((dn_key(r) in groups) if "=" in r else (r.casefold() in names)
                   for r in self.required)

    def in_scope(self, key: DnKey) -> bool:
        """Whether a group (its dn_key) lies where the group searches look: base and scope."""
        if self.base is None:
            return False
        base = dn_key(self.base)
        depth = len(key) - len(base)
        if depth < 0 or key[depth:] != base:
            return False
        return {Scope.BASE: depth == 0, Scope.ONELEVEL: depth == 1}.get(self.scope, True)


class LdapAuthConfig(DirectoryConfig):
    """`[auth] type = "ldap"`: the connection keys, how a name becomes an entry, what is read."""

    user_dn: UserDn | None = None
    user_upn: UserUpn | None = None
    user_search: UserSearch | None = None
    username_attribute: NonEmpty | None = None
    attributes: Attributes = Field(default_factory=dict)
    binary_attributes: Binary = "hex"
    groups: GroupPolicy | None = None
    read_entry_as: Literal["service", "user"] = "service"
    """Who reads the entry after a direct bind: the service account, or the user just bound."""

    def rules(self) -> Iterator[PydanticCustomError]:
        yield from super().rules()
        if not self.valid("user_dn", "user_upn", "user_search"):
            return
        if self.user_dn is None and self.user_upn is None and self.user_search is None:
            yield problem("give one of user_dn, user_upn or [user_search] to say how a login "
                          "name becomes a directory entry", "user_search")
        elif self.user_dn is not None and self.user_upn is not None:
            yield problem("give user_dn or user_upn, not both", "user_upn")
        if self.user_upn is not None and self.user_search is None \
                and self.valid("attributes", "username_attribute", "groups") \
                and self.needs_entry:
            yield problem("reading attributes or groups after a UPN bind needs [user_search] "
                          "to find the entry", "user_upn")

    @property
    def needs_entry(self) -> bool:
        """Whether the entry is read after the bind (attributes, canonical name, groups)."""
        return bool(self.attributes or self.username_attribute or self.groups)


GroupHits = tuple[tuple[DnKey, str], ...]  # (dn_key, dn) of each group a lookup found


class GroupCache:
    """What each group lookup found, for `ttl` seconds (monotonic), keyed by its filter.

    Never served past its ttl. Bounded: when `limit` keys are held, expired ones go,
    then the oldest. A lookup that raised is not stored (an outage is not an answer).
    """

    def __init__(self, ttl: float, limit: int = 50_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._hits: dict[str, tuple[float, GroupHits]] = {}

    def get(self, key: str, now: float) -> GroupHits | None:
        held = self._hits.get(key)
        if held is None:
            return None
        if held[0] <= now:
            del self._hits[key]
            return None
        return held[1]

    def put(self, key: str, hits: GroupHits, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._hits) >= self.limit:
            for k in [k for k, (until, _) in self._hits.items() if until <= now]:
                del self._hits[k]
            while len(self._hits) >= self.limit:
                del self._hits[next(iter(self._hits))]
        self._hits.pop(key, None)  # re-inserted last: the oldest stay first
        self._hits[key] = (now + self.ttl, hits)


class LdapAuthenticator(Authenticator):
    Config = LdapAuthConfig

    def __init__(self, config: LdapAuthConfig) -> None:
        super().__init__(config)
        self.config: LdapAuthConfig = config
        self.directory = config.directory()
        self._client: LdapClient | None = None
        self._base: str | None = None  # defaultNamingContext, for UPN binds ("": none)
        self._attributes: list[str] | None = None  # _wanted(), once
        self.group_cache = GroupCache(config.groups.cache_ttl if config.groups else 0.0)

    @property
    def client(self) -> LdapClient:
        """Made on first use, not at configuration time: building a backend has no effects."""
        if self._client is None:
            self._client = self.directory.make_client()
        return self._client

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ready(self) -> None:
        """A root DSE read as the service account (anonymously without one): UpstreamError."""
        await probe(self.client)

    # -- authentication -------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        # Defence in depth: the core refuses these with a 400 already. An empty
        # password would be an unauthenticated bind, which servers report as success.
        if not credentials.password or not credentials.username:
            return None
        try:
            return await self._authenticate(credentials.username, credentials.password)
        except UnsafeValue as exc:
            # Only what the phone typed is placed here: a name that cannot be placed
            # (a NUL into a DN, a character AD forbids in a logon name) is no one's.
            logger.debug("LDAP: refused without asking the directory: %s", exc.detail)
            return None
        except BridgeError:
            raise
        except LdapError as exc:
            raise translate(exc) from exc
        except ValueError as exc:  # a filter the client cannot encode: the configuration's fault
            raise InternalError(f"LDAP configuration: {exc}") from exc

    async def _authenticate(self, username: str, password: str) -> Identity | None:
        lk = self.config
        entry: Entry | None = None
        lookup = Values(Credentials(username, password)).lookup
        by_upn_alone = lk.user_upn is not None and lk.user_search is None
        if lk.user_dn is not None:
            bind_name = render_dn(lk.user_dn, lookup)
        elif lk.user_upn is not None:
            bind_name = lk.user_upn.render(lookup, UPN)
        else:
            entry = await self._find(username)
            if entry is None:
                return None
            bind_name = entry.dn
        as_user = entry is None and lk.needs_entry and lk.read_entry_as == "user"
        read: list[Entry] = []
        where = ""
        if by_upn_alone:
            result, dn = await self._bind_by_upn(bind_name, password, username)
        elif as_user:  # the bind and the read on one connection, one after the other
            request, where = self._entry_request(bind_name, username)
            try:
                result, read = await self.client.bind_and_search(bind_name, password, request)
            except LdapOperationError as exc:  # from the read: the bind succeeded
                raise InternalError(f"LDAP: {username!r} bound, but reading its own entry "
                                    f"failed ({exc}): can users read their own entry? If "
                                    "not, set read_entry_as = \"service\"") from exc
            dn = bind_name
        else:
            result, dn = await self.client.bind(bind_name, password), bind_name
        if not result.ok:
            if result.code == INVALID_CREDENTIALS:
                code = ad_data_code(result.message)
                if code == AD_LOCKED_OUT:
                    logger.info("LDAP: %r is locked out (AD data 775), answered as invalid "
                                "credentials: AD says so to any password", username)
                    return None
                if code in AD_REFUSALS:
                    raise NotPermitted(f"LDAP: {username!r} has the right password, but the "
                                       f"directory refuses the logon: {AD_REFUSALS[code]} "
                                       f"(AD data {code})")
                return None
            if result.code == 34:  # a typed name that is not a valid DN part: no such user
                return None
            raise translate(LdapOperationError(result, f"bind as {bind_name!r}"))
        if as_user:
            entry = self._only(read, where, username, "as itself")
        elif entry is None and lk.needs_entry:
            entry = await self._read_entry(bind_name, username)
        elif entry is None and lk.user_upn is not None and not by_upn_alone:
            # a UPN is not a DN: the search finds it (only the DN is wanted here)
            found = await self._read_entry(bind_name, username, required=False)
            dn = found.dn if found is not None else None
        if entry is None:  # a bind and nothing else: {identity.dn} is the DN bound, or found
            return Identity(username, {"dn": dn} if dn else {})
        return await self._identity(username, entry)

    async def _bind_by_upn(self, upn: str, password: str,
                           username: str) -> tuple[LdapResult, str | None]:
        """A UPN bind, then the entry's DN found as that user: no service account needed."""
        base = await self._naming_context()
        if base is None:
            return await self.client.bind(upn, password), None
        request = SearchRequest(base, Scope.SUBTREE,
                                f"(userPrincipalName={escape_filter_value(upn)})", ["1.1"],
                                size_limit=2)
        try:
            result, entries = await self.client.bind_and_search(upn, password, request)
        except LdapOperationError as exc:  # raised by the search only: the bind succeeded
            logger.warning("LDAP: %r bound, but searching for its entry as itself failed "
                           "(%s): no {identity.dn}", username, exc)
            return LdapResult(0), None
        if not result.ok:
            return result, None
        if len(entries) != 1:
            logger.warning("LDAP: %r bound as %r, but %d entries have that userPrincipalName "
                           "under %r (bound by an implicit UPN?): no {identity.dn}; "
                           "[auth.user_search] finds entries by any attribute", username, upn,
                           len(entries), base)
            return result, None
        return result, entries[0].dn

    async def _naming_context(self) -> str | None:
        """The domain's DN (root DSE defaultNamingContext), read once; None: not AD."""
        if self._base is None:
            entries = await self.client.search("", Scope.BASE, "(objectClass=*)",
                                               ["defaultNamingContext"])
            value = first_text(entries[0], "defaultNamingContext") if entries else None
            if not value:
                logger.warning("LDAP: the root DSE has no defaultNamingContext (not Active "
                               "Directory?): UPN logins get no {identity.dn}; use "
                               "[auth.user_search] to find entries")
            self._base = value or ""
        return self._base or None

    async def _find(self, username: str) -> Entry | None:
        search = self.config.user_search
        assert search is not None
        flt = render_filter(search.filter, Values(Credentials(username, "")).lookup)
        entries = await self.client.search(search.base, search.scope, flt, self._wanted(),
                                           size_limit=2)
        if len(entries) != 1:
            logger.debug("LDAP: %d entries for %s: invalid credentials", len(entries), flt)
            return None
        return entries[0]

    async def _read_entry(self, bind_name: str, username: str, *,
                          required: bool = True) -> Entry | None:
        """The entry of a user who bound directly (by DN, or by UPN with a search).

        Not found (or found twice): InternalError, or None and a warning when only the DN
        was wanted (`required=False`).
        """
        request, where = self._entry_request(bind_name, username)
        entries = await self.client.search(request.base, request.scope, request.filter,
                                           request.attributes, size_limit=request.size_limit)
        return self._only(entries, where, username, "as the service account", required)

    def _entry_request(self, bind_name: str, username: str) -> tuple[SearchRequest, str]:
        """How the entry of a user who bound directly is read, and how to name it in a log."""
        search = self.config.user_search
        if search is not None:
            flt = render_filter(search.filter, Values(Credentials(username, "")).lookup)
            return (SearchRequest(search.base, search.scope, flt, self._wanted(), size_limit=2),
                    f"{flt} under {search.base!r}")
        return (SearchRequest(bind_name, Scope.BASE, "(objectClass=*)", self._wanted()),
                f"the entry {bind_name!r}")

    @staticmethod
    def _only(entries: list[Entry], where: str, username: str, reader: str,
              required: bool = True) -> Entry | None:
        if len(entries) != 1:
            problem = (f"LDAP: {username!r} bound, but {len(entries)} entries were found "
                       f"reading {where} {reader} (may it read the entry?)")
            if required:
                raise InternalError(problem)
            logger.warning("%s: no {identity.dn}", problem)
            return None
        return entries[0]

    def _wanted(self) -> list[str]:
        """The attributes every entry read asks for: fixed by the configuration, made once."""
        if self._attributes is None:
            self._attributes = self._attributes_wanted()
        return self._attributes

    def _attributes_wanted(self) -> list[str]:
        lk = self.config
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

    async def _identity(self, username: str, entry: Entry) -> Identity:
        lk = self.config
        account_refusal(entry, username)
        groups: dict[DnKey, str] = {}
        if lk.groups is not None:
            groups = await self._groups(entry, lk.groups)
            if not lk.groups.allows(groups):
                raise NotPermitted(f"LDAP: {username!r} ({entry.dn}) is in none of the "
                                   f"required groups {list(lk.groups.required)}")
        attributes: dict[str, Scalar] = {"dn": entry.dn}
        for name, attribute in lk.attributes.items():
            value = first_text(entry, attribute, lk.binary_attributes)
            if value is not None:
                attributes[name] = value
        canonical = username
        if lk.username_attribute:
            canonical = first_text(entry, lk.username_attribute, lk.binary_attributes) or username
        return Identity(canonical, attributes, frozenset(groups.values()))

    async def _groups(self, entry: Entry, policy: GroupPolicy) -> dict[DnKey, str]:
        """Every group found by the configured methods, keyed by a comparable DN."""
        found: dict[DnKey, str] = {}
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
        member_attrs: list[str] = [a for a in ("member", "uniqueMember") if a in methods]
        if member_attrs:
            await self._nested(entry.dn, member_attrs, policy, found)
        return found

    async def _nested(self, dn: str, attrs: list[str], policy: GroupPolicy,
                      found: dict[DnKey, str]) -> None:
        """Groups that contain `dn`, then groups that contain those, to max_depth; no cycles.

        With the cache on, each DN is one lookup (its answer reusable by every login
        whose groups contain it); without, a level is one search (OR of its DNs).
        """
        seen = {dn_key(dn)}
        frontier = [dn]
        for _ in range(policy.max_depth if policy.nested else 1):
            clauses = [[f"({a}={escape_filter_value(d)})" for a in attrs] for d in frontier]
            if self.group_cache.ttl <= 0:
                flat = [c for per_dn in clauses for c in per_dn]
                clauses = [flat[i:i + _MAX_OR_CLAUSES]
                           for i in range(0, len(flat), _MAX_OR_CLAUSES)]
            frontier = []
            for chunk in clauses:
                flt = chunk[0] if len(chunk) == 1 else f"(|{''.join(chunk)})"
                for key, group in await self._collect(policy, flt, found):
                    if key not in seen:
                        seen.add(key)
                        frontier.append(group)
            if not frontier:
                return
        logger.debug("LDAP: group nesting of %s deeper than %d levels: stopped there",
                     dn, policy.max_depth)

    async def _collect(self, policy: GroupPolicy, flt: str, found: dict[DnKey, str]) -> GroupHits:
        """The groups one search finds (from the cache within its ttl), added to `found`."""
        assert policy.base is not None
        if policy.filter is not None:
            flt = f"(&{policy.filter.literal}{flt})"
        hits = self.group_cache.get(flt, time.monotonic())
        if hits is None:
            entries = await self.client.search(policy.base, policy.scope, flt, ["1.1"])
            hits = tuple((dn_key(e.dn), e.dn) for e in entries)
            self.group_cache.put(flt, hits, time.monotonic())
        for key, dn in hits:
            found.setdefault(key, dn)
        return hits


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

"""SIP accounts from the directory alone.

    [source]
    type = "ldap"
    from = "identity"          # the default: no directory traffic at all
    require = ["extension"]    # accounts without these fields are dropped (-> 404)

`from = "identity"` reuses what the authenticator already read: one account
whose fields are the identity's attributes (`[auth.attributes]`, plus `dn`).
It works after any authenticator, and costs nothing.

`from = "directory"` searches as its own service account (same connection
keys as `[auth]`, its own pool) for accounts the identity cannot carry:
several entries, or one account per value of a multi-valued attribute. With
`from = "identity"` those keys are errors: they would be silently unused.

    base = "{identity.dn}"                 # or "ou=phones,dc=example,dc=org"; "{dn}" too
    scope = "base"                         # "base", "one" or "sub"
    filter = "(objectClass=*)"             # e.g. "(owner={identity.dn})", filter-escaped
    per_value = "extension"                # one account per value of this field
    [source.fields]
    extension = "telephoneNumber"          # field = attribute (first value unless per_value)

Placeholders (bridge.placeholders; `{{`/`}}` are literal braces) in `base`
and `filter`: `{identity.dn}` (alias `{dn}`) is the identity's `dn`
attribute, the DN the login bound or read: in `base` a whole DN, placed as
it is once checked to be one, in a filter an escaped value.
`{identity.username}` (alias `{username}`: here the CANONICAL name, unlike
[auth], where `{username}` is what was typed) and `{identity.<attribute>}`
are what the authenticator returned, and `{login.username}` is what the phone
typed; each is RFC 4514-escaped in `base` and RFC 4515-escaped in filters. A
value that cannot be placed (a NUL into a DN, a `dn` that is not a DN) is a
500 naming the field, never "no account". The LDAP authenticator always sets
`dn` (the entry read, the DN bound, or for an AD login by UPN alone the entry
found as that user; see bridge.auth.ldap); after another authenticator,
`{dn}` needs a `dn` attribute from it, or use `{username}`. Accounts come in the server's order, and
per_value accounts in the order of the values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, PlainValidator
from pydantic_core import PydanticCustomError

from bridge.config import problem
from bridge.errors import BridgeError, InternalError
from bridge.ldap.client import Entry, LdapClient, LdapError, Scope
from bridge.ldap.config import (
    SOURCE_ALIASES,
    WHOLE_DN,
    Binary,
    DirectoryConfig,
    NonEmpty,
    ScopeName,
    attribute_map,
    probe,
    render_dn,
    render_filter,
    template,
    text_value,
)
from bridge.ldap.errors import translate
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.placeholders import MissingField, Template, Values
from bridge.sources import AccountSource

_ALLOW = ("identity", "login.username")
_base = template("dn", _ALLOW, SOURCE_ALIASES)
_filter = template("filter", _ALLOW, SOURCE_ALIASES)
BaseTemplate = Annotated[Template, PlainValidator(_base)]
FilterTemplate = Annotated[Template, PlainValidator(_filter)]
Fields = Annotated[dict[str, str], PlainValidator(attribute_map(
    {"dn": "'dn' is always the entry's DN"}))]
# Keys of the search itself; with the connection keys, only read with from = "directory".
SEARCH_KEYS = ("base", "scope", "filter", "fields", "per_value", "max_accounts",
               "binary_attributes")


class LdapSourceConfig(DirectoryConfig):
    """`[source] type = "ldap"`: the identity's attributes, or a search of its own."""

    origin: Literal["identity", "directory"] = Field("identity", alias="from")
    require: list[str] = Field(default_factory=list)
    """Accounts without these fields are dropped."""
    base: BaseTemplate = _base("{dn}")
    scope: ScopeName = Scope.BASE
    filter: FilterTemplate = _filter("(objectClass=*)")
    fields: Fields = Field(default_factory=dict)
    per_value: NonEmpty | None = None
    """One account per value of this field (a multi-valued attribute)."""
    max_accounts: int = Field(20, ge=1, le=1000)
    binary_attributes: Binary = "hex"

    def connects(self) -> bool:
        return self.valid("origin") and self.origin == "directory"

    def rules(self) -> Iterator[PydanticCustomError]:
        yield from super().rules()
        if not self.valid("origin"):
            return
        if self.origin == "identity":
            for name in [*DirectoryConfig.model_fields, *SEARCH_KEYS]:
                if name in self.model_fields_set:
                    yield problem("only used with from = \"directory\"", name)
            return
        if self.valid("fields") and not self.fields:
            yield problem("needs at least one field = \"ldapAttribute\"", "fields")
        if self.valid("fields", "per_value") and self.fields and self.per_value is not None \
                and self.per_value not in self.fields:
            yield problem(f"{self.per_value!r} is not one of [fields]: "
                          f"{', '.join(self.fields)}", "per_value")


class LdapSource(AccountSource):
    Config = LdapSourceConfig

    def __init__(self, config: LdapSourceConfig) -> None:
        super().__init__(config)
        self.require = tuple(config.require)
        self.directory = config.directory() if config.origin == "directory" else None
        self.base = config.base
        self.scope = config.scope
        self.filter = config.filter
        self.fields = dict(config.fields)
        self.per_value = config.per_value
        self.max_accounts = config.max_accounts
        self.binary = config.binary_attributes
        self._client: LdapClient | None = None

    @property
    def client(self) -> LdapClient | None:
        """The directory client (from = "directory" only), made on first use."""
        if self._client is None and self.directory is not None:
            self._client = self.directory.make_client()
        return self._client

    async def start(self) -> None:
        if self.client is not None:
            await self.client.start()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ready(self) -> None:
        """from = "directory": a root DSE read as its service account; else nothing to check."""
        if self.client is not None:
            await probe(self.client)

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        if self.directory is None:
            found = [dict(identity.attributes)]
        else:
            try:
                found = await self._search(identity, credentials)
            except BridgeError:
                raise
            except LdapError as exc:
                raise translate(exc) from exc
        return [Account(f) for f in found if all(name in f for name in self.require)]

    async def _search(self, identity: Identity,
                      credentials: Credentials) -> list[dict[str, Scalar]]:
        assert self.client is not None
        lookup = Values(credentials, identity).lookup
        try:
            base = render_dn(self.base, lookup)
            flt = render_filter(self.filter, lookup)
        except MissingField as exc:
            if str(exc) == str(WHOLE_DN):
                raise InternalError(f"LDAP source: identity {identity.username!r} has no 'dn' "
                                    "(the LDAP authenticator sets it unless the log says why "
                                    "not; after another authenticator use {username}, not "
                                    "{dn})") from None
            raise InternalError(f"LDAP source: {exc} has no value for user "
                                f"{identity.username!r}") from None
        entries = await self.client.search(base, self.scope, flt, sorted(set(self.fields.values())),
                                           size_limit=self.max_accounts)
        accounts: list[dict[str, Scalar]] = []
        for entry in entries:
            accounts.extend(self._accounts(entry))
        return accounts[:self.max_accounts]

    def _accounts(self, entry: Entry) -> list[dict[str, Scalar]]:
        common: dict[str, Scalar] = {"dn": entry.dn}
        for name, attribute in self.fields.items():
            values = entry.values(attribute)
            if values:
                common[name] = text_value(attribute, values[0], self.binary)
        if self.per_value is None:
            return [common]
        attribute = self.fields[self.per_value]
        return [{**common, self.per_value: text_value(attribute, raw, self.binary)}
                for raw in entry.values(attribute)]

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
several entries, or one account per value of a multi-valued attribute.

    base = "{dn}"                          # or "ou=phones,dc=example,dc=org"
    scope = "base"                         # "base", "one" or "sub"
    filter = "(objectClass=*)"             # {dn} and {username}, escaped for filters
    per_value = "extension"                # one account per value of this field
    [source.fields]
    extension = "telephoneNumber"          # field = attribute (first value unless per_value)

`{dn}` is the identity's `dn` attribute, put into `base` as it is and into
filters escaped; `{username}` is the identity's canonical name, DN-escaped in
`base`. The LDAP authenticator always sets `dn` (the entry read, the DN bound,
or for an AD login by UPN alone the entry found as that user; see
bridge.auth.ldap); after another authenticator, `{dn}` needs a `dn` attribute
from it, or use `{username}`. Accounts come in the server's order, and
per_value accounts in the order of the values.
"""

from __future__ import annotations

from bridge.config import Section
from bridge.errors import BridgeError, InternalError
from bridge.ldap.client import Entry, LdapClient, LdapError, Scope
from bridge.ldap.config import (
    BINARY_ENCODINGS,
    Directory,
    read_attribute_map,
    read_directory,
    read_scope,
    read_template,
    text_value,
)
from bridge.ldap.errors import translate
from bridge.ldap.escape import escape_dn_value, escape_filter_value, fill
from bridge.models import Account, Credentials, Identity, Scalar
from bridge.sources import AccountSource

DIRECTORY_KEYS = ("base", "scope", "filter", "fields", "per_value", "max_accounts",
                  "binary_attributes")


class LdapSource(AccountSource):
    def __init__(
        self,
        *,
        require: tuple[str, ...] = (),
        directory: Directory | None = None,
        base: str = "{dn}",
        scope: Scope = Scope.BASE,
        filter: str = "(objectClass=*)",
        fields: dict[str, str] | None = None,
        per_value: str | None = None,
        max_accounts: int = 20,
        binary: str = "hex",
    ) -> None:
        self.require = require
        self.directory = directory
        self.base = base
        self.scope = scope
        self.filter = filter
        self.fields = dict(fields or {})
        self.per_value = per_value
        self.max_accounts = max_accounts
        self.binary = binary
        self._client: LdapClient | None = None

    @property
    def client(self) -> LdapClient | None:
        """The directory client (from = "directory" only), made on first use."""
        if self._client is None and self.directory is not None:
            self._client = self.directory.make_client()
        return self._client

    @classmethod
    def from_config(cls, cfg: Section) -> LdapSource:
        origin = cfg.str("from", "identity", choices=("identity", "directory"))
        require = tuple(cfg.list_str("require", []))
        if origin != "directory":
            for key in DIRECTORY_KEYS:
                if key in cfg:
                    cfg.problem(key, "only used with from = \"directory\"")
                    cfg.mark(key)
            return cls(require=require)
        directory = read_directory(cfg)
        fields = read_attribute_map(cfg, "fields", {"dn": "'dn' is always the entry's DN"})
        if not fields:
            cfg.problem("fields", "needs at least one field = \"ldapAttribute\"")
        per_value = cfg.str("per_value", None, nonempty=True) if "per_value" in cfg else None
        if per_value is not None and fields and per_value not in fields:
            cfg.problem("per_value", f"{per_value!r} is not one of [fields]: "
                                     f"{', '.join(fields)}")
        return cls(
            require=require,
            directory=directory,
            base=read_template(cfg, "base", ("dn", "username"), kind="dn", required=False)
            or "{dn}",
            scope=read_scope(cfg, "scope", "base"),
            filter=read_template(cfg, "filter", ("dn", "username"), kind="filter",
                                 required=False) or "(objectClass=*)",
            fields=fields,
            per_value=per_value,
            max_accounts=cfg.int("max_accounts", 20, min=1, max=1000),
            binary=cfg.str("binary_attributes", "hex", choices=BINARY_ENCODINGS),
        )

    async def start(self) -> None:
        if self.client is not None:
            await self.client.start()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def accounts(self, identity: Identity, credentials: Credentials) -> list[Account]:
        if self.directory is None:
            found = [dict(identity.attributes)]
        else:
            try:
                found = await self._search(identity)
            except BridgeError:
                raise
            except LdapError as exc:
                raise translate(exc) from exc
        return [Account(f) for f in found if all(name in f for name in self.require)]

    async def _search(self, identity: Identity) -> list[dict[str, Scalar]]:
        assert self.client is not None
        dn = identity.attributes.get("dn")
        if dn is None and "{dn}" in self.base + self.filter:
            raise InternalError(f"LDAP source: identity {identity.username!r} has no 'dn' "
                                "(the LDAP authenticator sets it unless the log says why "
                                "not; after another authenticator use {username}, not {dn})")
        base = fill(self.base, {"dn": str, "username": escape_dn_value}, dn=str(dn),
                    username=identity.username)
        flt = fill(self.filter, escape_filter_value, dn=str(dn), username=identity.username)
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

"""The connector catalog: declarative descriptions of every connector type.

The built-in entries live in ``connectors.json`` beside this module (data, not code).
Operators add their own OAuth 2.0 / OpenID Connect providers with
:meth:`Catalog.with_custom_providers`, from settings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from connector_core.errors import UnknownConnector, ValidationError
from connector_core.tokens.refresh_deadline import RefreshTokenLimits

__all__ = [
    "Catalog",
    "CatalogEntry",
    "FilterDefinition",
    "OAuthSpec",
    "load_default_catalog",
]

FILTER_TYPES = frozenset({"multiselect", "list", "date", "boolean", "string"})


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Turn frozen catalog data back into plain JSON-able dicts and lists."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


@frozen
class OAuthSpec:
    """How to run OAuth 2.0 against one provider. URLs may hold ``{param}`` placeholders
    filled from the connector's ``auth`` configuration (e.g. Microsoft's ``{tenantId}``)."""

    authorize_url: str
    token_url: str
    revocation_url: str | None = None
    jwks_uri: str | None = None
    issuer: str | None = None
    default_scopes: tuple[str, ...] = ()
    extra_authorize_params: Mapping[str, str] = field(factory=lambda: MappingProxyType({}))
    scope_separator: str = " "
    pkce: bool = True
    token_auth_method: str = "client_secret_post"
    url_params: tuple[str, ...] = ()
    scope_apps: Mapping[str, str] = field(factory=lambda: MappingProxyType({}))
    discovery_url: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OAuthSpec:
        try:
            # with a discovery document the endpoints may come from it (filled at start-up)
            discovered = bool(data.get("discoveryUrl"))
            return cls(
                authorize_url=str(data.get("authorizeUrl", "") if discovered else data["authorizeUrl"]),
                token_url=str(data.get("tokenUrl", "") if discovered else data["tokenUrl"]),
                revocation_url=data.get("revocationUrl"),
                jwks_uri=data.get("jwksUri"),
                issuer=data.get("issuer"),
                default_scopes=tuple(data.get("defaultScopes", ())),
                extra_authorize_params=MappingProxyType(
                    {str(k): str(v) for k, v in dict(data.get("extraAuthorizeParams", {})).items()}
                ),
                scope_separator=str(data.get("scopeSeparator", " ")),
                pkce=bool(data.get("pkce", True)),
                token_auth_method=str(data.get("tokenAuthMethod", "client_secret_post")),
                url_params=tuple(data.get("urlParams", ())),
                scope_apps=MappingProxyType(dict(data.get("scopeApps", {}))),
                discovery_url=data.get("discoveryUrl"),
            )
        except KeyError as exc:
            raise ValidationError.for_field(f"oauth.{exc.args[0]}", "is required") from None

    def resolve(self, params: Mapping[str, Any]) -> OAuthSpec:
        """Fill ``{param}`` placeholders in the URLs from ``params``."""
        if not self.url_params:
            return self
        values = {p: str(params.get(p) or "") for p in self.url_params}
        missing = [p for p, v in values.items() if not v]
        if missing:
            raise ValidationError(
                f"missing auth.{missing[0]} needed to build the provider's URLs",
                errors=[{"path": f"auth.{p}", "message": "is required"} for p in missing],
            )

        def fill(url: str | None) -> str | None:
            return None if url is None else url.format_map(values)

        return OAuthSpec(
            authorize_url=self.authorize_url.format_map(values),
            token_url=self.token_url.format_map(values),
            revocation_url=fill(self.revocation_url),
            jwks_uri=fill(self.jwks_uri),
            issuer=fill(self.issuer),
            default_scopes=self.default_scopes,
            extra_authorize_params=self.extra_authorize_params,
            scope_separator=self.scope_separator,
            pkce=self.pkce,
            token_auth_method=self.token_auth_method,
            url_params=(),
            scope_apps=self.scope_apps,
            discovery_url=fill(self.discovery_url),
        )


@frozen
class FilterDefinition:
    """One filter a connector offers; ``type``: multiselect, list, date, boolean or string."""

    key: str
    label: str
    type: str
    options: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FilterDefinition:
        kind = str(data["type"])
        if kind not in FILTER_TYPES:
            raise ValidationError.for_field("filters.type", f"unknown filter type {kind!r}")
        return cls(
            key=str(data["key"]),
            label=str(data.get("label", data["key"])),
            type=kind,
            options=tuple(str(o) for o in data.get("options", ())),
        )


def _secret_paths(schema: Mapping[str, Any], prefix: str = "") -> tuple[str, ...]:
    found: list[str] = []
    for name, sub in dict(schema.get("properties", {})).items():
        path = f"{prefix}{name}"
        if isinstance(sub, Mapping):
            if sub.get("writeOnly"):
                found.append(path)
            elif sub.get("type") == "object":
                found.extend(_secret_paths(sub, prefix=f"{path}."))
    return tuple(found)


def _removable_secrets(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each secret (a ``writeOnly`` field of ``auth``) also taking ``null``: a
    configuration save removes the stored secret then (left out, it is kept)."""
    auth = schema.get("properties", {}).get("auth")
    if not isinstance(auth, Mapping) or not isinstance(auth.get("properties"), Mapping):
        return schema
    props = dict(auth["properties"])
    for name, sub in props.items():
        kind = sub.get("type") if isinstance(sub, Mapping) and sub.get("writeOnly") else None
        if isinstance(kind, str | list | tuple):
            kinds = [kind] if isinstance(kind, str) else list(kind)
            props[name] = {**sub, "type": kinds if "null" in kinds else [*kinds, "null"]}
    return {**schema, "properties": {**schema["properties"], "auth": {**auth, "properties": props}}}


@frozen
class CatalogEntry:
    """A connector type. ``config_schema`` is the JSON Schema of ``PUT /config/:name`` bodies;
    properties marked ``writeOnly`` are secrets (stored encrypted, never returned)."""

    key: str
    display_name: str
    app_group: str
    apps: tuple[str, ...]
    auth_types: tuple[str, ...]
    token_service_type: str
    config_schema: Mapping[str, Any]
    requirements: Mapping[str, tuple[str, ...]]
    filters: tuple[FilterDefinition, ...] = ()
    oauth: OAuthSpec | None = None
    aliases: tuple[str, ...] = ()
    custom: bool = False
    #: what the provider does to refresh tokens (``refreshTokenLimits`` in the catalog)
    refresh_token_limits: RefreshTokenLimits = field(factory=RefreshTokenLimits)

    def refresh_limits(self, auth: Mapping[str, Any]) -> RefreshTokenLimits:
        """The limits for one connector's configuration: the testing-mode lifetime applies
        when its ``auth.testingMode`` is on."""
        return self.refresh_token_limits.applied(testing_mode=auth.get("testingMode") is True)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Dotted paths of the configuration fields that are secrets."""
        return _secret_paths(self.config_schema)

    @property
    def default_auth_type(self) -> str:
        return self.auth_types[0]

    def requirements_for(self, auth_type: str) -> tuple[str, ...]:
        return tuple(self.requirements.get(auth_type, ()))

    def other_auth_types_fields(self, auth_type: str) -> frozenset[str]:
        """Paths only other auth types need (Jira's ``auth.clientSecret`` for ``API_TOKEN``): a
        connector of ``auth_type`` neither keeps their secrets nor hands them out."""
        mine = set(self.requirements_for(auth_type))
        return frozenset(p for t, paths in self.requirements.items() if t != auth_type for p in paths) - mine

    def filter(self, key: str) -> FilterDefinition | None:
        return next((f for f in self.filters if f.key == key), None)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        definitions: Mapping[str, Any] | None = None,
        *,
        custom: bool = False,
    ) -> CatalogEntry:
        schema = _removable_secrets(dict(data.get("configSchema") or _default_schema(data)))
        if definitions:
            schema.setdefault("$defs", dict(definitions))
        auth_types = tuple(data.get("authTypes", ("OAUTH",)))
        misplaced = [p for p in _secret_paths(schema) if not (p.startswith("auth.") and p.count(".") == 1)]
        if misplaced:
            # secrets are split out, encrypted and masked as top-level auth fields only
            raise ValidationError.for_field(
                f"configSchema.{misplaced[0]}", "writeOnly (secret) fields must be direct children of auth"
            )
        return cls(
            key=str(data["key"]),
            display_name=str(data.get("displayName", data["key"])),
            app_group=str(data.get("appGroup", data.get("displayName", data["key"]))),
            apps=tuple(data.get("apps", (str(data["key"]).upper(),))),
            auth_types=auth_types,
            token_service_type=str(data.get("tokenServiceType", str(data["key"]).upper())),
            config_schema=_freeze(schema),
            requirements=MappingProxyType(
                {
                    str(k): tuple(v)
                    for k, v in dict(
                        data.get("requirements", {"OAUTH": ["auth.clientId", "auth.clientSecret"]})
                    ).items()
                }
            ),
            filters=tuple(FilterDefinition.from_dict(f) for f in data.get("filters", ())),
            oauth=OAuthSpec.from_dict(data["oauth"]) if data.get("oauth") else None,
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            custom=custom,
            refresh_token_limits=RefreshTokenLimits.from_dict(data.get("refreshTokenLimits")),
        )


def _default_schema(data: Mapping[str, Any]) -> dict[str, Any]:
    """Schema for a custom OAuth provider: client id and secret, sync and filters."""
    name = str(data.get("displayName", data["key"]))
    return {
        "type": "object",
        "properties": {
            "auth": {
                "title": "Credentials",
                "type": "object",
                "properties": {
                    "authType": {
                        "title": "Authentication",
                        "description": f"OAuth: a person consents at {name}.",
                        "enum": list(data.get("authTypes", ["OAUTH"])),
                    },
                    "clientId": {
                        "title": "Client ID",
                        "description": f"The OAuth client ID registered at {name}.",
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 512,
                    },
                    "clientSecret": {
                        "title": "Client secret",
                        "description": "The OAuth client secret of that client. Stored encrypted and never shown "
                        "again; leave empty to keep the stored one.",
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1024,
                        "writeOnly": True,
                    },
                },
                "additionalProperties": False,
            },
            "sync": {"title": "Sync", "$ref": "#/$defs/sync"},
            "filters": {
                "title": "Connector filters (JSON)",
                "description": "Connector-specific filter settings, as a JSON object.",
                "type": "object",
            },
            "baseUrl": {
                "title": "Base URL",
                "description": "Where this connector's data is used (your front end's address).",
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "format": "uri",
            },
        },
        "required": ["baseUrl"],
        "additionalProperties": False,
    }


def _norm(name: str) -> str:
    return name.strip().lower()


class Catalog:
    """All known connector types, looked up by key or alias, case-insensitively."""

    def __init__(self, entries: Iterable[CatalogEntry]) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        self._index: dict[str, str] = {}
        for entry in entries:
            if _norm(entry.key) in self._index:
                raise ValidationError.for_field("key", f"duplicate connector key {entry.key!r}")
            self._entries[entry.key] = entry
            self._index[_norm(entry.key)] = entry.key
            for alias in entry.aliases:
                self._index.setdefault(_norm(alias), entry.key)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def find(self, name: str) -> CatalogEntry | None:
        key = self._index.get(_norm(name))
        return None if key is None else self._entries[key]

    def get(self, name: str) -> CatalogEntry:
        """The entry for ``name`` (key or alias, any case), else :class:`UnknownConnector`."""
        entry = self.find(name)
        if entry is None:
            raise UnknownConnector(
                f"Unknown connector {name[:100]!r}; known connectors: {', '.join(self.keys)}",
                metadata={"knownConnectors": list(self.keys)},
            )
        return entry

    def with_aliases(self, aliases: Mapping[str, str]) -> Catalog:
        """A catalog where each alias (``"atlassian"``) also names the entry of its key; an alias
        that is already a key or an alias stays what it was."""
        extended = Catalog(self._entries.values())
        for alias, key in aliases.items():
            extended._index.setdefault(_norm(alias), self.get(key).key)
        return extended

    def with_custom_providers(self, providers: Iterable[Mapping[str, Any]]) -> Catalog:
        """A catalog with operator-defined OAuth providers added (dicts in catalog format)."""
        definitions = _builtin_data().get("definitions", {})
        extra = [CatalogEntry.from_dict(p, definitions, custom=True) for p in providers]
        return Catalog([*self._entries.values(), *extra])


@functools.cache
def _builtin_data() -> dict[str, Any]:
    text = resources.files(__name__).joinpath("connectors.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_default_catalog() -> Catalog:
    """The built-in catalog shipped in ``connectors.json``."""
    raw = _builtin_data()
    definitions = raw.get("definitions", {})
    return Catalog(CatalogEntry.from_dict(c, definitions) for c in raw["connectors"])

"""Provider resolution: one org's view of an OAuth provider (used by the authorization flow,
revocation and the refresher).

The catalog's :class:`OAuthSpec` is filled with the connector's settings (e.g. Microsoft's
tenant) and, for OpenID providers that publish one, the discovery document; the client
credentials come from the connector's configuration and the secret store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import evolve, field, frozen

from connector_core.catalog import CatalogEntry, OAuthSpec
from connector_core.errors import DomainRuleViolation, NotConfigured, ProviderError, ValidationError
from connector_core.model.connector import Connector
from connector_core.ports.oauth_provider import ClientCredentials, OAuthProviderClient
from connector_core.services.context import ServiceContext, read_secrets
from connector_core.tokens import RefreshTokenLimits

__all__ = ["WELL_KNOWN_SUFFIX", "ProviderResolver", "ResolvedProvider", "url_param_error"]

#: appended to an issuer to find its OpenID discovery document
WELL_KNOWN_SUFFIX = "/.well-known/openid-configuration"

#: What any value filled into a provider's URL path (``{tenantId}``) must be, whatever the
#: catalog says: one path segment of URL-safe characters, never ``.`` or ``..`` (which would
#: climb the provider's path, ``login.microsoftonline.com/../``).
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")


def url_param_error(entry: CatalogEntry, param: str, value: object) -> str | None:
    """Why ``value`` cannot be filled into ``entry``'s provider URLs as ``{param}``, else None.

    The rule is the catalog's own: the ``pattern`` and ``maxLength`` of ``auth.<param>`` in the
    connector's configuration schema, read as ``PUT /config`` reads them, so a configuration
    that was saved is one that can be authorized (and the other way round). On top of it, and
    also for a schema without a pattern, :data:`_SAFE_SEGMENT`.
    """
    if not isinstance(value, str) or not _SAFE_SEGMENT.fullmatch(value) or value in (".", ".."):
        return "has characters not allowed"
    field_schema = _auth_field_schema(entry, param)
    pattern, longest = field_schema.get("pattern"), field_schema.get("maxLength")
    if isinstance(longest, int) and len(value) > longest:
        return f"must be at most {longest} characters"
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        return "has an invalid format"
    return None


def _auth_field_schema(entry: CatalogEntry, param: str) -> Mapping[str, Any]:
    auth = entry.config_schema.get("properties", {}).get("auth", {})
    found = auth.get("properties", {}).get(param) if isinstance(auth, Mapping) else None
    return found if isinstance(found, Mapping) else {}


@frozen
class ResolvedProvider:
    """One org's view of a provider: URLs filled in (tenant, discovery) and its client."""

    spec: OAuthSpec
    client: ClientCredentials
    #: what the provider does to this connector's refresh tokens (testing mode applied)
    refresh_limits: RefreshTokenLimits = field(factory=RefreshTokenLimits)


class ProviderResolver:
    def __init__(self, ctx: ServiceContext, provider: OAuthProviderClient) -> None:
        self.ctx = ctx
        self.provider = provider

    async def client_credentials(self, org_id: str, key: str) -> ClientCredentials:
        """The org's OAuth client of connector ``key``, else :class:`NotConfigured`."""
        entry = self.oauth_entry(key)
        return await self._client(org_id, entry, await self.load_connector(org_id, entry))

    async def resolve_provider(self, org_id: str, key: str) -> ResolvedProvider:
        """The provider's URLs for this org (tenant filled in, OIDC discovery applied) and the
        org's client credentials."""
        entry = self.oauth_entry(key)
        return await self.resolve(org_id, entry, await self.load_connector(org_id, entry))

    def oauth_entry(self, name: str) -> CatalogEntry:
        """The catalog entry of ``name``, else :class:`ValidationError` when it has no OAuth."""
        entry = self.ctx.catalog.get(name)
        if entry.oauth is None:
            raise ValidationError.for_field("connector", f"{entry.display_name} does not support OAuth authorization")
        return entry

    @staticmethod
    def require_oauth(entry: CatalogEntry, connector: Connector | None) -> None:
        """:class:`DomainRuleViolation` when the connector is configured for another auth type."""
        if connector is not None and not connector.uses_oauth:
            raise DomainRuleViolation(
                f"{entry.display_name} is configured for {connector.auth_type} authentication;"
                " set authType to OAUTH to authorize it with OAuth",
                metadata={"connector": entry.key},
            )

    async def load_connector(self, org_id: str, entry: CatalogEntry) -> Connector | None:
        async with self.ctx.uow() as uow:
            return await uow.connectors.get(org_id, entry.key)

    async def resolve(self, org_id: str, entry: CatalogEntry, connector: Connector | None) -> ResolvedProvider:
        assert entry.oauth is not None
        client = await self._client(org_id, entry, connector)
        auth = connector.config.auth if connector is not None else {}
        spec = await self._discovered(entry.oauth.resolve(auth))
        return ResolvedProvider(spec=spec, client=client, refresh_limits=entry.refresh_limits(auth))

    async def _client(self, org_id: str, entry: CatalogEntry, connector: Connector | None) -> ClientCredentials:
        assert entry.oauth is not None
        auth = connector.config.auth if connector is not None else {}
        client_id = auth.get("clientId")
        named = connector.config.secrets_set if connector is not None else frozenset()
        secrets = await read_secrets(self.ctx.secrets, entry.key, org_id, named=named)
        client_secret = secrets.get("auth.clientSecret")
        missing = [
            path
            for path, present in (
                ("auth.clientId", isinstance(client_id, str) and bool(client_id)),
                ("auth.clientSecret", bool(client_secret)),
                *((f"auth.{p}", bool(auth.get(p))) for p in entry.oauth.url_params),
            )
            if not present
        ]
        # Every catalog requirement of OAuth (e.g. SharePoint's domain) is checked before the
        # person is sent to the provider, not after their consent.
        if connector is not None:
            missing += [
                p
                for p in entry.requirements_for("OAUTH")
                if p not in missing and not connector.config.has(p) and p != "auth.clientSecret"
            ]
        if missing:
            raise NotConfigured(
                f"{entry.display_name} cannot be authorized: missing {', '.join(missing)}",
                metadata={"connector": entry.key, "missing": missing},
            )
        for param in entry.oauth.url_params:
            why = url_param_error(entry, param, auth.get(param))
            if why is not None:
                raise ValidationError.for_field(f"auth.{param}", why)
        assert client_secret is not None
        return ClientCredentials(client_id=str(client_id), client_secret=client_secret)

    async def _discovered(self, spec: OAuthSpec) -> OAuthSpec:
        """Fill the endpoints the catalog leaves empty from the OIDC discovery document."""
        if not spec.discovery_url:
            return spec
        issuer = spec.issuer or spec.discovery_url.removesuffix(WELL_KNOWN_SUFFIX)
        doc = await self.provider.discover(issuer)

        def pick(current: str | None, key: str) -> str | None:
            found = doc.get(key)
            return current or (found if isinstance(found, str) and found else None)

        filled = evolve(
            spec,
            authorize_url=pick(spec.authorize_url, "authorization_endpoint") or "",
            token_url=pick(spec.token_url, "token_endpoint") or "",
            revocation_url=pick(spec.revocation_url, "revocation_endpoint"),
            jwks_uri=pick(spec.jwks_uri, "jwks_uri"),
            issuer=pick(spec.issuer, "issuer"),
        )
        if not filled.authorize_url or not filled.token_url:
            raise ProviderError("the provider's discovery document lacks its endpoints")
        return filled

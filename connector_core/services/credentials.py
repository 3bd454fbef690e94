"""Credentials of connectors that are not OAuth (API tokens, service accounts): what a service
that syncs the connector needs, read from the configuration and the secret store.

OAuth connectors' credentials are access tokens (:meth:`TokenRefresher.fresh_token`)."""

from __future__ import annotations

from collections.abc import Mapping

from attrs import field, frozen

from connector_core.errors import ConnectorDisabled, DomainRuleViolation, NotConfigured
from connector_core.services.context import ServiceContext, read_secrets


@frozen
class StoredCredentials:
    """The auth fields of a connector's configuration, its secrets decrypted. Never printed."""

    connector_key: str
    auth_type: str
    base_url: str | None
    #: auth field name → value (``email``, ``apiToken``, ...), secrets included
    fields: Mapping[str, str] = field(repr=False)


async def stored_credentials(ctx: ServiceContext, org_id: str, name: str) -> StoredCredentials:
    """The stored credentials of an enabled, configured connector that does not use OAuth.

    :class:`DomainRuleViolation` for an OAuth connector (its credentials are tokens),
    :class:`NotConfigured` when a required field is missing, :class:`ConnectorDisabled` while
    it is disabled (its credentials are not handed out)."""
    entry = ctx.catalog.get(name)
    async with ctx.uow() as uow:
        connector = await uow.connectors.get(org_id, entry.key)
    if connector is None:
        raise NotConfigured(f"{entry.display_name} is not configured in this org; configure and enable it first")
    if connector.uses_oauth:
        raise DomainRuleViolation(f"{entry.display_name} uses OAuth: its credentials are access tokens")
    if not connector.is_enabled:
        raise ConnectorDisabled(f"{entry.display_name} is disabled; enable it to use its credentials")
    secrets = await read_secrets(ctx.secrets, entry.key, org_id, named=connector.config.secrets_set)
    # only the current auth type's fields: a secret kept from another auth type (stored before
    # an auth type change dropped them) is not this connector's credential
    others = entry.other_auth_types_fields(connector.auth_type)
    fields = {str(k): str(v) for k, v in connector.config.auth.items() if k != "authType"}
    fields |= {path.removeprefix("auth."): value for path, value in secrets.items() if path.startswith("auth.")}
    fields = {k: v for k, v in fields.items() if f"auth.{k}" not in others}
    missing = [p for p in entry.requirements_for(connector.auth_type) if p.removeprefix("auth.") not in fields]
    if missing:
        raise NotConfigured(
            f"{entry.display_name} lacks {', '.join(missing)}; configure it again",
            metadata={"connector": entry.key, "missing": missing},
        )
    return StoredCredentials(entry.key, connector.auth_type, connector.config.base_url, fields)

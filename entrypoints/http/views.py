"""How domain objects look on the wire. No secret value ever leaves through here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector_core.catalog import CatalogEntry, thaw
from connector_core.model.connector import Connector
from connector_core.services.connectors import ConnectorView, TokenOutlook


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _has_name(field: str) -> str:
    return "has" + field[:1].upper() + field[1:]


def missing_configuration(entry: CatalogEntry, connector: Connector) -> list[str]:
    return [p for p in entry.requirements_for(connector.auth_type) if not connector.config.has(p)]


def token_json(token: TokenOutlook | None) -> dict[str, Any] | None:
    """A connector's token in a list: its state and its refresh token's outlook, no material."""
    if token is None:
        return None
    t, deadline = token.summary, token.deadline
    refresh = None
    if t.lineage_started_at is not None:
        refresh = {
            "lineageStartedAt": iso(t.lineage_started_at),
            "lastUsedAt": iso(t.refresh_last_used_at),
            "expiresAt": iso(deadline.at) if deadline else None,
            "expiresBecause": str(deadline.basis) if deadline else None,
            "warning": None if token.warning is None else str(token.warning),
        }
    return {
        "status": str(t.status),
        "accessTokenExpiresAt": iso(t.expires_at),
        "lastRefreshedAt": iso(t.obtained_at),
        "refreshToken": refresh,
    }


def connector_json(view: ConnectorView) -> dict[str, Any]:
    c, e = view.connector, view.entry
    shown = {"token": token_json(view.token)} if view.tokens_read else {}
    return {
        "id": c.id or None,
        "key": e.key,
        "name": e.display_name,
        "appGroup": e.app_group,
        "apps": list(e.apps),
        "authTypes": list(e.auth_types),
        "authType": c.auth_type,
        "isEnabled": c.is_enabled,
        "isConfigured": not missing_configuration(e, c),
        "authStatus": {
            "state": str(c.auth_status.state),
            "reason": c.auth_status.reason,
            "changedAt": iso(c.auth_status.changed_at),
        },
        "enabledApps": list(c.enabled_apps),
        "lastUpdatedBy": c.last_updated_by,
        "createdAt": None if c.is_new else iso(c.created_at),
        "updatedAt": None if c.is_new else iso(c.updated_at),
        "version": c.version,
        **shown,
    }


def config_json(view: ConnectorView) -> dict[str, Any]:
    """The configuration with every secret replaced by ``has<Field>: bool``."""
    c, e = view.connector, view.entry
    auth: dict[str, Any] = thaw(c.config.auth)
    for path in e.secret_fields:
        section, _, name = path.partition(".")
        if section == "auth":
            auth.pop(name, None)
            auth[_has_name(name)] = path in c.config.secrets_set
    return {
        "key": e.key,
        "name": e.display_name,
        "isEnabled": c.is_enabled,
        "authType": c.auth_type,
        "config": {
            "auth": auth,
            "sync": thaw(c.config.sync),
            "filters": thaw(c.config.filters),
            "baseUrl": c.config.base_url,
        },
        "missing": missing_configuration(e, c),
        "authStatus": str(c.auth_status.state),
        "version": c.version,
    }


def filters_json(view: ConnectorView) -> dict[str, Any]:
    return {
        "key": view.entry.key,
        "filterOptions": thaw(view.connector.filter_selection),
        "available": [
            {"key": f.key, "label": f.label, "type": f.type, "options": list(f.options)} for f in view.entry.filters
        ],
    }

"""The Connector aggregate: one per (org, connector key)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from attrs import define, evolve, field, frozen

from connector_core.errors import DomainRuleViolation, NotConfigured
from connector_core.model.config_changes import changed_paths, named_in_event
from connector_core.model.events import (
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RealTimeUpdatesChanged,
    SyncAction,
)

if TYPE_CHECKING:
    from connector_core.catalog import CatalogEntry
    from connector_core.ports.ids import IdSource

__all__ = ["AuthState", "AuthStatus", "Connector", "ConnectorConfig", "EventRoutes"]


class AuthState(enum.StrEnum):
    NOT_CONFIGURED = "NOT_CONFIGURED"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    AUTHENTICATED = "AUTHENTICATED"
    NEEDS_REAUTHENTICATION = "NEEDS_REAUTHENTICATION"


@frozen
class AuthStatus:
    state: AuthState
    reason: str | None = None
    changed_at: datetime | None = None


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _to_frozenset(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen
class ConnectorConfig:
    """Non-secret configuration plus the names of the secret fields that are set.

    Secret values never live here: they are kept encrypted in the secret store, and
    ``secrets_set`` records which of them exist (``"auth.clientSecret"``).
    """

    auth: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    sync: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    filters: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    base_url: str | None = None
    secrets_set: frozenset[str] = field(factory=frozenset, converter=_to_frozenset)

    def has(self, path: str) -> bool:
        """Whether the dotted ``path`` holds a non-empty value or a stored secret."""
        if path in self.secrets_set:
            return True
        if path == "baseUrl":
            return bool(self.base_url)
        section, _, name = path.partition(".")
        container = {"auth": self.auth, "sync": self.sync, "filters": self.filters}.get(section)
        if container is None or not name:
            return False
        value = container.get(name)
        return value is not None and value != ""

    def auth_type(self, default: str) -> str:
        return str(self.auth.get("authType") or default)

    @property
    def real_time_updates(self) -> tuple[bool, str]:
        """Whether real-time updates are on (``auth.enableRealTimeUpdates``), and their topic
        (``auth.topicName``; "" when off)."""
        enabled = self.auth.get("enableRealTimeUpdates") is True
        return enabled, str(self.auth.get("topicName") or "") if enabled else ""


@frozen
class EventRoutes:
    """Where consumers of ``appEnabled`` fetch credentials; filled by the application layer."""

    credentials_route: str | None = None
    refresh_token_route: str | None = None


@define
class Connector:
    """A connector of one organization. Records a domain event for every state change.

    Invariants: an enabled connector meets its catalog requirements; ``enabled_apps`` are
    apps of its catalog entry; events in ``events`` describe exactly the changes made since
    the aggregate was loaded.
    """

    id: str
    org_id: str
    key: str
    display_name: str
    app_group: str
    auth_type: str
    is_enabled: bool
    auth_status: AuthStatus
    enabled_apps: tuple[str, ...]
    config: ConnectorConfig
    filter_selection: Mapping[str, Any]
    last_updated_by: str | None
    created_at: datetime
    updated_at: datetime
    version: int = 0
    events: list[DomainEvent] = field(factory=list, eq=False, repr=False)

    @classmethod
    def create(cls, entry: CatalogEntry, *, org_id: str, connector_id: str, now: datetime, by: str | None) -> Connector:
        """A new, disabled, unconfigured connector (not yet saved: version 0)."""
        return cls(
            id=connector_id,
            org_id=org_id,
            key=entry.key,
            display_name=entry.display_name,
            app_group=entry.app_group,
            auth_type=entry.default_auth_type,
            is_enabled=False,
            auth_status=AuthStatus(AuthState.NOT_CONFIGURED, "configuration missing", now),
            enabled_apps=(),
            config=ConnectorConfig(),
            filter_selection=MappingProxyType({}),
            last_updated_by=by,
            created_at=now,
            updated_at=now,
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def is_new(self) -> bool:
        return self.version == 0

    @property
    def uses_oauth(self) -> bool:
        return self.auth_type == "OAUTH"

    def missing_requirements(self, entry: CatalogEntry) -> list[str]:
        """What must be added before this connector can be enabled (empty when ready)."""
        missing = [p for p in entry.requirements_for(self.auth_type) if not self.config.has(p)]
        if not missing and self.uses_oauth and self.auth_status.state != AuthState.AUTHENTICATED:
            missing.append("authorization (complete the OAuth flow)")
        return missing

    # -- commands --------------------------------------------------------------------------

    def enable(
        self,
        entry: CatalogEntry,
        *,
        sync_action: SyncAction,
        by: str | None,
        now: datetime,
        ids: IdSource,
        routes: EventRoutes | None = None,
    ) -> None:
        """Enable, or :class:`NotConfigured` naming what is missing. No-op when enabled."""
        if self.is_enabled:
            return
        missing = self.missing_requirements(entry)
        if missing:
            raise NotConfigured(
                f"{self.display_name} cannot be enabled: missing {', '.join(missing)}",
                metadata={"connector": self.key, "missing": missing},
            )
        if not self.uses_oauth:
            self.enabled_apps = entry.apps
        self.is_enabled = True
        self._touch(by, now)
        self._announce_enabled(sync_action, now, ids, routes)

    def disable(self, *, by: str | None, now: datetime, ids: IdSource) -> None:
        """Disable; no-op when already disabled."""
        if not self.is_enabled:
            return
        self.is_enabled = False
        self._touch(by, now)
        self._record(AppDisabled, now, ids, app_group=self.app_group, app_group_id=self.id, apps=self.enabled_apps)

    def toggle(
        self,
        entry: CatalogEntry,
        *,
        by: str | None,
        now: datetime,
        ids: IdSource,
        sync_action: SyncAction = SyncAction.IMMEDIATE,
        routes: EventRoutes | None = None,
    ) -> None:
        if self.is_enabled:
            self.disable(by=by, now=now, ids=ids)
        else:
            self.enable(entry, sync_action=sync_action, by=by, now=now, ids=ids, routes=routes)

    def update_configuration(
        self,
        entry: CatalogEntry,
        new: ConnectorConfig,
        *,
        by: str | None,
        now: datetime,
        ids: IdSource,
        changed_secrets: Iterable[str] = (),
    ) -> None:
        """Replace the configuration. ``changed_secrets`` names secrets given a new value.

        An enabled connector keeps meeting its requirements (else :class:`NotConfigured`).
        Changing the OAuth client of an authenticated connector asks for re-authorization.
        """
        # a configuration that does not name its auth type keeps the connector's
        auth_type = new.auth_type(self.auth_type or entry.default_auth_type)
        if auth_type not in entry.auth_types:
            raise DomainRuleViolation(f"auth type {auth_type!r} is not offered by {entry.key}")
        changed = sorted(
            {*changed_paths(self.config, new), *changed_secrets}
            | ({"auth.authType"} if auth_type != self.auth_type else set())
        )
        if not changed:
            return
        if self.is_enabled:
            missing = [p for p in entry.requirements_for(auth_type) if not new.has(p)]
            if missing:
                raise NotConfigured(
                    f"{self.display_name} is enabled and the new configuration lacks {', '.join(missing)}"
                    f" (needed for {auth_type}): send them too (a PUT replaces the whole configuration;"
                    " stored secrets may be left out), or disable the connector first",
                    metadata={"connector": self.key, "missing": missing},
                )
        # the effective auth type is compared, not whether the field was written out; a field
        # only other auth types use (their secret, dropped now) is not this one's client
        others = _NOT_THE_CLIENT | entry.other_auth_types_fields(auth_type)
        client_changed = auth_type != self.auth_type or any(p.startswith("auth.") and p not in others for p in changed)
        real_time = new.real_time_updates
        real_time_changed = real_time != self.config.real_time_updates
        self.config = new
        self.auth_type = auth_type
        self._touch(by, now)
        self._record(ConnectorConfigured, now, ids, changed_fields=named_in_event(changed))
        if real_time_changed:
            self._record(RealTimeUpdatesChanged, now, ids, enabled=real_time[0], topic_name=real_time[1])
        self._settle_auth_status(entry, client_changed, now, ids)

    def save_filters(self, selection: Mapping[str, Any], *, by: str | None, now: datetime, ids: IdSource) -> None:
        """Store the filter selection (validated by the caller against the catalog)."""
        selection = MappingProxyType(dict(selection))
        if dict(selection) == dict(self.filter_selection):
            return
        self.filter_selection = selection
        self._touch(by, now)
        self._record(FiltersSaved, now, ids, filter_keys=tuple(sorted(selection)))

    def record_authorization(
        self,
        entry: CatalogEntry,
        apps: Iterable[str],
        *,
        by: str | None,
        now: datetime,
        ids: IdSource,
        sync_action: SyncAction = SyncAction.IMMEDIATE,
        routes: EventRoutes | None = None,
    ) -> None:
        """A person authorized the connector: ``apps`` are those the granted scopes cover.

        Marks it authenticated, enables it and announces ``appEnabled`` so syncing (re)starts.
        """
        granted = tuple(dict.fromkeys(apps))
        if self.auth_type != "OAUTH":
            raise DomainRuleViolation(
                f"{self.display_name} uses {self.auth_type} authentication, not OAuth",
                metadata={"connector": self.key},
            )
        missing = [p for p in entry.requirements_for(self.auth_type) if not self.config.has(p)]
        if missing:
            raise NotConfigured(
                f"{self.display_name} cannot be authorized: missing {', '.join(missing)}",
                metadata={"connector": self.key, "missing": missing},
            )
        if not granted:
            raise DomainRuleViolation(
                "none of the granted scopes gives access to an app of this connector",
                metadata={"connector": self.key},
            )
        self._set_auth(AuthStatus(AuthState.AUTHENTICATED, None, now), ids)
        self.enabled_apps = granted
        self.is_enabled = True
        self._touch(by, now)
        self._announce_enabled(sync_action, now, ids, routes)

    def mark_needs_reauthentication(self, reason: str, *, now: datetime, ids: IdSource) -> None:
        """A refresh failed for good: a person must authorize again."""
        self._set_auth(AuthStatus(AuthState.NEEDS_REAUTHENTICATION, reason, now), ids)

    def mark_not_authenticated(self, reason: str, *, now: datetime, ids: IdSource, by: str | None = None) -> None:
        """Authorization failed or was revoked; tokens are gone. An OAuth connector is disabled
        too (it cannot sync without tokens); other auth types keep their enabled state."""
        self._set_auth(AuthStatus(AuthState.NOT_AUTHENTICATED, reason, now), ids)
        if self.uses_oauth:
            self.disable(by=by, now=now, ids=ids)

    # -- helpers ---------------------------------------------------------------------------

    def pull_events(self) -> list[DomainEvent]:
        events, self.events = self.events, []
        return events

    def _touch(self, by: str | None, now: datetime) -> None:
        self.updated_at = now
        if by is not None:
            self.last_updated_by = by

    def _record(self, kind: type[DomainEvent], now: datetime, ids: IdSource, **payload: Any) -> None:
        """Record an event of ``kind`` about this connector (the envelope is written here once)."""
        self.events.append(
            kind(event_id=ids.new_id(), occurred_at=now, org_id=self.org_id, connector_key=self.key, **payload)
        )

    def _set_auth(self, status: AuthStatus, ids: IdSource) -> None:
        if (status.state, status.reason) == (self.auth_status.state, self.auth_status.reason):
            return
        self.auth_status = status
        if status.changed_at is not None:
            self.updated_at = status.changed_at
        self._record(
            AuthStatusChanged, status.changed_at or self.updated_at, ids, status=str(status.state), reason=status.reason
        )

    def _settle_auth_status(self, entry: CatalogEntry, client_changed: bool, now: datetime, ids: IdSource) -> None:
        configured = all(self.config.has(p) for p in entry.requirements_for(self.auth_type))
        current = self.auth_status.state
        if not configured:
            self._set_auth(AuthStatus(AuthState.NOT_CONFIGURED, "configuration missing", now), ids)
        elif not self.uses_oauth:
            self._set_auth(AuthStatus(AuthState.AUTHENTICATED, None, now), ids)
        elif current == AuthState.NOT_CONFIGURED:
            self._set_auth(AuthStatus(AuthState.NOT_AUTHENTICATED, "authorization pending", now), ids)
        elif client_changed and current == AuthState.AUTHENTICATED:
            self._set_auth(
                AuthStatus(AuthState.NEEDS_REAUTHENTICATION, "client configuration changed", now),
                ids,
            )

    def _announce_enabled(
        self, sync_action: SyncAction, now: datetime, ids: IdSource, routes: EventRoutes | None
    ) -> None:
        routes = routes or EventRoutes()
        self._record(
            AppEnabled,
            now,
            ids,
            app_group=self.app_group,
            app_group_id=self.id,
            apps=self.enabled_apps,
            sync_action=sync_action,
            credentials_route=routes.credentials_route,
            refresh_token_route=routes.refresh_token_route,
        )

    def snapshot(self) -> Connector:
        """A copy without pending events (for caches and read models)."""
        return evolve(self, events=[])


#: configuration fields that say where updates are pushed, not which OAuth client is used
_REAL_TIME_FIELDS = frozenset({"auth.enableRealTimeUpdates", "auth.topicName"})
_NOT_THE_CLIENT = _REAL_TIME_FIELDS | {"auth.authType"}

"""Domain events. Aggregates record them; application services store them in the outbox
in the same unit of work as the state change; a relay publishes them.

Wire names follow the existing service: ``appEnabled``/``appDisabled`` on ``entity-events``,
``TOKEN_*`` on ``token-events``. The other entity events describe changes that have no
legacy counterpart; consumers that switch on ``eventType`` can ignore them.
"""

from __future__ import annotations

import enum
from datetime import datetime

from attrs import frozen

ENTITY_TOPIC = "entity-events"
TOKEN_TOPIC = "token-events"
#: where the existing service announced Gmail real-time updates (the compatibility profile's)
SYNC_TOPIC = "sync-events"


class SyncAction(enum.StrEnum):
    NONE = "none"
    IMMEDIATE = "immediate"
    SCHEDULED = "scheduled"


class TokenEventType(enum.StrEnum):
    CREATED = "TOKEN_CREATED"
    REFRESHED = "TOKEN_REFRESHED"
    REVOKED = "TOKEN_REVOKED"
    EXPIRED = "TOKEN_EXPIRED"
    #: the refresh token will die soon (:class:`RefreshTokenExpiring`)
    EXPIRING = "TOKEN_EXPIRING"


@frozen(kw_only=True)
class DomainEvent:
    """Base of every event: a unique id (consumers dedupe on it), when, and whose."""

    event_id: str
    occurred_at: datetime
    org_id: str
    connector_key: str

    event_type: str = ""
    topic: str = ENTITY_TOPIC

    @property
    def partition_key(self) -> str:
        """One connector's events share a key, so they stay ordered."""
        return f"{self.org_id}:{self.connector_key}"


@frozen(kw_only=True)
class AppEnabled(DomainEvent):
    app_group: str
    app_group_id: str
    apps: tuple[str, ...]
    sync_action: SyncAction
    credentials_route: str | None = None
    refresh_token_route: str | None = None
    event_type: str = "appEnabled"


@frozen(kw_only=True)
class AppDisabled(DomainEvent):
    app_group: str
    app_group_id: str
    apps: tuple[str, ...]
    event_type: str = "appDisabled"


@frozen(kw_only=True)
class ConnectorConfigured(DomainEvent):
    """Configuration changed. Names the changed fields, never their values."""

    changed_fields: tuple[str, ...]
    event_type: str = "connectorConfigured"


@frozen(kw_only=True)
class FiltersSaved(DomainEvent):
    filter_keys: tuple[str, ...]
    event_type: str = "connectorFiltersSaved"


@frozen(kw_only=True)
class AuthStatusChanged(DomainEvent):
    status: str
    reason: str | None = None
    event_type: str = "connectorAuthStatusChanged"


@frozen(kw_only=True)
class RealTimeUpdatesChanged(DomainEvent):
    """Real-time updates (Google: Gmail push notifications to a Pub/Sub topic) were switched on,
    off, or moved to another topic. ``topic_name`` is "" when off."""

    enabled: bool
    topic_name: str
    event_type: str = "connectorRealTimeUpdatesChanged"


@frozen(kw_only=True)
class TokenEvent(DomainEvent):
    token_event_type: TokenEventType
    token_reference_id: str
    service_type: str
    account_id: str
    topic: str = TOKEN_TOPIC

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "event_type", str(self.token_event_type))


@frozen(kw_only=True)
class RefreshTokenExpiring(TokenEvent):
    """The connector's refresh token is expected to die at ``refresh_token_expires_at`` (see
    :mod:`connector_core.tokens.refresh_deadline`); sent once per lineage and threshold
    (``warn_before_seconds`` ahead), so a person can authorize again in time."""

    refresh_token_expires_at: datetime
    expires_because: str
    warn_before_seconds: int
    token_event_type: TokenEventType = TokenEventType.EXPIRING
    event_type: str = str(TokenEventType.EXPIRING)


EVENT_CLASSES: dict[str, type[DomainEvent]] = {
    "appEnabled": AppEnabled,
    "appDisabled": AppDisabled,
    "connectorConfigured": ConnectorConfigured,
    "connectorFiltersSaved": FiltersSaved,
    "connectorAuthStatusChanged": AuthStatusChanged,
    "connectorRealTimeUpdatesChanged": RealTimeUpdatesChanged,
    **{str(t): TokenEvent for t in TokenEventType},
    str(TokenEventType.EXPIRING): RefreshTokenExpiring,
}

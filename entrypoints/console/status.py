"""What the console shows of a connector: the API's own view of it (``connector_json``, so the
page and the API never disagree) with its token's state, and the org's events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from adapters.event_wire import envelope
from connector_core.model.events import EVENT_CLASSES
from connector_core.ports.outbox import OutboxMessage
from connector_core.services.connectors import ConnectorView, TokenOutlook
from entrypoints.http.state import ApiState
from entrypoints.http.views import connector_json

#: the timeline reads this many of the org's newest events, then filters them
TIMELINE_WINDOW = 1000
EVENT_TYPES: tuple[str, ...] = tuple(sorted(EVENT_CLASSES))


@frozen
class TokenInfo:
    """A token's bookkeeping and its refresh token's outlook (never its material)."""

    status: str
    last_refresh: datetime
    expires_at: datetime | None
    refresh_due_at: datetime | None
    failure_count: int
    #: when the refresh token is expected to die, and why (provider limit, its own word)
    refresh_deadline: datetime | None
    refresh_deadline_basis: str | None
    #: within7Days, within1Day or expired: the refresh-token age warning
    warning: str | None

    @classmethod
    def of(cls, outlook: TokenOutlook) -> TokenInfo:
        t, deadline = outlook.summary, outlook.deadline
        return cls(
            status=str(t.status),
            last_refresh=t.obtained_at,
            expires_at=t.expires_at,
            refresh_due_at=t.refresh_due_at,
            failure_count=t.failure_count,
            refresh_deadline=deadline.at if deadline else None,
            refresh_deadline_basis=str(deadline.basis) if deadline else None,
            warning=None if outlook.warning is None else str(outlook.warning),
        )


@frozen
class ConnectorRow:
    view: ConnectorView
    data: dict[str, Any]  # the API's JSON of the connector
    token: TokenInfo | None

    @property
    def state(self) -> str:
        return str(self.data["authStatus"]["state"])

    @property
    def needs_reauth(self) -> bool:
        return self.state == "NEEDS_REAUTHENTICATION"

    @property
    def is_oauth(self) -> bool:
        return self.view.connector.auth_type == "OAUTH" and self.view.entry.oauth is not None


async def connector_rows(state: ApiState, org_id: str) -> list[ConnectorRow]:
    """Every connector of the org with its token (the API's list, one read of each kind)."""
    views = await state.container.connectors.list(org_id)
    return [ConnectorRow(v, connector_json(v), None if v.token is None else TokenInfo.of(v.token)) for v in views]


async def connector_row(state: ApiState, org_id: str, name: str) -> ConnectorRow:
    key = state.container.catalog.get(name).key
    return next(r for r in await connector_rows(state, org_id) if r.data["key"] == key)


def matches(row: ConnectorRow, text: str, state: str, enabled: str) -> bool:
    """The list's filters: free text (name, key, group, apps), auth state, on/off."""
    if state and row.state != state:
        return False
    if enabled in ("on", "off") and row.data["isEnabled"] is not (enabled == "on"):
        return False
    if text:
        haystack = " ".join([row.data["name"], row.data["key"], row.data["appGroup"], *row.data["apps"]]).lower()
        return text.lower() in haystack
    return True


@frozen
class EventLine:
    occurred_at: datetime
    connector: str
    type: str
    details: dict[str, Any]


async def timeline(state: ApiState, org_id: str, connector: str, kind: str) -> list[EventLine]:
    """The org's newest events first (of :data:`TIMELINE_WINDOW`), of one connector and type
    when given."""
    messages = await state.container.storage.outbox.recent(TIMELINE_WINDOW, org_id=org_id)
    return [
        _line(m)
        for m in reversed(messages)
        if (not connector or m.event.connector_key == connector) and (not kind or m.event.event_type == kind)
    ]


def _line(message: OutboxMessage) -> EventLine:
    wire = envelope(message)
    event = message.event
    skip = {"orgId", "connector", "eventId", "eventType", "timestamp", "payload", "tokenReferenceId"}
    details = {k: v for k, v in {**wire, **wire.get("payload", {})}.items() if k not in skip and v not in (None, [])}
    return EventLine(event.occurred_at, event.connector_key, event.event_type, details)


def connector_keys(rows: Sequence[ConnectorRow]) -> list[str]:
    return [r.data["key"] for r in rows]

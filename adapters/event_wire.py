"""Events as consumers receive them (Kafka value, headers and key; the events API).

Entity events: ``{eventId, eventType, timestamp (epoch ms), payload}`` on ``entity-events``.
Token events: ``{eventId, eventType, tokenReferenceId, serviceType, accountId, timestamp}``
on ``token-events``; ``TOKEN_EXPIRING`` adds ``refreshTokenExpiresAt`` (epoch ms),
``expiresBecause`` and ``warnBeforeSeconds``. JSON is encoded exactly once, UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

from connector_core.model.events import (
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RefreshTokenExpiring,
    TokenEvent,
)
from connector_core.ports.outbox import OutboxMessage


def _ms(event: DomainEvent) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def payload(event: DomainEvent) -> dict[str, Any]:
    base: dict[str, Any] = {"orgId": event.org_id, "connector": event.connector_key}
    if isinstance(event, AppEnabled):
        data = {
            "orgId": event.org_id,
            "appGroup": event.app_group,
            "appGroupId": event.app_group_id,
            "apps": list(event.apps),
            "syncAction": str(event.sync_action),
            "connector": event.connector_key,
        }
        if event.credentials_route:
            data["credentialsRoute"] = event.credentials_route
        if event.refresh_token_route:
            data["refreshTokenRoute"] = event.refresh_token_route
        return data
    if isinstance(event, AppDisabled):
        return {
            "orgId": event.org_id,
            "appGroup": event.app_group,
            "appGroupId": event.app_group_id,
            "apps": list(event.apps),
            "connector": event.connector_key,
        }
    if isinstance(event, ConnectorConfigured):
        return {**base, "changedFields": list(event.changed_fields)}
    if isinstance(event, FiltersSaved):
        return {**base, "filterKeys": list(event.filter_keys)}
    if isinstance(event, AuthStatusChanged):
        return {**base, "status": event.status, "reason": event.reason}
    return base


def envelope(message: OutboxMessage) -> dict[str, Any]:
    event = message.event
    if isinstance(event, TokenEvent):
        body: dict[str, Any] = {
            "eventId": event.event_id,
            "eventType": event.event_type,
            "tokenReferenceId": event.token_reference_id,
            "serviceType": event.service_type,
            "accountId": event.account_id,
            "orgId": event.org_id,
            "connector": event.connector_key,
            "timestamp": _ms(event),
        }
        if isinstance(event, RefreshTokenExpiring):
            body["refreshTokenExpiresAt"] = int(event.refresh_token_expires_at.timestamp() * 1000)
            body["expiresBecause"] = event.expires_because
            body["warnBeforeSeconds"] = event.warn_before_seconds
        return body
    return {
        "eventId": event.event_id,
        "eventType": event.event_type,
        "timestamp": _ms(event),
        "payload": payload(event),
    }


def kafka_record(message: OutboxMessage) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) for one outbox message."""
    event = message.event
    value = json.dumps(envelope(message), separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        ("eventType", event.event_type.encode()),
        ("timestamp", str(_ms(event)).encode()),
        ("eventId", event.event_id.encode()),
    ]
    return event.topic, event.partition_key.encode(), value, headers

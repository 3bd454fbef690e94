"""Events as consumers receive them (Kafka value, headers and key; the events API).

Entity events: ``{eventId, eventType, timestamp (epoch ms), payload}`` on ``entity-events``.
Token events: ``{eventId, eventType, tokenReferenceId, serviceType, accountId, timestamp}``
on ``token-events``; ``TOKEN_EXPIRING`` adds ``refreshTokenExpiresAt`` (epoch ms),
``expiresBecause`` and ``warnBeforeSeconds``. JSON is encoded exactly once, UTF-8.

``compat = "pipeshub"`` (the existing service's consumers): Google Workspace's real-time updates
go to ``sync-events`` as ``gmailUpdatesEnabledEvent {orgId, topicName}`` and
``gmailUpdatesDisabledEvent {orgId}``, in the same envelope; every other event is the same in
both profiles (its fields are a superset of what the existing service sent).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from connector_core.model.events import (
    ENTITY_TOPIC,
    SYNC_TOPIC,
    TOKEN_TOPIC,
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RealTimeUpdatesChanged,
    RefreshTokenExpiring,
    TokenEvent,
)
from connector_core.ports.outbox import OutboxMessage, WireRecord

#: ``none``: our shapes; ``pipeshub``: the existing service's consumers' (the ``compat`` setting)
Profile = Literal["none", "pipeshub"]

#: the connector whose real-time updates the existing service announced on ``sync-events``
_GMAIL_CONNECTOR = "googleWorkspace"


def topics(profile: Profile = "none") -> tuple[str, ...]:
    """Every topic events go to in ``profile``."""
    return (ENTITY_TOPIC, TOKEN_TOPIC, SYNC_TOPIC) if profile == "pipeshub" else (ENTITY_TOPIC, TOKEN_TOPIC)


def _as_gmail_update(event: DomainEvent, profile: Profile) -> RealTimeUpdatesChanged | None:
    if profile == "pipeshub" and isinstance(event, RealTimeUpdatesChanged) and event.connector_key == _GMAIL_CONNECTOR:
        return event
    return None


def event_type(event: DomainEvent, profile: Profile = "none") -> str:
    gmail = _as_gmail_update(event, profile)
    if gmail is not None:
        return "gmailUpdatesEnabledEvent" if gmail.enabled else "gmailUpdatesDisabledEvent"
    return event.event_type


def topic(event: DomainEvent, profile: Profile = "none") -> str:
    return SYNC_TOPIC if _as_gmail_update(event, profile) is not None else event.topic


def _ms(event: DomainEvent) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def payload(event: DomainEvent, profile: Profile = "none") -> dict[str, Any]:
    gmail = _as_gmail_update(event, profile)
    if gmail is not None:  # exactly the existing service's sync event payloads
        return {"orgId": gmail.org_id, "topicName": gmail.topic_name} if gmail.enabled else {"orgId": gmail.org_id}
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
    if isinstance(event, RealTimeUpdatesChanged):
        return {**base, "enabled": event.enabled, "topicName": event.topic_name}
    return base


def envelope(message: OutboxMessage, profile: Profile = "none") -> dict[str, Any]:
    return envelope_of(message.event, profile)


def envelope_of(event: DomainEvent, profile: Profile = "none") -> dict[str, Any]:
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
        "eventType": event_type(event, profile),
        "timestamp": _ms(event),
        "payload": payload(event, profile),
    }


def kafka_record(message: OutboxMessage, profile: Profile = "none") -> WireRecord:
    """(topic, key, value, headers) for one outbox message: the record its store kept when it
    wrote the event (:func:`stored_wire`: the same in every profile), else encoded here."""
    if message.wire is not None:
        return message.wire
    return encode_record(message.event, profile)


def encode_record(event: DomainEvent, profile: Profile = "none") -> WireRecord:
    """(topic, key, value, headers) for one event, encoded now."""
    value = json.dumps(envelope_of(event, profile), separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "eventType": event_type(event, profile).encode(),
        "timestamp": str(_ms(event)).encode(),
        "eventId": event.event_id.encode(),
    }
    return topic(event, profile), event.partition_key.encode(), value, headers


def stored_wire(event: DomainEvent) -> bytes | None:
    """What a store keeps next to an event it writes, so it rebuilds the event's record without
    decoding it (:meth:`adapters.sqlite.outbox_reader.SQLiteOutboxReader.pending`, with the
    partition key in a column of its own): the topic, the event type, the timestamp and the event
    id, then the value, one line each (the value last: JSON text has no raw line break, nor have
    the others; a partition key may have one). None for an event whose record depends on the
    profile (those are encoded at publishing time)."""
    if _as_gmail_update(event, "pipeshub") is not None:
        return None
    topic_name, _, value, headers = encode_record(event)
    return b"\n".join((topic_name.encode(), headers["eventType"], headers["timestamp"], headers["eventId"], value))

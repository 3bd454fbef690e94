"""The cattrs converter that stores domain objects as JSON-compatible documents.

Every store uses it: SQLite, etcd and the Kafka payloads write the documents as JSON text, the
in-memory store keeps them as dicts, MongoDB stores them as BSON documents (datetimes stay
ISO-8601 strings there too, so one document reads the same from every store). Domain classes
stay free of ``to_dict``.

Events are one tagged union on their ``event_type``, built once with the converter: the entity
events each have one fixed type; token events have several (``TOKEN_CREATED``, ...) and are the
union's default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from connector_core.errors import ValidationError
from connector_core.model.connector import Connector
from connector_core.model.events import (
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
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.tokens import TokenRecord

#: every stored event; the tag is ``event_type``
StoredEvent = (
    AppEnabled
    | AppDisabled
    | ConnectorConfigured
    | FiltersSaved
    | AuthStatusChanged
    | RefreshTokenExpiring
    | RealTimeUpdatesChanged
    | TokenEvent
)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _is_frozenset(t: Any) -> bool:
    return t is frozenset or get_origin(t) is frozenset


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _event_tag(cls: type) -> str:
    """An entity event's one type; token events (whose types vary) fall to the default."""
    default = attrs.fields_dict(cls)["event_type"].default
    return str(default)


def make_json_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(datetime, lambda d: _aware(d).isoformat())
    conv.register_structure_hook(datetime, lambda v, _: _aware(datetime.fromisoformat(v)))
    conv.register_unstructure_hook(MappingProxyType, _plain)
    conv.register_unstructure_hook_func(_is_frozenset, sorted)
    for kind in (enum.Enum, enum.StrEnum):  # a StrEnum would otherwise pass as the str it also is
        conv.register_unstructure_hook(kind, lambda e: e.value)
    # Aggregates: their pending events are not state.
    for cls in (Connector, TokenRecord):
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, events=override(omit=True)))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, events=override(omit=True)))
    configure_tagged_union(StoredEvent, conv, tag_generator=_event_tag, tag_name="event_type", default=TokenEvent)
    # An event is unstructured as its own class (``event_type`` is one of its fields); the
    # union's own unstructure hook would overwrite a token event's type with the default's tag.
    conv.register_unstructure_hook_func(lambda t: t == StoredEvent, conv.unstructure)
    return conv


def connector_to_doc(conv: cattrs.Converter, connector: Connector) -> dict[str, Any]:
    doc: dict[str, Any] = conv.unstructure(connector)
    return doc


def connector_from_doc(conv: cattrs.Converter, doc: Mapping[str, Any]) -> Connector:
    return conv.structure(dict(doc), Connector)


def event_to_doc(conv: cattrs.Converter, event: DomainEvent) -> dict[str, Any]:
    doc: dict[str, Any] = conv.unstructure(event)
    return doc


def event_from_doc(conv: cattrs.Converter, doc: Mapping[str, Any]) -> DomainEvent:
    """The stored event; :class:`ValidationError` (naming its type) when it is not one we wrote."""
    try:
        event: DomainEvent = conv.structure(dict(doc), StoredEvent)  # type: ignore[arg-type]
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError):
        raise ValidationError(f"unknown or malformed stored event of type {doc.get('event_type')!r}") from None
    return event


def pending_to_doc(conv: cattrs.Converter, pending: PendingAuthorization) -> dict[str, Any]:
    doc: dict[str, Any] = conv.unstructure(pending)
    return doc


def pending_from_doc(conv: cattrs.Converter, doc: Mapping[str, Any]) -> PendingAuthorization:
    return conv.structure(dict(doc), PendingAuthorization)

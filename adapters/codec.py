"""cattrs converters for storing domain objects as JSON-compatible documents.

One converter per wire format: :func:`make_json_converter` (SQLite, etcd, Kafka payloads:
datetimes as ISO-8601 strings) and :func:`make_document_converter` (MongoDB: datetimes
native). Domain classes stay free of ``to_dict``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, get_origin

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from connector_core.errors import ValidationError
from connector_core.model.connector import Connector, ConnectorConfig
from connector_core.model.events import EVENT_CLASSES, DomainEvent, TokenEvent
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.tokens import TokenRecord, TokenSet


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _base(datetimes_as_strings: bool) -> cattrs.Converter:
    conv = cattrs.Converter()
    if datetimes_as_strings:
        conv.register_unstructure_hook(datetime, lambda d: _aware(d).isoformat())
        conv.register_structure_hook(datetime, lambda v, _: _aware(datetime.fromisoformat(v)))
    else:
        conv.register_unstructure_hook(datetime, lambda d: _aware(d))
        conv.register_structure_hook(datetime, lambda v, _: _aware(v))
    conv.register_unstructure_hook(MappingProxyType, lambda m: {k: _plain(v) for k, v in m.items()})
    conv.register_unstructure_hook_func(_is_frozenset, lambda s: sorted(s))
    conv.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda e: e.value)
    # Aggregates: their pending events are not state.
    for cls in (Connector, TokenRecord):
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, events=override(omit=True)))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, events=override(omit=True)))
    conv.register_unstructure_hook(DomainEvent, lambda e: _unstructure_event(conv, e))
    conv.register_structure_hook(DomainEvent, lambda v, _: _structure_event(conv, v))
    return conv


def _is_frozenset(t: Any) -> bool:
    return t is frozenset or get_origin(t) is frozenset


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _unstructure_event(conv: cattrs.Converter, event: DomainEvent) -> dict[str, Any]:
    cls = type(event)
    data: dict[str, Any] = make_dict_unstructure_fn(cls, conv)(event)
    return data


def _structure_event(conv: cattrs.Converter, data: Mapping[str, Any]) -> DomainEvent:
    cls = EVENT_CLASSES.get(str(data.get("event_type")))
    if cls is None:
        raise ValidationError(f"unknown stored event type {data.get('event_type')!r}")
    fields = dict(data)
    if cls is TokenEvent:
        fields.pop("event_type", None)
    event: DomainEvent = make_dict_structure_fn(cls, conv)(fields, cls)
    return event


def make_json_converter() -> cattrs.Converter:
    """For JSON stores: datetimes as ISO-8601 strings."""
    return _base(datetimes_as_strings=True)


def make_document_converter() -> cattrs.Converter:
    """For BSON stores: datetimes stay ``datetime``."""
    return _base(datetimes_as_strings=False)


# -- token material: the secret half of a TokenRecord, stored encrypted ----------------------


def token_material(conv: cattrs.Converter, tokens: TokenSet) -> dict[str, Any]:
    data: dict[str, Any] = conv.unstructure(tokens)
    return data


def token_set_from(conv: cattrs.Converter, data: Mapping[str, Any]) -> TokenSet:
    return conv.structure(dict(data), TokenSet)


def connector_to_doc(conv: cattrs.Converter, connector: Connector) -> dict[str, Any]:
    data: dict[str, Any] = conv.unstructure(connector)
    return data


def connector_from_doc(conv: cattrs.Converter, data: Mapping[str, Any]) -> Connector:
    return conv.structure(dict(data), Connector)


def event_to_doc(conv: cattrs.Converter, event: DomainEvent) -> dict[str, Any]:
    data: dict[str, Any] = conv.unstructure(event, DomainEvent)
    return data


def event_from_doc(conv: cattrs.Converter, data: Mapping[str, Any]) -> DomainEvent:
    return _structure_event(conv, data)


def pending_to_doc(conv: cattrs.Converter, pending: PendingAuthorization) -> dict[str, Any]:
    data: dict[str, Any] = conv.unstructure(pending)
    return data


def pending_from_doc(conv: cattrs.Converter, data: Mapping[str, Any]) -> PendingAuthorization:
    return conv.structure(dict(data), PendingAuthorization)


__all__ = [
    "ConnectorConfig",
    "connector_from_doc",
    "connector_to_doc",
    "event_from_doc",
    "event_to_doc",
    "make_document_converter",
    "make_json_converter",
    "pending_from_doc",
    "pending_to_doc",
    "token_material",
    "token_set_from",
]

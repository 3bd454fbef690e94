"""What changed between two configurations of a connector, and how an event names it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector_core.model.connector import ConnectorConfig

__all__ = ["MAX_FIELD_NAME", "MAX_NAMED_FIELDS", "changed_paths", "named_in_event"]

#: an event names at most this many changed fields, each at most this long: a configuration of
#: thousands of (or endless) free-form keys must not make an event larger than a broker takes
MAX_NAMED_FIELDS = 100
MAX_FIELD_NAME = 200


def named_in_event(changed: list[str]) -> tuple[str, ...]:
    """The changed fields as ``connectorConfigured`` names them: by path while they are few and
    short, else each too-long one, then (if still too many) every one, by its section
    (``filters``). Names only, never values."""
    names = sorted({p if len(p) <= MAX_FIELD_NAME else p.partition(".")[0] for p in changed})
    if len(names) > MAX_NAMED_FIELDS:
        names = sorted({p.partition(".")[0] for p in names})
    return tuple(names)


def changed_paths(old: ConnectorConfig, new: ConnectorConfig) -> set[str]:
    changed: set[str] = set()
    for section in ("auth", "sync", "filters"):
        a: Mapping[str, Any] = getattr(old, section)
        b: Mapping[str, Any] = getattr(new, section)
        changed |= {f"{section}.{k}" for k in set(a) | set(b) if a.get(k) != b.get(k)}
    if old.base_url != new.base_url:
        changed.add("baseUrl")
    changed |= {p for p in old.secrets_set ^ new.secrets_set}
    return changed

"""Connector repository port: the Connector aggregates, one per (org, key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from connector_core.model.connector import Connector


class ConnectorRepository(Protocol):
    async def get(self, org_id: str, key: str) -> Connector | None:
        """The connector of ``org_id`` with catalog ``key``, or None. Only that org's data."""
        ...

    async def list(self, org_id: str, *, enabled: bool | None = None) -> Sequence[Connector]:
        """The org's connectors (filtered by ``isEnabled`` when given), ordered by key,
        in one storage round trip."""
        ...

    async def add(self, connector: Connector) -> None:
        """Insert a new connector (version 0 → 1). :class:`Conflict` if (org, key) exists."""
        ...

    async def save(self, connector: Connector) -> None:
        """Update; succeeds only if the stored version equals ``connector.version``, then bumps
        it. A stale version raises :class:`Conflict` and changes nothing."""
        ...

"""Token store port: token metadata in the clear (queryable), token material encrypted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from connector_core.tokens import TokenCensus, TokenRecord, TokenSummary


class TokenStore(Protocol):
    async def get(self, token_id: str) -> TokenRecord | None:
        """The record with this id, material decrypted, or None."""
        ...

    async def get_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        """The (single) token record of one org's connector, or None."""
        ...

    async def add(self, record: TokenRecord) -> None:
        """Insert (version 0 → 1). :class:`Conflict` if the connector already has a record."""
        ...

    async def save(self, record: TokenRecord) -> None:
        """Compare-and-set on ``record.version``; stale → :class:`Conflict`, nothing written.
        With "the stored refresh token is the one used", this is the fence that keeps a worker
        whose lease lapsed from overwriting a newer token (leases carry no fencing token)."""
        ...

    async def delete(self, record: TokenRecord) -> None:
        """Delete if the version matches (else :class:`Conflict`)."""
        ...

    async def due_before(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        """ACTIVE records whose refresh is due at ``moment`` (``refresh_due_at`` and any backoff
        ``next_attempt_at`` passed), earliest first, at most ``limit``."""
        ...

    async def expired_unnotified(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        """Records whose access token expired by ``moment`` and whose expiry was not yet
        announced, excluding revoked ones; at most ``limit``."""
        ...

    async def warnings_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        """ACTIVE and PAUSED records whose next refresh-token warning is due at ``moment``
        (``refresh_warn_at`` passed), earliest first, at most ``limit``."""
        ...

    async def summaries(self, org_id: str) -> Sequence[TokenSummary]:
        """Every token record of one org without its material (nothing is decrypted), by
        connector key; this unit of work's own staged records included."""
        ...

    async def census(self, now: datetime) -> TokenCensus:
        """Every committed record counted per connector key and :class:`TokenState` at ``now``,
        the soonest access-token expiry of ACTIVE ones, and live (ACTIVE, PAUSED) ones by how
        close their stored ``refresh_deadline`` is. One aggregate query: no material is read."""
        ...

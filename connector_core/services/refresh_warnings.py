"""The refresh-token warning sweep: TOKEN_EXPIRING ahead of a lineage's deadline, once per
lineage and threshold (the rule: :mod:`connector_core.tokens.refresh_deadline`)."""

from __future__ import annotations

import logging
from datetime import datetime

from connector_core.model.events import DomainEvent, RefreshTokenExpiring
from connector_core.ports.token_store import TokenStore
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.services.token_sweep import sweep_tokens
from connector_core.tokens import RefreshTokenLimits, TokenRecord

__all__ = ["RefreshTokenWarnings"]

log = logging.getLogger(__name__)


class RefreshTokenWarnings:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def run(self, limit: int = 500) -> int:
        """Announce every warning that is due (each token in its own commit), judged with the
        limits as configured now (the connector's ``testingMode`` included). Returns how many
        were announced; a token changed meanwhile is left to the next sweep."""
        changed = await sweep_tokens(self.ctx, _warnings_due, self._announce, limit)
        warned = [r for r, events in changed if any(isinstance(e, RefreshTokenExpiring) for e in events)]
        for record in warned:
            log.warning(
                "refresh token expiring: org=%s connector=%s token=%s deadline=%s; authorize again before then",
                record.org_id,
                record.connector_key,
                record.id,
                record.refresh_deadline.isoformat() if record.refresh_deadline else None,
            )
        return len(warned)

    async def _announce(self, uow: UnitOfWork, record: TokenRecord, now: datetime) -> list[DomainEvent]:
        # saved even without a warning: the time of the next one moved past now
        record.announce_expiring(await self._limits(uow, record), now=now, ids=self.ctx.ids)
        return record.pull_events()

    async def _limits(self, uow: UnitOfWork, record: TokenRecord) -> RefreshTokenLimits:
        entry = self.ctx.catalog.find(record.connector_key)
        if entry is None:  # a custom provider no longer configured: only the provider's word counts
            return RefreshTokenLimits()
        connector = await uow.connectors.get(record.org_id, record.connector_key)
        return entry.refresh_limits(connector.config.auth if connector is not None else {})


async def _warnings_due(tokens: TokenStore, now: datetime, limit: int) -> list[TokenRecord]:
    return list(await tokens.warnings_due(now, limit))

"""The expiry sweep: TOKEN_EXPIRED once for every access token that expired unrefreshed."""

from __future__ import annotations

import logging
from datetime import datetime

from connector_core.errors import ProviderError
from connector_core.model.events import DomainEvent
from connector_core.ports.token_store import TokenStore
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.services.staging import mark_needs_reauthentication
from connector_core.services.token_sweep import sweep_tokens
from connector_core.tokens import TokenRecord, TokenStatus

__all__ = ["ExpirySweep"]

log = logging.getLogger(__name__)


class ExpirySweep:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def run(self, limit: int = 500) -> int:
        """Announce TOKEN_EXPIRED once per expired token (each in its own commit). A token that
        cannot be refreshed at all also marks its connector as needing re-authorization.
        Returns how many were announced; one changed meanwhile is left to the next sweep."""
        announced = len(await sweep_tokens(self.ctx, _expired, self._announce, limit))
        if announced:
            log.info("token expiry announced for %d token(s)", announced)
        return announced

    async def _announce(self, uow: UnitOfWork, record: TokenRecord, now: datetime) -> list[DomainEvent] | None:
        if not record.check_expiry(now=now, ids=self.ctx.ids):
            return None
        events = record.pull_events()
        if not record.tokens.can_refresh and record.status == TokenStatus.ACTIVE:
            reason = "the access token expired and cannot be refreshed"
            record.apply_reauthorization_required(ProviderError(reason), now=now, ids=self.ctx.ids)
            events += record.pull_events()
            events += await mark_needs_reauthentication(uow, self.ctx, record, reason)
        return events


async def _expired(tokens: TokenStore, now: datetime, limit: int) -> list[TokenRecord]:
    return list(await tokens.expired_unnotified(now, limit))

"""The expiry sweep: TOKEN_EXPIRED once for every access token that expired unrefreshed."""

from __future__ import annotations

import logging

from connector_core.errors import Conflict, ProviderError
from connector_core.services.context import ServiceContext
from connector_core.services.staging import mark_needs_reauthentication
from connector_core.tokens import TokenStatus

__all__ = ["ExpirySweep"]

log = logging.getLogger(__name__)


class ExpirySweep:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def run(self, limit: int = 500) -> int:
        """Announce TOKEN_EXPIRED once per expired token (each in its own commit). A token that
        cannot be refreshed at all also marks its connector as needing re-authorization.
        Returns how many were announced; one changed meanwhile is left to the next sweep."""
        now = self.ctx.clock.now()
        async with self.ctx.uow() as uow:
            expired = list(await uow.tokens.expired_unnotified(now, limit))
        announced = 0
        for record in expired:
            try:
                async with self.ctx.uow() as uow:
                    if not record.check_expiry(now=now, ids=self.ctx.ids):
                        continue
                    events = record.pull_events()
                    if not record.tokens.can_refresh and record.status == TokenStatus.ACTIVE:
                        reason = "the access token expired and cannot be refreshed"
                        record.apply_reauthorization_required(ProviderError(reason), now=now, ids=self.ctx.ids)
                        events += record.pull_events()
                        events += await mark_needs_reauthentication(uow, self.ctx, record, reason)
                    await uow.tokens.save(record)
                    await uow.outbox.add(events)
                    await uow.commit()
                announced += 1
            except Conflict:
                continue  # changed meanwhile (refreshed, re-authorized): the next sweep decides
        if announced:
            log.info("token expiry announced for %d token(s)", announced)
        return announced

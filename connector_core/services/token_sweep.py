"""A sweep over stored tokens: find the ones a rule picks, change each in its own commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from connector_core.errors import Conflict
from connector_core.model.events import DomainEvent
from connector_core.ports.token_store import TokenStore
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.tokens import TokenRecord

__all__ = ["Change", "Find", "sweep_tokens"]

#: ``(tokens, now, limit)`` → the records to look at
Find = Callable[[TokenStore, datetime, int], Awaitable[Sequence[TokenRecord]]]
#: ``(uow, record, now)`` → the events of the change made to ``record``, or None to leave it
Change = Callable[[UnitOfWork, TokenRecord, datetime], Awaitable[list[DomainEvent] | None]]


async def sweep_tokens(
    ctx: ServiceContext, find: Find, change: Change, limit: int
) -> list[tuple[TokenRecord, list[DomainEvent]]]:
    """Each record ``find`` returns is changed and saved with its events in its own unit of work;
    one changed meanwhile (:class:`Conflict`) is left to the next sweep. Returns the changed
    records with the events stored for each."""
    now = ctx.clock.now()
    async with ctx.uow() as uow:
        found = list(await find(uow.tokens, now, limit))
    changed: list[tuple[TokenRecord, list[DomainEvent]]] = []
    for record in found:
        try:
            async with ctx.uow() as uow:
                events = await change(uow, record, now)
                if events is None:
                    continue
                await uow.tokens.save(record)
                await uow.outbox.add(events)
                await uow.commit()
        except Conflict:
            continue
        changed.append((record, events))
    return changed

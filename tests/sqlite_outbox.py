"""Events committed to a SQLite outbox through the product's unit of work."""

from __future__ import annotations

import uuid

from adapters.sqlite import SQLiteDatabase, SQLiteUnitOfWork
from adapters.system import SecureIds, SystemClock
from connector_core.catalog import Catalog
from connector_core.model.events import DomainEvent, SyncAction
from tests.builders import api_token_connector


async def commit_toggles(db: SQLiteDatabase, catalog: Catalog, times: int) -> None:
    """``times`` toggles of one new org's connector, their events committed in one unit of work."""
    clock, ids = SystemClock(), SecureIds()
    c = api_token_connector(catalog, f"org-{uuid.uuid4().hex[:8]}", clock.now(), ids=ids)
    events: list[DomainEvent] = []
    for _ in range(times):
        c.toggle(catalog.get("confluence"), by="u", now=clock.now(), ids=ids, sync_action=SyncAction.NONE)
        events.extend(c.pull_events())
    async with SQLiteUnitOfWork(db) as uow:
        await uow.outbox.add(events)
        await uow.commit()

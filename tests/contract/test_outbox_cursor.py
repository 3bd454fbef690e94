"""Contract: reading the outbox with a cursor never skips an event, whatever order two writers
commit in (issue 8: on MongoDB, ordered by the writer's clock, a reader could pass an event that
a slower writer stamped earlier and committed later).

The cursor to read on from is what :meth:`OutboxReader.resume_point` says; a reader may be
handed an event again (it dedupes on ``eventId``), never denied one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from connector_core.model.events import AppDisabled, AppEnabled, DomainEvent, SyncAction
from connector_core.ports.outbox import OutboxMessage
from tests.contract.conftest import Harness


class Writer:
    """Commits one event per unit of work, for one connector of one org."""

    def __init__(self, harness: Harness, org: str, connector: str) -> None:
        self.harness, self.org, self.connector = harness, org, connector
        self.n = 0

    async def commit(self) -> str:
        self.n += 1
        now = self.harness.clock.now()
        common: dict[str, Any] = {
            "event_id": f"{self.org}-{self.connector}-{self.n}",
            "occurred_at": now,
            "org_id": self.org,
            "connector_key": self.connector,
        }
        event: DomainEvent = (
            AppEnabled(**common, app_group="g", app_group_id="g1", apps=("A",), sync_action=SyncAction.NONE)
            if self.n % 2
            else AppDisabled(**common, app_group="g", app_group_id="g1", apps=("A",))
        )
        async with self.harness.uow() as uow:
            await uow.outbox.add([event])
            await uow.commit()
        return event.event_id


class Poller:
    """What a service polling the events route does: read on from the resume point, dedupe."""

    def __init__(self, harness: Harness, org: str, limit: int) -> None:
        self.harness, self.org, self.limit = harness, org, limit
        self.cursor: str | None = None
        self.seen: list[str] = []

    async def poll(self) -> list[str]:
        outbox = self.harness.outbox
        page: Sequence[OutboxMessage] = await (
            outbox.after(self.cursor, self.limit, org_id=self.org)
            if self.cursor
            else outbox.recent(self.limit, org_id=self.org)
        )
        self.cursor = await outbox.resume_point(page, after=self.cursor, org_id=self.org)
        new = [m.event.event_id for m in page if m.event.event_id not in self.seen]
        self.seen += new
        return new

    async def drain(self) -> None:
        for _ in range(50):
            if not await self.poll():
                return


async def test_an_event_stamped_earlier_but_committed_later_is_not_skipped(harness: Harness) -> None:
    """Writer A stamps its commit a second before writer B's (a slower commit, or a clock a
    second behind) but commits after a poller already read B's event."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    a, b = Writer(harness, org, "confluence"), Writer(harness, org, "jira")
    poller = Poller(harness, org, limit=10)
    expected = [await a.commit(), await b.commit()]
    harness.clock.advance(60)  # those two are long settled
    await poller.drain()
    assert poller.seen == expected

    expected.append(await b.commit())  # B, at t
    assert await poller.poll() == [expected[-1]]
    harness.clock.advance(-1)
    expected.append(await a.commit())  # A, stamped at t - 1 s, committed after the poll
    harness.clock.advance(1.5)
    await poller.drain()
    assert sorted(poller.seen) == sorted(expected), "an event committed after a poll was skipped"
    assert len(poller.seen) == len(set(poller.seen))


async def test_a_poller_moves_on_once_events_are_settled(harness: Harness) -> None:
    """Events handed out again are only the newest few: once they are old enough, the cursor
    passes them and every page is new."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    w = Writer(harness, org, "confluence")
    ids = [await w.commit() for _ in range(5)]
    harness.clock.advance(60)
    poller = Poller(harness, org, limit=2)
    poller.cursor, poller.seen = ids[0], [ids[0]]
    await poller.drain()
    assert poller.seen == ids
    last = poller.cursor
    assert last == ids[-1]
    assert await harness.outbox.after(last, 10, org_id=org) == []

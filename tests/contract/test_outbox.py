"""Contract: the outbox (events with their state change, in order, crash-safe)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import pytest

from connector_core.catalog import Catalog
from connector_core.errors import Conflict, UnknownEvent
from connector_core.model.events import SyncAction
from connector_core.ports.outbox import OutboxBacklog
from tests.builders import api_token_connector
from tests.conftest import CountingIds
from tests.contract.conftest import Harness


async def toggled(harness: Harness, catalog: Catalog, org_id: str, times: int) -> None:
    """Store a configured Confluence connector of ``org_id`` and toggle it ``times`` times,
    each toggle in its own unit of work with its event."""
    now = harness.clock.now()
    ids = CountingIds(prefix=f"{org_id}-")  # event ids unique in the store, as real ones are
    entry = catalog.get("confluence")
    c = api_token_connector(catalog, org_id, now)
    async with harness.uow() as uow:
        await uow.connectors.add(c)
        await uow.commit()
    for _ in range(times):
        c.toggle(entry, by="u", now=now, ids=ids, sync_action=SyncAction.NONE)
        async with harness.uow() as uow:
            await uow.connectors.save(c)
            await uow.outbox.add(c.pull_events())
            await uow.commit()


async def toggled_again(harness: Harness, catalog: Catalog, org_id: str, times: int) -> None:
    """Toggle the Confluence connector :func:`toggled` stored ``times`` more times."""
    ids = CountingIds(prefix=f"{org_id}-again-")
    for _ in range(times):
        async with harness.uow() as uow:
            c = await uow.connectors.get(org_id, "confluence")
            assert c is not None
            c.toggle(catalog.get("confluence"), by="u", now=harness.clock.now(), ids=ids, sync_action=SyncAction.NONE)
            await uow.connectors.save(c)
            await uow.outbox.add(c.pull_events())
            await uow.commit()


async def test_pending_in_commit_order_and_mark_published(harness: Harness, catalog: Catalog) -> None:
    o = f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 3)
    pending = [m for m in await harness.outbox.pending(100) if m.event.org_id == o]
    assert [m.event.event_type for m in pending] == ["appEnabled", "appDisabled", "appEnabled"]
    assert [m.seq for m in pending] == sorted(m.seq for m in pending)
    await harness.outbox.mark_published([pending[0].seq])
    await harness.outbox.mark_published([pending[0].seq])  # idempotent
    rest = [m for m in await harness.outbox.pending(100) if m.event.org_id == o]
    assert [m.seq for m in rest] == [m.seq for m in pending[1:]]
    assert len([m for m in await harness.outbox.recent(100) if m.event.org_id == o]) == 3


async def test_marking_a_run_of_seqs_or_scattered_ones_marks_exactly_those(harness: Harness, catalog: Catalog) -> None:
    o = f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 5)
    first = [m.seq for m in await harness.outbox.pending(1000) if m.event.org_id == o]
    await harness.outbox.mark_published(first[1:3])  # consecutive events (a run of seqs where seqs count up)
    assert [m.seq for m in await harness.outbox.pending(1000) if m.event.org_id == o] == [first[0], *first[3:]]
    await harness.outbox.mark_published([first[4], first[0], first[4]])  # scattered, out of order, repeated
    assert [m.seq for m in await harness.outbox.pending(1000) if m.event.org_id == o] == [first[3]]


async def test_pending_beyond_a_batch_is_what_pending_gives_once_that_batch_is_marked(
    harness: Harness, catalog: Catalog
) -> None:
    """The relay reads its next batch while the broker takes the current one."""
    for o in [f"org-{uuid.uuid4().hex[:8]}" for _ in range(3)]:
        await toggled(harness, catalog, o, 3)
    everything = await harness.outbox.pending(1000)
    for size in (1, 4, len(everything)):
        batch = await harness.outbox.pending(size)
        ahead = await harness.outbox.pending(size, beyond=batch)
        assert not {m.seq for m in ahead} & {m.seq for m in batch}
        expected = [m.seq for m in everything if m.seq not in {b.seq for b in batch}][:size]
        assert [m.seq for m in ahead] == expected, size
    await harness.outbox.mark_published([m.seq for m in await harness.outbox.pending(4)])
    assert [m.seq for m in await harness.outbox.pending(1000)] == [m.seq for m in everything[4:]]


async def test_events_of_a_failed_commit_never_appear(harness: Harness, catalog: Catalog) -> None:
    o = f"org-{uuid.uuid4().hex[:8]}"
    now = harness.clock.now()
    ids = CountingIds()
    entry = catalog.get("confluence")
    async with harness.uow() as uow:
        await uow.connectors.add(api_token_connector(catalog, o, now))
        await uow.commit()
    async with harness.uow() as uow:
        stale = await uow.connectors.get(o, "confluence")
    async with harness.uow() as uow:
        fresh = await uow.connectors.get(o, "confluence")
        assert fresh is not None
        fresh.save_filters({"spaces": ["A"]}, by="u", now=now, ids=ids)
        await uow.connectors.save(fresh)
        await uow.commit()
    assert stale is not None
    stale.enable(entry, sync_action=SyncAction.NONE, by="u", now=now, ids=ids)
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.connectors.save(stale)
            await uow.outbox.add(stale.pull_events())
            await uow.commit()
    assert [m for m in await harness.outbox.recent(100) if m.event.org_id == o] == []


@pytest.mark.sqlite
async def test_process_killed_mid_transaction_leaves_no_event(sqlite_harness: Harness, catalog: Catalog) -> None:
    """A writer that dies after writing state and outbox rows but before COMMIT leaves nothing."""
    harness = sqlite_harness
    db = harness.extra
    await db.run(lambda c: c.execute("SELECT 1").fetchone())  # create the schema
    script = textwrap.dedent(
        f"""
        import os, sqlite3
        c = sqlite3.connect({db.path!r}, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO connectors (org_id, key, version, is_enabled, doc)"
                  " VALUES ('crash-org', 'jira', 1, 1, '{{}}')")
        c.execute("INSERT INTO outbox (topic, partition_key, event_type, doc)"
                  " VALUES ('entity-events', 'crash-org:jira', 'appEnabled', '{{}}')")
        os._exit(9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=30)
    assert proc.returncode == 9
    assert harness.reopen is not None
    other = harness.reopen()
    async with other.uow() as uow:
        assert await uow.connectors.get("crash-org", "jira") is None
    assert [m for m in await other.outbox.recent(1000) if m.event.org_id == "crash-org"] == []
    # and the file is still writable by the survivors
    async with other.uow() as uow:
        await uow.connectors.add(api_token_connector(catalog, "after-crash", other.clock.now()))
        await uow.commit()


async def test_recent_of_one_org_is_not_crowded_out_by_others(harness: Harness, catalog: Catalog) -> None:
    """The events route reads one org's newest events; other orgs' later events must not
    push them out of the window."""
    mine, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, mine, 1)
    await toggled(harness, catalog, other, 5)
    got = await harness.outbox.recent(3, org_id=mine)
    assert [m.event.org_id for m in got] == [mine] and got[0].event.event_type == "appEnabled"
    theirs = await harness.outbox.recent(3, org_id=other)
    assert [m.event.event_type for m in theirs] == ["appEnabled", "appDisabled", "appEnabled"]
    assert [m.seq for m in theirs] == sorted(m.seq for m in theirs)


async def test_prune_keeps_the_newest_and_never_an_unpublished_event(harness: Harness, catalog: Catalog) -> None:
    o = f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 6)
    mine = [m for m in await harness.outbox.recent(100) if m.event.org_id == o]
    assert len(mine) == 6
    await harness.outbox.mark_published([m.seq for m in mine[:2]])  # the two oldest went out
    # keep 1: only the published ones may go
    assert await harness.outbox.prune(1, published_only=True) >= 2
    left = [m.seq for m in await harness.outbox.recent(100, org_id=o)]
    assert left == [m.seq for m in mine[2:]]
    assert [m.seq for m in await harness.outbox.pending(100) if m.event.org_id == o] == left
    # outbox-only deployments: everything but the newest goes
    await harness.outbox.prune(1, published_only=False)
    assert [m.seq for m in await harness.outbox.recent(100, org_id=o)] == [mine[-1].seq]


async def test_a_pending_batch_of_any_size_holds_each_connectors_oldest_events_in_order(
    harness: Harness, catalog: Catalog
) -> None:
    """The relay publishes ``pending(limit)`` as a batch: whatever the limit, the events of one
    connector in it are that connector's oldest pending events, in commit order (an event is
    never published before an earlier one of its connector)."""
    now = harness.clock.now()
    ids = CountingIds()
    entry = catalog.get("confluence")
    orgs = [f"org-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    connectors = [api_token_connector(catalog, o, now) for o in orgs]
    async with harness.uow() as uow:
        for c in connectors:
            await uow.connectors.add(c)
        await uow.commit()
    order: dict[str, list[str]] = {o: [] for o in orgs}
    for step in range(12):  # interleaved commits: 0, 1, 0, 2, 0, 1, ...
        c = connectors[[0, 1, 0, 2][step % 4]]
        c.toggle(entry, by="u", now=now, ids=ids, sync_action=SyncAction.NONE)
        events = c.pull_events()
        order[c.org_id] += [e.event_id for e in events]
        async with harness.uow() as uow:
            await uow.connectors.save(c)
            await uow.outbox.add(events)
            await uow.commit()
    everything = [m for m in await harness.outbox.pending(1000) if m.event.org_id in order]
    assert sorted(m.event.event_id for m in everything) == sorted(i for ids_ in order.values() for i in ids_)
    for limit in range(1, len(everything) + 1):
        batch = await harness.outbox.pending(limit)
        assert len(batch) == limit
        for org, expected in order.items():
            mine = [m.event.event_id for m in batch if m.event.org_id == org]
            assert mine == expected[: len(mine)], (limit, org)


async def test_after_pages_through_every_later_event_once_in_order(harness: Harness, catalog: Catalog) -> None:
    """A poller that passes the last id it saw sees every later event exactly once, in the
    order of ``recent`` (oldest first), one org's only; the same cursor reads the same page."""
    o, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 2)
    await toggled(harness, catalog, other, 2)  # interleaved in the store, never in o's pages
    await toggled_again(harness, catalog, o, 3)
    everything = list(await harness.outbox.recent(100, org_id=o))
    assert len(everything) == 5
    first = everything[0].event.event_id
    seen = [first]
    cursor = first
    while True:
        page = await harness.outbox.after(cursor, 2, org_id=o)
        assert len(page) <= 2
        if not page:
            break
        assert await harness.outbox.after(cursor, 2, org_id=o) == page  # stable
        seen += [m.event.event_id for m in page]
        cursor = page[-1].event.event_id
    assert seen == [m.event.event_id for m in everything]
    unscoped = await harness.outbox.after(first, 100)
    assert {m.event.org_id for m in unscoped} >= {o, other}
    assert [m.event.event_id for m in unscoped if m.event.org_id == o] == seen[1:]


async def test_after_an_unknown_or_foreign_event_is_unknown_event(harness: Harness, catalog: Catalog) -> None:
    o, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 1)
    (mine,) = await harness.outbox.recent(10, org_id=o)
    with pytest.raises(UnknownEvent) as info:
        await harness.outbox.after("no-such-event", 10)
    assert info.value.code == "EVENT_NOT_FOUND"
    with pytest.raises(UnknownEvent):
        await harness.outbox.after(mine.event.event_id, 10, org_id=other)
    assert await harness.outbox.after(mine.event.event_id, 10, org_id=o) == []


async def test_backlog_counts_unpublished_events_and_dates_the_oldest(harness: Harness, catalog: Catalog) -> None:
    assert await harness.outbox.backlog() == OutboxBacklog(0, None)
    first = harness.clock.now()
    await toggled(harness, catalog, f"org-{uuid.uuid4().hex[:8]}", 2)
    harness.clock.advance(90.5)
    await toggled(harness, catalog, f"org-{uuid.uuid4().hex[:8]}", 1)
    assert await harness.outbox.backlog() == OutboxBacklog(3, first)
    pending = await harness.outbox.pending(100)
    await harness.outbox.mark_published([m.seq for m in pending if m.event.occurred_at == first])
    assert await harness.outbox.backlog() == OutboxBacklog(1, first + timedelta(seconds=90.5))
    await harness.outbox.mark_published([m.seq for m in pending])
    assert await harness.outbox.backlog() == OutboxBacklog(0, None)


async def test_a_set_aside_event_is_kept_counted_and_never_pending_again(harness: Harness, catalog: Catalog) -> None:
    o = f"org-{uuid.uuid4().hex[:8]}"
    await toggled(harness, catalog, o, 4)
    mine = [m for m in await harness.outbox.pending(100) if m.event.org_id == o]
    counted = await harness.outbox.set_aside_count()
    await harness.outbox.set_aside({mine[1].seq: "MSG_SIZE_TOO_LARGE"})
    await harness.outbox.set_aside({mine[1].seq: "MSG_SIZE_TOO_LARGE"})  # idempotent
    assert await harness.outbox.set_aside_count() == counted + 1
    pending = [m.seq for m in await harness.outbox.pending(100) if m.event.org_id == o]
    assert pending == [mine[0].seq, mine[2].seq, mine[3].seq]
    await harness.outbox.mark_published(pending)
    # kept (for an operator to look at) when published events are pruned
    await harness.outbox.prune(0, published_only=True)
    assert [m.seq for m in await harness.outbox.recent(100, org_id=o)] == [mine[1].seq]
    assert await harness.outbox.set_aside_count() == counted + 1
    assert [m for m in await harness.outbox.pending(100) if m.event.org_id == o] == []

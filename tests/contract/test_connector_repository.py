"""Contract: ConnectorRepository inside a UnitOfWork, with its outbox events."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from attrs import evolve

from connector_core.catalog import Catalog
from connector_core.errors import Conflict, ValidationError
from connector_core.model.events import SyncAction
from tests.builders import api_token_connector
from tests.conftest import CountingIds
from tests.contract.conftest import Harness


def org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def test_add_then_get_round_trips_every_field(harness: Harness, catalog: Catalog) -> None:
    o = org()
    c = api_token_connector(catalog, o, harness.clock.now())
    async with harness.uow() as uow:
        assert await uow.connectors.get(o, "confluence") is None
        await uow.connectors.add(c)
        await uow.commit()
    assert c.version == 1
    async with harness.uow() as uow:
        loaded = await uow.connectors.get(o, "confluence")
    assert loaded == c
    assert loaded is not c


async def test_list_is_confined_to_the_org_and_filters_by_enabled(harness: Harness, catalog: Catalog) -> None:
    o1, o2 = org(), org()
    now = harness.clock.now()
    ids = CountingIds()
    a = api_token_connector(catalog, o1, now, ids, key="confluence")
    a.enable(catalog.get("confluence"), sync_action=SyncAction.NONE, by="u", now=now, ids=ids)
    b = api_token_connector(catalog, o1, now, ids, key="jira")
    c = api_token_connector(catalog, o2, now, ids, key="jira")
    async with harness.uow() as uow:
        for x in (a, b, c):
            await uow.connectors.add(x)
        await uow.commit()
    async with harness.uow() as uow:
        assert [x.key for x in await uow.connectors.list(o1)] == ["confluence", "jira"]
        assert [x.key for x in await uow.connectors.list(o1, enabled=True)] == ["confluence"]
        assert [x.key for x in await uow.connectors.list(o1, enabled=False)] == ["jira"]
        assert [x.org_id for x in await uow.connectors.list(o2)] == [o2]
        assert await uow.connectors.list(org()) == []


async def test_duplicate_add_is_a_conflict(harness: Harness, catalog: Catalog) -> None:
    o = org()
    now = harness.clock.now()
    async with harness.uow() as uow:
        await uow.connectors.add(api_token_connector(catalog, o, now))
        await uow.commit()
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.connectors.add(api_token_connector(catalog, o, now))
            await uow.commit()


async def test_stale_version_is_a_conflict_and_changes_nothing(harness: Harness, catalog: Catalog) -> None:
    o = org()
    now = harness.clock.now()
    ids = CountingIds()
    entry = catalog.get("confluence")
    async with harness.uow() as uow:
        await uow.connectors.add(api_token_connector(catalog, o, now))
        await uow.commit()
    async with harness.uow() as uow:
        first = await uow.connectors.get(o, "confluence")
    async with harness.uow() as uow:
        second = await uow.connectors.get(o, "confluence")
    assert first is not None and second is not None
    first.enable(entry, sync_action=SyncAction.NONE, by="a", now=now, ids=ids)
    async with harness.uow() as uow:
        await uow.connectors.save(first)
        await uow.outbox.add(first.pull_events())
        await uow.commit()
    second.save_filters({"spaces": ["X"]}, by="b", now=now, ids=ids)
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.connectors.save(second)
            await uow.outbox.add(second.pull_events())
            await uow.commit()
    assert second.version == 1  # unchanged by the failed commit
    async with harness.uow() as uow:
        stored = await uow.connectors.get(o, "confluence")
    assert stored is not None
    assert stored.is_enabled and stored.version == 2 and dict(stored.filter_selection) == {}
    types = [m.event.event_type for m in await harness.outbox.recent(100) if m.event.org_id == o]
    assert types == ["appEnabled"]


async def test_concurrent_writers_one_wins_per_version(harness: Harness, catalog: Catalog) -> None:
    """N writers read version 1 and race; exactly one commit lands, the rest conflict."""
    o = org()
    now = harness.clock.now()
    async with harness.uow() as uow:
        await uow.connectors.add(api_token_connector(catalog, o, now))
        await uow.commit()

    async def writer(n: int) -> bool:
        ids = CountingIds(f"w{n}-")
        async with harness.uow() as uow:
            c = await uow.connectors.get(o, "confluence")
            assert c is not None
            await asyncio.sleep(0)
            c.save_filters({"spaces": [f"S{n}"]}, by=f"u{n}", now=now, ids=ids)
            await uow.connectors.save(c)
            await uow.outbox.add(c.pull_events())
            try:
                await uow.commit()
            except Conflict:
                return False
            return True

    results = await asyncio.gather(*(writer(n) for n in range(8)))
    assert sum(results) == 1
    async with harness.uow() as uow:
        stored = await uow.connectors.get(o, "confluence")
    assert stored is not None and stored.version == 2
    winner = results.index(True)
    assert dict(stored.filter_selection) == {"spaces": [f"S{winner}"]}
    saved = [m for m in await harness.outbox.recent(100) if m.event.org_id == o]
    assert len(saved) == 1


async def test_reads_inside_a_unit_of_work_see_its_own_writes(harness: Harness, catalog: Catalog) -> None:
    o = org()
    c = api_token_connector(catalog, o, harness.clock.now())
    async with harness.uow() as uow:
        await uow.connectors.add(c)
        assert await uow.connectors.get(o, "confluence") is c
        assert [x.key for x in await uow.connectors.list(o)] == ["confluence"]
        # not committed: another unit of work does not see it
        async with harness.uow() as other:
            assert await other.connectors.get(o, "confluence") is None


async def test_leaving_without_commit_stores_nothing(harness: Harness, catalog: Catalog) -> None:
    o = org()
    now = harness.clock.now()
    ids = CountingIds()
    c = api_token_connector(catalog, o, now)
    c.enable(catalog.get("confluence"), sync_action=SyncAction.NONE, by="u", now=now, ids=ids)
    with pytest.raises(RuntimeError):
        async with harness.uow() as uow:
            await uow.connectors.add(c)
            await uow.outbox.add(c.pull_events())
            raise RuntimeError("crash before commit")
    async with harness.uow() as uow:
        assert await uow.connectors.get(o, "confluence") is None
    assert [m for m in await harness.outbox.recent(1000) if m.event.org_id == o] == []
    assert c.version == 0


async def test_saving_or_deleting_what_was_never_stored_is_a_conflict(harness: Harness, catalog: Catalog) -> None:
    """Every store agrees: an update needs a stored row of that version (memory used to accept it)."""
    from tests.builders import token_record

    o = org()
    never_added = api_token_connector(catalog, o, harness.clock.now())
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.connectors.save(never_added)
            await uow.commit()
    record = token_record(o, harness.clock.now())
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.tokens.save(record)
            await uow.commit()
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.tokens.delete(record)
            await uow.commit()
    async with harness.uow() as uow:
        assert await uow.connectors.get(o, "confluence") is None
        assert await uow.tokens.get(record.id) is None


@pytest.mark.parametrize(
    "filters",
    [{"a\x00b": 1}, {"x": 2**63}, {"x": [1, -(2**63) - 1]}],
    ids=["nul-in-a-field-name", "int-beyond-64-bits", "negative-int-beyond-64-bits"],
)
async def test_data_the_store_cannot_keep_is_a_validation_error_and_nothing_is_stored(
    harness: Harness, catalog: Catalog, filters: dict[str, object]
) -> None:
    """Either the store keeps the configuration exactly as given, or it refuses it with
    ValidationError before anything of the unit of work is stored: never a driver error (a 500)."""
    o = org()
    now = harness.clock.now()
    c = api_token_connector(catalog, o, now)
    c.update_configuration(
        catalog.get("confluence"), evolve(c.config, filters=filters), by="u", now=now, ids=CountingIds()
    )
    try:
        async with harness.uow() as uow:
            await uow.connectors.add(c)
            await uow.outbox.add(c.pull_events())
            await uow.commit()
    except ValidationError:
        async with harness.uow() as uow:
            assert await uow.connectors.get(o, "confluence") is None
        assert [m for m in await harness.outbox.recent(1000) if m.event.org_id == o] == []
        return
    async with harness.uow() as uow:
        loaded = await uow.connectors.get(o, "confluence")
    assert loaded is not None and dict(loaded.config.filters) == filters

"""The MongoDB adapter's reads that run per request or per refresher pass are answered from an
index on the real server: each ``find`` the adapter sends is explained there, and no plan reads
the whole collection (COLLSCAN). At 1,000,000 records such a read takes seconds (see the scale
figures in docs/operations.md); here a handful of records is enough to see the plan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from pymongo import monitoring

from adapters.crypto import Aead, Keyring
from adapters.mongo import MongoDatabase, MongoUnitOfWork, make_client
from adapters.system import ManualClock
from connector_core.catalog import Catalog, load_default_catalog
from connector_core.model.connector import Connector
from tests.builders import token_record

pytestmark = pytest.mark.mongo


class Finds(monitoring.CommandListener):
    """Records every ``find`` command sent (as sent, so it can be explained again)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def opened(mongo_url: str) -> AsyncIterator[tuple[MongoDatabase, Finds]]:
    finds = Finds()
    db = MongoDatabase(
        make_client(mongo_url, event_listeners=[finds]),
        f"plans_{uuid.uuid4().hex}",
        sealer=Aead(Keyring.generate()),
        clock=ManualClock(),
    )
    await db.ensure_indexes()
    try:
        yield db, finds
    finally:
        await db.client.drop_database(db.db.name)
        await db.aclose()


def stages(plan: Mapping[str, Any]) -> list[str]:
    """The stages of a winning plan, top down (an index scan as ``IXSCAN(name)``)."""
    out = []
    node: Mapping[str, Any] | None = plan
    while node:
        name = node.get("indexName")
        out.append(f"{node['stage']}({name})" if name else str(node["stage"]))
        node = node.get("inputStage")
    return out


async def plans_of(db: MongoDatabase, finds: Finds) -> list[tuple[str, list[str]]]:
    out = []
    for command in finds.sent:
        find = {k: v for k, v in command.items() if k in ("find", "filter", "sort", "projection", "limit")}
        explained = await db.db.command({"explain": find, "verbosity": "queryPlanner"})
        out.append((str(command["find"]), stages(explained["queryPlanner"]["winningPlan"])))
    finds.sent.clear()
    return out


async def test_due_tokens_list_and_summaries_read_an_index(opened: tuple[MongoDatabase, Finds]) -> None:
    db, finds = opened
    catalog: Catalog = load_default_catalog()
    clock = db.clock
    assert isinstance(clock, ManualClock)
    now = clock.now()
    async with MongoUnitOfWork(db) as uow:
        for entry in catalog:
            connector = Connector.create(entry, org_id="o1", connector_id=uuid.uuid4().hex, now=now, by="u")
            await uow.connectors.add(connector)
            await uow.tokens.add(token_record("o1", now, expires_in=60, key=entry.key, token_id=uuid.uuid4().hex))
        await uow.commit()
    finds.sent.clear()

    async with MongoUnitOfWork(db) as uow:
        assert len(await uow.tokens.due_before(now + timedelta(hours=1), 100)) == len(list(catalog))
        assert len(await uow.connectors.list("o1")) == len(list(catalog))
        assert len(await uow.tokens.summaries("o1")) == len(list(catalog))
        assert await uow.connectors.get("o1", "jira") is not None

    bounded_below(finds, "refresh_due_at")
    backoff = [
        c["filter"]["next_attempt_at"] for c in finds.sent if isinstance(c["filter"].get("next_attempt_at"), dict)
    ]
    # the backoff range is bounded below: unbounded, SecantusDB's index range starts at null and
    # reads every record that never failed (minutes at 1,000,000 records; its explain hides it)
    assert len(backoff) == 1 and "$gte" in backoff[0] and "$lt" in backoff[0], backoff
    plans = await plans_of(db, finds)
    # the due query is two finds: records that never failed, and those whose backoff is over
    assert [c for c, _ in plans] == ["tokens", "tokens", "connectorsConfig", "tokens", "connectorsConfig"]
    for collection, plan in plans:
        assert any(s.startswith("IXSCAN") for s in plan) and "COLLSCAN" not in plan, (collection, plan)
    await windows_read_an_index(
        db, finds, "refresh_due_at", lambda uow: uow.tokens.due_before(now + timedelta(hours=1), 100)
    )


def bounded_below(finds: Finds, field: str) -> list[dict[str, Any]]:
    """The finds sent with a range of ``field``, each checked to be bounded below: with no lower
    bound SecantusDB's index range starts at null, and reads every record with no such date (a
    token that never expires, one with no warning) to return none of them; its explain hides it."""
    ranges = [c["filter"][field] for c in finds.sent if isinstance(c["filter"].get(field), dict)]
    assert ranges and all("$gte" in r and "$lt" in r for r in ranges), ranges
    return ranges


async def windows_read_an_index(
    db: MongoDatabase, finds: Finds, field: str, read: Callable[[Any], Awaitable[Sequence[object]]]
) -> None:
    """A read's next pass, in windows of its dates below and above its floor, reads an index too."""
    finds.sent.clear()
    async with MongoUnitOfWork(db) as uow:
        await read(uow)
    # the piece below the floor, then at least one window above it
    assert len(bounded_below(finds, field)) >= 2, finds.sent
    for collection, plan in await plans_of(db, finds):
        assert any(s.startswith("IXSCAN") for s in plan) and "COLLSCAN" not in plan, (collection, plan)


async def test_expired_and_warning_reads_of_the_refresher_pass_read_an_index(
    opened: tuple[MongoDatabase, Finds],
) -> None:
    db, finds = opened
    clock = db.clock
    assert isinstance(clock, ManualClock)
    now = clock.now()
    async with MongoUnitOfWork(db) as uow:
        for n in range(5):
            await uow.tokens.add(token_record("o1", now, expires_in=60, key=f"c{n}", token_id=uuid.uuid4().hex))
        await uow.commit()
    finds.sent.clear()

    async with MongoUnitOfWork(db) as uow:
        assert len(await uow.tokens.expired_unnotified(now + timedelta(hours=1), 100)) == 5
        await uow.tokens.warnings_due(now + timedelta(days=400), 100)

    bounded_below(finds, "expires_at")
    bounded_below(finds, "refresh_warn_at")
    plans = await plans_of(db, finds)
    # one find per status: three that can expire unnoticed (not revoked), two that can be warned
    assert [c for c, _ in plans] == ["tokens"] * 5
    for collection, plan in plans:
        assert any(s.startswith("IXSCAN") for s in plan) and "COLLSCAN" not in plan, (collection, plan)
    await windows_read_an_index(
        db, finds, "expires_at", lambda uow: uow.tokens.expired_unnotified(now + timedelta(hours=1), 100)
    )
    await windows_read_an_index(
        db, finds, "refresh_warn_at", lambda uow: uow.tokens.warnings_due(now + timedelta(days=401), 100)
    )

"""MongoDB's due-token query leaves records resting after a failure (backoff) on the server: during
a provider outage tens of thousands of them come first in the due order, and reading them all
to skip them client-side outlasted the query's time limit, failing the whole refresh round.
Counted without timing: the token documents the server sends back for one due query."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import monitoring

from adapters.crypto import Aead, Keyring
from adapters.mongo import MongoDatabase, MongoUnitOfWork, make_client
from adapters.system import SystemClock
from connector_core.errors import RetryableProviderError, Unavailable
from connector_core.tokens import RefreshPolicy, TokenLifecycle
from tests import servers
from tests.builders import token_record
from tests.conftest import SeededRandom

pytestmark = pytest.mark.mongo

RESTING = 300
LIMIT = 2
#: due ten minutes before they expire, no jitter
POLICY = RefreshPolicy(margin=timedelta(minutes=10), jitter=timedelta(0))


class TokenDocsSent(monitoring.CommandListener):
    """The documents of the tokens collection in find / getMore replies, while counting."""

    def __init__(self) -> None:
        self.counting = False
        self.docs = 0
        self.collections: dict[int, str] = {}
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "getMore"):
            name = event.command.get("find") or event.command.get("collection")
            self.collections[event.request_id] = str(name)
            if self.counting and name == "tokens" and event.command_name == "find":
                self.filters.append(dict(event.command["filter"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self.collections.pop(event.request_id, None) == "tokens" and self.counting:
            cursor = event.reply.get("cursor", {})
            self.docs += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.collections.pop(event.request_id, None)


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[tuple[MongoDatabase, TokenDocsSent]]:
    listener = TokenDocsSent()
    client = make_client(mongo_url, event_listeners=[listener])
    database = MongoDatabase(client, f"due_{uuid.uuid4().hex}", sealer=Aead(Keyring.generate()), clock=SystemClock())
    await database.ensure_indexes()
    yield database, listener
    await client.drop_database(database.db.name)
    await database.aclose()


async def test_resting_records_ahead_of_the_ready_ones_stay_on_the_server(
    db: tuple[MongoDatabase, TokenDocsSent],
) -> None:
    database, sent = db
    now = SystemClock().now()
    lifecycle = TokenLifecycle(POLICY, SeededRandom())
    resting = [
        token_record(f"o-r{i}", now, expires_in=60, token_id=f"rest{i:04}", policy=POLICY) for i in range(RESTING)
    ]
    for r in resting:  # due at +30 s; failed at +100 s, so resting until +110 s at least
        r.apply_retryable_failure(
            RetryableProviderError("down", status=503), lifecycle=lifecycle, now=now + timedelta(seconds=100)
        )
    ready = [
        token_record(f"o-d{i}", now, expires_in=120 + 2 * i, token_id=f"ready{i}", policy=POLICY) for i in range(3)
    ]
    retried = token_record("o-b", now, expires_in=119, token_id="backoff-over", policy=POLICY)
    retried.apply_retryable_failure(RetryableProviderError("down", status=503), lifecycle=lifecycle, now=now)
    async with MongoUnitOfWork(database) as uow:
        for r in [*resting, *ready, retried]:
            await uow.tokens.add(r)
        await uow.commit()

    sent.counting = True
    async with MongoUnitOfWork(database) as uow:
        found = await uow.tokens.due_before(now + timedelta(seconds=65), LIMIT)
    sent.counting = False

    # due at +59.5 s, its backoff over (failed at now); then the first ready one, due at +60 s
    assert [r.id for r in found] == ["backoff-over", "ready0"]
    # what the server sent: at most `limit` records of each of the query's forms, no resting one
    assert sent.docs <= 2 * LIMIT, f"{sent.docs} token documents read for {LIMIT} due ones"


async def matched(database: MongoDatabase, filters: list[dict[str, Any]]) -> int:
    """The documents the finds' index ranges match: what SecantusDB reads to answer them."""
    return sum([await database.tokens.count_documents(f) for f in filters])


async def test_after_its_first_pass_the_due_query_reads_a_window_not_every_due_record(
    db: tuple[MongoDatabase, TokenDocsSent],
) -> None:
    database, sent = db
    now = SystemClock().now()
    rng = random.Random(3)
    due = [  # due over the hour before now
        token_record(f"o-{i}", now, expires_in=600 - rng.random() * 3600, token_id=f"d{i:04}", policy=POLICY)
        for i in range(300)
    ]
    later = [token_record(f"o-l{i}", now, expires_in=7200, token_id=f"l{i:04}", policy=POLICY) for i in range(50)]
    async with MongoUnitOfWork(database) as uow:
        for r in [*due, *later]:
            await uow.tokens.add(r)
        await uow.commit()

    def oldest(moment: datetime, limit: int) -> list[str]:
        records = [r for r in due if r.refresh_due_at is not None and r.refresh_due_at <= moment]
        return [r.id for r in sorted(records, key=lambda r: (r.refresh_due_at or now, r.id))][:limit]

    passes = []
    for second in range(4):  # nothing refreshed in between: the same oldest 20 each time
        moment = now + timedelta(seconds=second)
        sent.counting, sent.filters = True, []
        async with MongoUnitOfWork(database) as uow:
            found = await uow.tokens.due_before(moment, 20)
        sent.counting = False
        assert [r.id for r in found] == oldest(moment, 20)
        passes.append(await matched(database, sent.filters))
    # the first pass (no floor yet) matches every due record; then a window of about 20
    assert passes[0] >= len(oldest(now, len(due))) >= 200, passes
    assert max(passes[1:]) <= 60, passes

    # a record written since, due before the floor, is the first of the next pass
    straggler = token_record("o-s", now, expires_in=-7200, token_id="straggler", policy=POLICY)
    async with MongoUnitOfWork(database) as uow:
        await uow.tokens.add(straggler)
        await uow.commit()
    async with MongoUnitOfWork(database) as uow:
        found = await uow.tokens.due_before(now, 20)
    assert [r.id for r in found] == ["straggler", *oldest(now, 19)]


@pytest.fixture
def failpoint_server() -> Iterator[str]:
    """A SecantusDB of its own with mongod's test commands (``configureFailPoint``)."""
    server = servers.mongo(test_commands=True)
    server.start()
    try:
        yield f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
    finally:
        server.stop()


async def test_a_process_s_first_pass_has_the_census_s_time_limit_and_its_next_ones_the_database_s(
    failpoint_server: str,
) -> None:
    # a failCommand failpoint: the next find waits 1.5 s, three times this database's time limit
    mongo_url = failpoint_server
    client = make_client(mongo_url, timeout_seconds=0.5, appname="first-pass")
    database = MongoDatabase(
        client, f"due_{uuid.uuid4().hex}", sealer=Aead(Keyring.generate()), clock=SystemClock(), timeout_seconds=0.5
    )
    admin = make_client(mongo_url)
    block = {"blockConnection": True, "blockTimeMS": 1500, "failCommands": ["find"], "appName": "first-pass"}

    async def slow_next_find() -> None:
        await admin.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": block})

    try:
        await database.ensure_indexes()
        now = SystemClock().now()
        async with MongoUnitOfWork(database) as uow:
            await uow.tokens.add(token_record("o-1", now, expires_in=60, token_id="due"))
            await uow.commit()
        moment = now + timedelta(hours=1)

        await slow_next_find()  # the first pass's whole range: read in 1.5 s all the same
        async with MongoUnitOfWork(database) as uow:
            assert [r.id for r in await uow.tokens.due_before(moment, 10)] == ["due"]

        await slow_next_find()  # the next pass's first window: over the database's 0.5 s
        with pytest.raises(Unavailable):
            async with MongoUnitOfWork(database) as uow:
                await uow.tokens.due_before(moment, 10)
    finally:
        await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await client.drop_database(database.db.name)
        await database.aclose()
        await admin.close()

"""MongoDB's due-token query leaves records resting after a failure (backoff) on the server: during
a provider outage tens of thousands of them come first in the due order, and reading them all
to skip them client-side outlasted the query's time limit, failing the whole refresh round.
Counted without timing: the token documents the server sends back for one due query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pymongo import monitoring

from adapters.crypto import Aead, Keyring
from adapters.mongo import MongoDatabase, MongoUnitOfWork, make_client
from adapters.system import SystemClock
from connector_core.errors import RetryableProviderError
from connector_core.tokens import RefreshPolicy, TokenLifecycle
from tests.builders import token_record
from tests.conftest import SeededRandom

pytestmark = pytest.mark.mongo

RESTING = 300
LIMIT = 2


class TokenDocsSent(monitoring.CommandListener):
    """The documents of the tokens collection in find / getMore replies, while counting."""

    def __init__(self) -> None:
        self.counting = False
        self.docs = 0
        self.collections: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "getMore"):
            name = event.command.get("find") or event.command.get("collection")
            self.collections[event.request_id] = str(name)

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
    policy = RefreshPolicy(margin=timedelta(minutes=10), jitter=timedelta(0))
    lifecycle = TokenLifecycle(policy, SeededRandom())
    resting = [
        token_record(f"o-r{i}", now, expires_in=60, token_id=f"rest{i:04}", policy=policy) for i in range(RESTING)
    ]
    for r in resting:  # due at +30 s; failed at +100 s, so resting until +110 s at least
        r.apply_retryable_failure(
            RetryableProviderError("down", status=503), lifecycle=lifecycle, now=now + timedelta(seconds=100)
        )
    ready = [
        token_record(f"o-d{i}", now, expires_in=120 + 2 * i, token_id=f"ready{i}", policy=policy) for i in range(3)
    ]
    retried = token_record("o-b", now, expires_in=119, token_id="backoff-over", policy=policy)
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

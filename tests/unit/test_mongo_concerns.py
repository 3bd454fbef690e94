"""Each MongoDB collection's read and write concerns (no server needed: nothing connects)."""

from __future__ import annotations

import pytest

from adapters.mongo import MongoDatabase
from adapters.mongo.database import CONCERNS
from adapters.mongo.idempotency_store import MongoIdempotencyStore


@pytest.fixture
async def db(offline_mongo: MongoDatabase) -> MongoDatabase:
    return offline_mongo


async def test_every_collection_reads_and_writes_with_a_majority(db: MongoDatabase) -> None:
    collections = [db.connectors, db.tokens, db.outbox, db.oauth_states, db.leases, db.counters]
    collections.append(MongoIdempotencyStore(db)._coll)
    assert {c.name for c in collections} == set(CONCERNS)
    for collection in collections:
        # a token rotation acknowledged once is never rolled back by a failover, nor read before
        assert collection.write_concern.document == {"w": "majority"}, collection.name
        assert collection.read_concern.level == "majority", collection.name


async def test_a_replica_set_url_retries_writes_and_reads_once(db: MongoDatabase) -> None:
    options = db.client.options
    assert options.retry_writes is True and options.retry_reads is True
    assert options.replica_set_name == "rs0"

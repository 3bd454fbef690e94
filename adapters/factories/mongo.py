"""The MongoDB backend: every storage port in one database of a replica set."""

from __future__ import annotations

from attrs import frozen

from adapters.factories.sections import MongoSettings
from adapters.factories.storage_ports import StoragePorts
from adapters.health import require
from adapters.mongo import (
    MongoDatabase,
    MongoLeaseLock,
    MongoOAuthStateStore,
    MongoOutboxReader,
    MongoUnitOfWork,
    make_client,
)
from adapters.mongo.idempotency_store import MongoIdempotencyStore
from adapters.mongo.sealed_values import MongoSealedValues
from adapters.redaction import redact_url
from adapters.sealing import Sealer
from connector_core.ports.clock import Clock
from connector_core.ports.unit_of_work import UnitOfWork


@frozen
class MongoBackend:
    db: MongoDatabase

    def storage(self, clock: Clock) -> StoragePorts:
        db = self.db

        def unit_of_work() -> UnitOfWork:
            return MongoUnitOfWork(db)

        return StoragePorts(
            uow=unit_of_work,
            outbox=MongoOutboxReader(db),
            states=MongoOAuthStateStore(db),
            lock=MongoLeaseLock(db, clock),
            check=db.check,
            sealed=MongoSealedValues(db),
            idempotency=MongoIdempotencyStore(db),
        )

    async def aclose(self) -> None:
        await self.db.aclose()


async def open_mongo(settings: MongoSettings, *, sealer: Sealer, clock: Clock) -> MongoBackend:
    """Connect, refuse a server without transactions, create the collections and indexes."""
    client = make_client(settings.url, timeout_seconds=settings.timeout_seconds)
    db = MongoDatabase(client, settings.database, sealer=sealer, clock=clock, timeout_seconds=settings.timeout_seconds)
    try:
        await require(
            db.start_probe, f"MongoDB at {redact_url(settings.url)}", within=settings.start_up_timeout_seconds
        )
        await db.ensure_indexes()
    except BaseException:
        await db.aclose()
        raise
    return MongoBackend(db)

"""The embedded SQLite backend: storage and the key-value store in one database file."""

from __future__ import annotations

from attrs import frozen

from adapters.factories.sections import SQLiteSettings
from adapters.factories.storage_ports import StoragePorts
from adapters.sealing import Sealer
from adapters.sqlite import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)
from adapters.sqlite.idempotency_store import SQLiteIdempotencyStore
from adapters.sqlite.sealed_values import SQLiteSealedValues
from connector_core.ports.clock import Clock
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.unit_of_work import UnitOfWork


@frozen
class SQLiteBackend:
    db: SQLiteDatabase

    def storage(self, clock: Clock) -> StoragePorts:
        db = self.db
        lock = SQLiteLeaseLock(db, clock)

        def unit_of_work() -> UnitOfWork:
            return SQLiteUnitOfWork(db)

        return StoragePorts(
            uow=unit_of_work,
            outbox=SQLiteOutboxReader(db),
            states=SQLiteOAuthStateStore(db),
            lock=lock,
            check=db.check,
            sealed=SQLiteSealedValues(db),
            idempotency=SQLiteIdempotencyStore(db),
            stamp=db.stamp,
            leased_reads=lock,
        )

    def kv_store(self) -> KeyValueStore:
        return SQLiteKeyValueStore(self.db)

    async def aclose(self) -> None:
        await self.db.aclose()


async def open_sqlite(settings: SQLiteSettings, *, sealer: Sealer) -> SQLiteBackend:
    """The database file (created with its directory, mode 0700, on first use)."""
    settings.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SQLiteBackend(SQLiteDatabase(settings.path, sealer=sealer))

"""The in-memory backend: every port in this process, nothing kept across restarts."""

from __future__ import annotations

from adapters.factories.storage_ports import StoragePorts
from adapters.memory import (
    MemoryCache,
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.memory.idempotency_store import MemoryIdempotencyStore
from adapters.memory.storage import MemoryChangeStamp
from connector_core.ports.cache import Cache
from connector_core.ports.clock import Clock
from connector_core.ports.kv_store import KeyValueStore


async def _healthy() -> bool:
    return True


def memory_storage(clock: Clock) -> StoragePorts:
    storage = MemoryStorage()
    return StoragePorts(
        uow=storage.unit_of_work,
        outbox=MemoryOutboxReader(storage),
        states=MemoryOAuthStateStore(storage),
        lock=MemoryLeaseLock(clock),
        check=_healthy,
        idempotency=MemoryIdempotencyStore(),
        stamp=MemoryChangeStamp(storage),
    )


def memory_kv_store() -> KeyValueStore:
    return MemoryKeyValueStore()


def memory_cache() -> Cache:
    return MemoryCache()

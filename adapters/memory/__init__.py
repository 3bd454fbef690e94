"""In-memory adapters of the storage, key-value, lock, cache and event-publisher ports: product
code, safe under concurrent async use (docs/architecture.md lists which ports have one)."""

from adapters.memory.cache import MemoryCache
from adapters.memory.event_publisher import MemoryEventPublisher
from adapters.memory.kv_store import MemoryKeyValueStore
from adapters.memory.lock import MemoryLeaseLock
from adapters.memory.storage import (
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
    MemoryUnitOfWork,
)

__all__ = [
    "MemoryCache",
    "MemoryEventPublisher",
    "MemoryKeyValueStore",
    "MemoryLeaseLock",
    "MemoryOAuthStateStore",
    "MemoryOutboxReader",
    "MemoryStorage",
    "MemoryUnitOfWork",
]

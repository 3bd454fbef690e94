"""In-memory adapters for every port: product code, safe under concurrent async use."""

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

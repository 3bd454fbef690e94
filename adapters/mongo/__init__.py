"""MongoDB adapters (pymongo asyncio): every storage port and leases in one database.

Needs a replica set (one node is enough) for multi-document transactions; see
:mod:`adapters.mongo.storage` for the collection layout and guarantees.
"""

from adapters.mongo.storage import (
    DEFAULT_TIMEOUT_SECONDS,
    MONGO_URL_SETTING,
    MongoDatabase,
    MongoLeaseLock,
    MongoOAuthStateStore,
    MongoOutboxReader,
    MongoUnitOfWork,
    make_client,
    mongo_errors,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "MONGO_URL_SETTING",
    "MongoDatabase",
    "MongoLeaseLock",
    "MongoOAuthStateStore",
    "MongoOutboxReader",
    "MongoUnitOfWork",
    "make_client",
    "mongo_errors",
]

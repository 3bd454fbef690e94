"""MongoDB adapters (pymongo asyncio): every storage port and leases in one database.

Needs a replica set (one node is enough) for multi-document transactions. One module per port:
:mod:`~adapters.mongo.database` (connection, collections and indexes), :mod:`~adapters.mongo.errors`
(error translation),
:mod:`~adapters.mongo.unit_of_work`, :mod:`~adapters.mongo.outbox_reader`,
:mod:`~adapters.mongo.oauth_state_store`, :mod:`~adapters.mongo.lease_lock`.
"""

from adapters.mongo.database import DEFAULT_TIMEOUT_SECONDS, MongoDatabase, make_client
from adapters.mongo.errors import MONGO_URL_SETTING, mongo_errors
from adapters.mongo.lease_lock import MongoLeaseLock
from adapters.mongo.oauth_state_store import MongoOAuthStateStore
from adapters.mongo.outbox_reader import MongoOutboxReader
from adapters.mongo.unit_of_work import MongoUnitOfWork

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

"""Embedded SQLite adapters (the zero-setup default): every storage port, one file, WAL.

One module per port: :mod:`~adapters.sqlite.database` (the file, schema, error translation),
:mod:`~adapters.sqlite.unit_of_work`, :mod:`~adapters.sqlite.outbox_reader`,
:mod:`~adapters.sqlite.oauth_state_store`, :mod:`~adapters.sqlite.kv_store`,
:mod:`~adapters.sqlite.lease_lock`.
"""

from adapters.sqlite.database import SQLiteDatabase
from adapters.sqlite.kv_store import SQLiteKeyValueStore
from adapters.sqlite.lease_lock import SQLiteLeaseLock
from adapters.sqlite.oauth_state_store import SQLiteOAuthStateStore
from adapters.sqlite.outbox_reader import SQLiteOutboxReader
from adapters.sqlite.unit_of_work import SQLiteUnitOfWork

__all__ = [
    "SQLiteDatabase",
    "SQLiteKeyValueStore",
    "SQLiteLeaseLock",
    "SQLiteOAuthStateStore",
    "SQLiteOutboxReader",
    "SQLiteUnitOfWork",
]

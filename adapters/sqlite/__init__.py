"""Embedded SQLite adapters (the zero-setup default): every storage port, one file, WAL."""

from adapters.sqlite.storage import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)

__all__ = [
    "SQLiteDatabase",
    "SQLiteKeyValueStore",
    "SQLiteLeaseLock",
    "SQLiteOAuthStateStore",
    "SQLiteOutboxReader",
    "SQLiteUnitOfWork",
]

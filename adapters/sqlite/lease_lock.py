"""Leases on SQLite, shared by every process on the file (policy: :mod:`adapters.stored_lease_lock`).
Fencing tokens come from ``counters/fence:{name}`` in the transaction that takes the lease."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from adapters.sqlite.database import SQLiteDatabase, next_counter
from adapters.stored_lease_lock import StoredLeaseLock
from connector_core.ports.clock import Clock


class SQLiteLeaseLock(StoredLeaseLock):
    def __init__(self, db: SQLiteDatabase, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db

    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> int | None:
        def take(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT expires_at FROM leases WHERE name=?", (name,)).fetchone()
            if row is not None and row[0] > now.timestamp():
                return None
            fence = next_counter(c, f"fence:{name}")
            c.execute(
                "INSERT INTO leases (name, owner, fencing, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner=excluded.owner,"
                " fencing=excluded.fencing, expires_at=excluded.expires_at",
                (name, owner, fence, expires.timestamp()),
            )
            return fence

        return await self._db.write(take)

    async def _drop(self, name: str, owner: str) -> bool:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner)).rowcount == 1
        )

    async def _prolong(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        return await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE leases SET expires_at=? WHERE name=? AND owner=? AND expires_at>?",
                    (expires.timestamp(), name, owner, now.timestamp()),
                ).rowcount
                == 1
            )
        )

"""Leases on SQLite, shared by every process on the file (policy: :mod:`adapters.stored_lease_lock`)."""

from __future__ import annotations

from datetime import datetime

from adapters.sqlite.database import SQLiteDatabase
from adapters.stored_lease_lock import StoredLeaseLock
from connector_core.ports.clock import Clock


class SQLiteLeaseLock(StoredLeaseLock):
    def __init__(self, db: SQLiteDatabase, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db

    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        return await self._db.write(
            lambda c: (
                c.execute(
                    "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at"
                    " WHERE leases.expires_at<=?",
                    (name, owner, expires.timestamp(), now.timestamp()),
                ).rowcount
                == 1
            )
        )

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

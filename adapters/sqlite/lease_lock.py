"""Leases on SQLite, shared by every process on the file (policy: :mod:`adapters.stored_lease_lock`).

Kept in the token store's file, so a token's lease and the token itself are taken and read in one
transaction (:meth:`SQLiteLeaseLock.acquire_and_get`, the refresher's batches)."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from adapters.sqlite.database import SQLiteDatabase
from adapters.sqlite.unit_of_work import token_from_row, token_row
from adapters.stored_lease_lock import StoredLeaseLock
from connector_core.errors import ConnectorManagerError
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease, LeasedRecord


def _took(c: sqlite3.Connection, name: str, owner: str, now: datetime, expires: datetime) -> bool:
    return (
        c.execute(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at"
            " WHERE leases.expires_at<=?",
            (name, owner, expires.timestamp(), now.timestamp()),
        ).rowcount
        == 1
    )


class SQLiteLeaseLock(StoredLeaseLock):
    def __init__(self, db: SQLiteDatabase, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db

    async def acquire_and_get(self, name: str, ttl_seconds: float, token_id: str) -> LeasedRecord | None:
        """:class:`~connector_core.ports.lock.LeasedTokenReads`: the lease taken and the token read
        in one write transaction."""
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_seconds)
        owner = secrets.token_hex(16)

        def take_and_read(c: sqlite3.Connection) -> tuple[Sequence[Any] | None] | None:
            return (token_row(c, token_id),) if _took(c, name, owner, now, expires) else None

        taken = await self._taking(self._db.write(take_and_read), name, owner, lambda t: t is not None)
        if taken is None:
            return None
        lease, row = Lease(name, owner, expires), taken[0]
        if row is None:
            return LeasedRecord(lease, None)
        try:
            record = token_from_row(self._db, row)
        except BaseException:
            with contextlib.suppress(ConnectorManagerError):  # else it lapses
                await self._drop(name, owner)
            raise
        return LeasedRecord(lease, record)

    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        return await self._db.write(lambda c: _took(c, name, owner, now, expires))

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

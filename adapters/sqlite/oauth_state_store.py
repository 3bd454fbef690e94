"""Pending OAuth authorizations on SQLite, sealed (bound to ``/oauth-state/{hash}``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from adapters.sealing import open_pending, seal_pending
from adapters.sqlite.database import SQLiteDatabase
from connector_core.ports.oauth_state import PendingAuthorization


class SQLiteOAuthStateStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def put(self, pending: PendingAuthorization) -> None:
        sealed = seal_pending(self._db.conv, self._db.sealer, pending)
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO oauth_states (state_hash, expires_at, sealed) VALUES (?, ?, ?)",
                (pending.state_hash, pending.expires_at.timestamp(), sealed),
            )
        )

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        def take(c: sqlite3.Connection) -> str | None:
            row = c.execute("DELETE FROM oauth_states WHERE state_hash=? RETURNING sealed", (state_hash,)).fetchone()
            return None if row is None else str(row[0])

        sealed = await self._db.write(take)
        if sealed is None:
            return None
        return open_pending(self._db.conv, self._db.sealer, state_hash, sealed)

    async def purge_expired(self, moment: datetime) -> int:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM oauth_states WHERE expires_at < ?", (moment.timestamp(),)).rowcount
        )

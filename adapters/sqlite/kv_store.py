"""Plain key-value rows on SQLite with a global revision counter (wrap it in the encrypted store)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from adapters.sqlite.database import SQLiteDatabase, next_counter
from connector_core.errors import Conflict
from connector_core.ports.kv_store import Versioned


class SQLiteKeyValueStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def get(self, key: str) -> Versioned | None:
        row = await self._db.run(lambda c: c.execute("SELECT value, revision FROM kv WHERE key=?", (key,)).fetchone())
        return None if row is None else Versioned(row[0], row[1])

    @staticmethod
    def _check(c: sqlite3.Connection, key: str, expected: int | None) -> None:
        if expected is None:
            return
        row = c.execute("SELECT revision FROM kv WHERE key=?", (key,)).fetchone()
        if (row[0] if row else 0) != expected:
            raise Conflict(f"key {key!r} changed concurrently")

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        def put(c: sqlite3.Connection) -> int:
            self._check(c, key, expected_revision)
            revision = next_counter(c, "kv_revision")
            c.execute(
                "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value=excluded.value, revision=excluded.revision",
                (key, value, revision),
            )
            return revision

        return await self._db.write(put)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            self._check(c, key, expected_revision)
            return c.execute("DELETE FROM kv WHERE key=?", (key,)).rowcount == 1

        return await self._db.write(delete)

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT key, value, revision FROM kv WHERE key LIKE ? ESCAPE '\\' ORDER BY key",
                (escaped + "%",),
            ).fetchall()
        )
        return {r[0]: Versioned(r[1], r[2]) for r in rows}

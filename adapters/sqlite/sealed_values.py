"""Key rotation on SQLite: the sealed token material and OAuth states, re-encrypted in place."""

from __future__ import annotations

import sqlite3

from adapters.sealing import (
    OAUTH_STATES,
    TOKENS,
    Advance,
    Census,
    Damaged,
    count,
    key_label,
    rewrap_or_report,
    state_path,
    token_path,
)
from adapters.sqlite.database import SQLiteDatabase

#: (store, table, key column, sealed column, path of a value); names are ours, never input
_SEALED = (
    (TOKENS, "tokens", "id", "material", token_path),
    (OAUTH_STATES, "oauth_states", "state_hash", "sealed", state_path),
)
_CHUNK = 200


class SQLiteSealedValues:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def _rows(self, sql: str) -> list[tuple[str, ...]]:
        def read(c: sqlite3.Connection) -> list[tuple[str, ...]]:
            return [tuple(map(str, row)) for row in c.execute(sql).fetchall()]

        return await self._db.run(read)

    async def census(self) -> Census:
        census: Census = {}
        for store, table, _, column, _ in _SEALED:
            rows = await self._rows(f"SELECT {column} FROM {table}")  # noqa: S608 - our names
            count(census, store, (key_label(self._db.sealer, r[0]) for r in rows))
        return census

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        sealer = self._db.sealer
        rewritten = 0
        for _, table, key, column, path in _SEALED:
            rows = await self._rows(f"SELECT {key}, {column} FROM {table}")  # noqa: S608 - our names
            due = [
                (new, ident, old) for ident, old in rows if (new := rewrap_or_report(sealer, old, path(ident), damaged))
            ]
            for start in range(0, len(due), _CHUNK):
                chunk = due[start : start + _CHUNK]
                statement = f"UPDATE {table} SET {column}=? WHERE {key}=? AND {column}=?"  # noqa: S608 - our names

                def write(c: sqlite3.Connection, rows: list[tuple[str, str, str]] = chunk, sql: str = statement) -> int:
                    return sum(c.execute(sql, row).rowcount for row in rows)

                rewritten += await self._db.write(write)
                if advance is not None:
                    advance(len(chunk))
        return rewritten

"""Key rotation on SQLite: the sealed token material and OAuth states, re-encrypted in place
(token material also bound to its org and connector: :mod:`adapters.token_binding`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
)
from adapters.sqlite.database import SQLiteDatabase
from adapters.token_binding import StoredToken, bindings, reseal_token

#: (store, table, key column, sealed column); names are ours, never input
_SEALED = (
    (TOKENS, "tokens", "id", "material"),
    (OAUTH_STATES, "oauth_states", "state_hash", "sealed"),
)
_TOKENS = "SELECT id, org_id, connector_key, meta, material FROM tokens"
_CHUNK = 200


def _token(row: tuple[object, ...]) -> StoredToken:
    ident, org_id, connector_key, meta, material = row
    return StoredToken(str(ident), (org_id, connector_key), meta, material)


class SQLiteSealedValues:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def _rows(self, sql: str) -> list[tuple[object, ...]]:
        def read(c: sqlite3.Connection) -> list[tuple[object, ...]]:
            return [tuple(row) for row in c.execute(sql).fetchall()]

        return await self._db.run(read)

    async def census(self) -> Census:
        census: Census = {}
        for store, table, _, column in _SEALED:
            rows = await self._rows(f"SELECT {column} FROM {table}")  # noqa: S608 - our names
            count(census, store, (key_label(self._db.sealer, r[0]) for r in rows))
        return census

    async def token_bindings(self) -> dict[str, int]:
        return bindings(self._db.sealer, map(_token, await self._rows(_TOKENS)))

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        sealer = self._db.sealer
        tokens = map(_token, await self._rows(_TOKENS))
        due = [(new, t.id, t.material) for t in tokens if (new := reseal_token(sealer, t, damaged))]
        rewritten = await self._rewrite("tokens", "id", "material", due, advance)
        states = await self._rows("SELECT state_hash, sealed FROM oauth_states")
        states_due = [
            (new, i, old)
            for i, old in states
            if (new := rewrap_or_report(sealer, str(old), state_path(str(i)), damaged))
        ]
        return rewritten + await self._rewrite("oauth_states", "state_hash", "sealed", states_due, advance)

    async def _rewrite(
        self, table: str, key: str, column: str, due: Sequence[tuple[object, ...]], advance: Advance | None
    ) -> int:
        """Write each ``(new, key, old)`` of ``due`` where ``column`` still holds ``old``."""
        rewritten = 0
        statement = f"UPDATE {table} SET {column}=? WHERE {key}=? AND {column}=?"  # noqa: S608 - our names
        for start in range(0, len(due), _CHUNK):
            chunk = due[start : start + _CHUNK]

            def write(c: sqlite3.Connection, rows: Sequence[tuple[object, ...]] = chunk) -> int:
                return sum(c.execute(statement, row).rowcount for row in rows)

            rewritten += await self._db.write(write)
            if advance is not None:
                advance(len(chunk))
        return rewritten

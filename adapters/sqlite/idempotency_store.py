"""Idempotency records on SQLite (table ``idempotency_keys``, created here on first use).

Answers are stored as the API sent them: they never hold a secret (configuration answers show
``has<Field>`` flags only); requests are kept as a fingerprint, never their bodies."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from adapters.sqlite.database import SQLiteDatabase
from connector_core.ports.idempotency import IdempotencyRecord, StoredAnswer

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS idempotency_keys ("
    " org_id TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, claim_id TEXT NOT NULL,"
    " expires_at REAL NOT NULL, status INTEGER, body BLOB, PRIMARY KEY (org_id, key))",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at)",
)


def _record(row: tuple[str, str, float, int | None, bytes | None]) -> IdempotencyRecord:
    fingerprint, claim_id, expires_at, status, body = row
    answer = None if status is None else StoredAnswer(int(status), bytes(body or b""))
    return IdempotencyRecord(fingerprint, claim_id, datetime.fromtimestamp(expires_at, UTC), answer)


class SQLiteIdempotencyStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._ready = False

    async def _schema(self) -> None:
        if not self._ready:
            # in a write transaction (BEGIN IMMEDIATE), so that a process creating the table while
            # another writes waits its turn (busy timeout) instead of failing as "locked"
            await self._db.write(lambda c: [c.execute(statement) for statement in SCHEMA])
            self._ready = True

    async def claim(
        self, org_id: str, key: str, *, fingerprint: str, claim_id: str, now: datetime, until: datetime
    ) -> IdempotencyRecord | None:
        await self._schema()

        def claim(c: sqlite3.Connection) -> IdempotencyRecord | None:
            # expired records go as a side effect (the expiry index makes this cheap)
            c.execute("DELETE FROM idempotency_keys WHERE expires_at < ?", (now.timestamp(),))
            row = c.execute(
                "SELECT fingerprint, claim_id, expires_at, status, body FROM idempotency_keys WHERE org_id=? AND key=?",
                (org_id, key),
            ).fetchone()
            if row is not None:
                return _record(row)
            c.execute(
                "INSERT INTO idempotency_keys (org_id, key, fingerprint, claim_id, expires_at) VALUES (?, ?, ?, ?, ?)",
                (org_id, key, fingerprint, claim_id, until.timestamp()),
            )
            return None

        return await self._db.write(claim)

    async def complete(self, org_id: str, key: str, *, claim_id: str, answer: StoredAnswer, until: datetime) -> bool:
        await self._schema()
        changed = await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE idempotency_keys SET status=?, body=?, expires_at=?"
                    " WHERE org_id=? AND key=? AND claim_id=?",
                    (answer.status, answer.body, until.timestamp(), org_id, key, claim_id),
                ).rowcount
            )
        )
        return bool(changed)

    async def release(self, org_id: str, key: str, *, claim_id: str) -> None:
        await self._schema()
        await self._db.write(
            lambda c: c.execute(
                "DELETE FROM idempotency_keys WHERE org_id=? AND key=? AND claim_id=? AND status IS NULL",
                (org_id, key, claim_id),
            )
        )

    async def purge_expired(self, moment: datetime) -> int:
        await self._schema()
        return await self._db.write(
            lambda c: c.execute("DELETE FROM idempotency_keys WHERE expires_at < ?", (moment.timestamp(),)).rowcount
        )

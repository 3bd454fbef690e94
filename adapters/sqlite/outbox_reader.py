"""The outbox on SQLite: ``seq`` is the table's AUTOINCREMENT key, handed out inside the
writing transaction (writers are serialised by ``BEGIN IMMEDIATE``), so seq order is commit order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from adapters.codec import event_from_doc
from adapters.sqlite.database import SQLiteDatabase
from connector_core.ports.outbox import OutboxMessage


class SQLiteOutboxReader:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def _messages(self, rows: Sequence[Sequence[Any]]) -> list[OutboxMessage]:
        return [OutboxMessage(r[0], event_from_doc(self._db.conv, json.loads(r[1]))) for r in rows]

    async def pending(self, limit: int) -> Sequence[OutboxMessage]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT seq, doc FROM outbox WHERE published=0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        )
        return self._messages(rows)

    async def mark_published(self, seqs: Sequence[int]) -> None:
        params = [(s,) for s in seqs]
        await self._db.write(lambda c: c.executemany("UPDATE outbox SET published=1 WHERE seq=?", params))

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        if org_id is None:
            query, params = "SELECT seq, doc FROM outbox ORDER BY seq DESC LIMIT ?", (limit,)
        else:
            # partition keys are "org:connector": one org's keys sort between "org:" and "org;"
            query = (
                "SELECT seq, doc FROM outbox WHERE partition_key >= ? AND partition_key < ? ORDER BY seq DESC LIMIT ?"
            )
            params = (f"{org_id}:", f"{org_id};", limit)  # type: ignore[assignment]
        rows = await self._db.run(
            lambda c: c.execute(f"SELECT seq, doc FROM ({query}) ORDER BY seq", params).fetchall()  # noqa: S608
        )
        return self._messages(rows)

    async def prune(self, keep: int, *, published_only: bool) -> int:
        only = " AND published=1" if published_only else ""
        return await self._db.write(
            lambda c: (
                c.execute(
                    f"DELETE FROM outbox WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM outbox) - ?{only}",  # noqa: S608
                    (max(0, keep),),
                ).rowcount
            )
        )

"""The outbox on SQLite: ``seq`` is the table's AUTOINCREMENT key, handed out inside the
writing transaction (writers are serialised by ``BEGIN IMMEDIATE``), so seq order is commit order.

Pending events are the seqs listed in ``outbox_unpublished`` (kept by triggers, see
:mod:`adapters.sqlite.database`); the ``published`` column of an outbox row says only whether
it was set aside (2; 1 where a relay of an earlier version marked it published)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.codec import event_from_doc
from adapters.sqlite.database import SQLiteDatabase, text
from connector_core.errors import UnknownEvent
from connector_core.ports.outbox import OutboxBacklog, OutboxBatch, OutboxMessage, WireRecord, seqs_of


def _of_org(org_id: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its parameters) keeping exactly one org's messages, or all of them.
    The event's own org, not its partition key: "org:connector" cannot tell org "a" with
    connector "x:jira" from org "a:x" with "jira" (the ``outbox_org`` index serves it)."""
    if org_id is None:
        return "1", ()
    return "json_extract(doc, '$.org_id') = ?", (org_id,)


class SQLiteOutboxReader:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._topic_names: dict[bytes, str] = {}  # the topics of the records read, as text

    def _messages(self, rows: Sequence[Sequence[Any]]) -> list[OutboxMessage]:
        return [OutboxMessage(r[0], event_from_doc(self._db.conv, json.loads(r[1]))) for r in rows]

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        """Each event with the broker record kept when it was written, as an
        :class:`OutboxBatch`: the relay publishes the records as they are and marks the seqs,
        and a message (its event decoded from the stored document) is made only if asked for.
        The record comes as one value (:func:`adapters.event_wire.stored_wire`; an event an
        earlier version wrote has its parts in three columns, joined here), the partition key
        and the document as bytes: every column read, text decoded and object made costs
        about as much as producing the record."""
        # pending() answers with the oldest pending seqs, in seq order (commit order), and
        # ``beyond`` holds earlier answers in the order they came: what follows it is every
        # pending seq above its last one
        seen = seqs_of(beyond)
        after = seen[-1] if seen else 0
        return await self._db.run(lambda c: self._read_pending(c, after, limit))

    def _read_pending(self, c: sqlite3.Connection, after: int, limit: int) -> OutboxBatch:
        """On the database thread, the rows taken one by one as they come: each row's objects are
        made and dropped on the thread that read it, and no list of rows is kept."""
        topic_names = self._topic_names
        seqs: list[int] = []
        wires: list[WireRecord | None] = []
        docs: list[bytes] = []
        add_seq, add_wire, add_doc = seqs.append, wires.append, docs.append
        # the tightest loop we have: no call per row but the appends
        for seq, key, stored, doc in c.execute(
            "SELECT o.seq, CAST(o.partition_key AS BLOB), COALESCE(o.record,"
            " CAST(CAST(o.topic AS BLOB) || x'0a' || CAST(o.event_type AS BLOB) || x'0a' || o.wire AS BLOB)),"
            " CAST(o.doc AS BLOB)"
            " FROM outbox_unpublished u CROSS JOIN outbox o ON o.seq=u.seq WHERE u.seq > ?"
            " ORDER BY u.seq LIMIT ?",
            (after, limit),
        ):
            add_seq(seq)
            add_doc(doc)
            if stored is None:  # encoded when published
                add_wire(None)
                continue
            topic_bytes, type_name, timestamp, event_id, value = stored.split(b"\n", 4)
            topic = topic_names.get(topic_bytes)
            if topic is None:
                topic = topic_names[topic_bytes] = text(topic_bytes)
            add_wire((topic, key, value, {"eventType": type_name, "timestamp": timestamp, "eventId": event_id}))
        conv = self._db.conv

        def make(index: int) -> OutboxMessage:
            doc = docs[index]
            return OutboxMessage(
                seqs[index], decode=lambda: event_from_doc(conv, json.loads(text(doc))), wire=wires[index]
            )

        return OutboxBatch(seqs, wires, make)

    async def mark_published(self, seqs: Sequence[int]) -> None:
        """One statement for the whole batch, deleting them from the pending list (the stored
        events are not rewritten): a range when the seqs are consecutive (a batch usually is),
        else the seqs as one JSON array parameter (no limit on how many, no statement per one)."""
        if not seqs:
            return
        low, high = min(seqs), max(seqs)
        if high - low + 1 == len(seqs) == len(set(seqs)):  # a run of consecutive seqs: one range
            await self._db.write(
                lambda c: c.execute("DELETE FROM outbox_unpublished WHERE seq BETWEEN ? AND ?", (low, high))
            )
            return
        listed = json.dumps(list(seqs))
        await self._db.write(
            lambda c: c.execute(
                "DELETE FROM outbox_unpublished WHERE seq IN (SELECT value FROM json_each(?))", (listed,)
            )
        )

    async def backlog(self) -> OutboxBacklog:
        count, oldest = await self._db.run(
            lambda c: c.execute(
                "SELECT COUNT(*), MIN(json_extract(o.doc, '$.occurred_at'))"
                " FROM outbox_unpublished u CROSS JOIN outbox o ON o.seq=u.seq"
            ).fetchone()
        )
        return OutboxBacklog(int(count), None if oldest is None else self._db.conv.structure(oldest, datetime))

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        """``published = 2``: no longer pending (the trigger takes it off ``outbox_unpublished``)
        and not pruned as published; the reason is kept in ``outbox_set_aside``."""
        params = [(why, seq) for seq, why in reasons.items()]

        def write(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE outbox SET published=2 WHERE seq=?", [(seq,) for _, seq in params])
            c.executemany(
                "INSERT OR REPLACE INTO outbox_set_aside (seq, reason) SELECT seq, ? FROM outbox WHERE seq=?", params
            )

        await self._db.write(write)

    async def set_aside_count(self) -> int:
        row = await self._db.run(lambda c: c.execute("SELECT COUNT(*) FROM outbox WHERE published=2").fetchone())
        return int(row[0])

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        where, params = _of_org(org_id)
        query = f"SELECT seq, doc FROM outbox WHERE {where} ORDER BY seq DESC LIMIT ?"  # noqa: S608 - our clause
        rows = await self._db.run(
            lambda c: c.execute(f"SELECT seq, doc FROM ({query}) ORDER BY seq", (*params, limit)).fetchall()  # noqa: S608
        )
        return self._messages(rows)

    async def after(self, event_id: str, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        where, params = _of_org(org_id)

        def read(c: sqlite3.Connection) -> list[Any] | None:
            found = c.execute(
                f"SELECT seq FROM outbox WHERE json_extract(doc, '$.event_id') = ? AND {where}",  # noqa: S608
                (event_id, *params),
            ).fetchone()
            if found is None:
                return None
            return c.execute(
                f"SELECT seq, doc FROM outbox WHERE seq > ? AND {where} ORDER BY seq LIMIT ?",  # noqa: S608
                (found[0], *params, limit),
            ).fetchall()

        rows = await self._db.run(read)
        if rows is None:
            raise UnknownEvent.for_id(event_id)
        return self._messages(rows)

    async def resume_point(
        self, page: Sequence[OutboxMessage], *, after: str | None, org_id: str | None = None
    ) -> str | None:
        """The last message of ``page``: the order is commit order, so nothing can land before it."""
        return page[-1].event.event_id if page else after

    async def prune(self, keep: int, *, published_only: bool) -> int:
        only = " AND published<>2 AND seq NOT IN (SELECT seq FROM outbox_unpublished)" if published_only else ""

        def delete(c: sqlite3.Connection) -> int:
            removed = c.execute(
                f"DELETE FROM outbox WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM outbox) - ?{only}",  # noqa: S608
                (max(0, keep),),
            ).rowcount
            c.execute("DELETE FROM outbox_set_aside WHERE seq NOT IN (SELECT seq FROM outbox WHERE published=2)")
            if not published_only:  # pending events went too
                c.execute("DELETE FROM outbox_unpublished WHERE seq NOT IN (SELECT seq FROM outbox)")
            return int(removed)

        return await self._db.write(delete)

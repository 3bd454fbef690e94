"""The outbox on SQLite: ``seq`` is the table's AUTOINCREMENT key, handed out inside the
writing transaction (writers are serialised by ``BEGIN IMMEDIATE``), so seq order is commit order.

Pending events are the seqs listed in ``outbox_unpublished`` (kept by triggers, see
:mod:`adapters.sqlite.database`); the ``published`` column of an outbox row says only whether
it was set aside (2; 1 where a relay of an earlier version marked it published)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.codec import event_from_doc
from adapters.sqlite.database import SQLiteDatabase, text
from connector_core.errors import UnknownEvent
from connector_core.model.events import DomainEvent
from connector_core.ports.outbox import OutboxBacklog, OutboxMessage, WireRecord


def _of_org(org_id: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its parameters) keeping exactly one org's messages, or all of them.
    The event's own org, not its partition key: "org:connector" cannot tell org "a" with
    connector "x:jira" from org "a:x" with "jira" (the ``outbox_org`` index serves it)."""
    if org_id is None:
        return "1", ()
    return "json_extract(doc, '$.org_id') = ?", (org_id,)


class _Stored(OutboxMessage):
    """A pending message as :meth:`SQLiteOutboxReader.pending` reads it: its broker record, and
    its stored document decoded on first use of :attr:`event` (with one decoder shared by the
    whole batch: no closure made per message)."""

    __slots__ = ("_doc", "_from_doc")

    def __init__(self, seq: int, wire: WireRecord, from_doc: Callable[[bytes], DomainEvent], doc: bytes) -> None:
        self.seq, self.wire, self._event, self._from_doc, self._doc = seq, wire, None, from_doc, doc

    @property
    def event(self) -> DomainEvent:
        if self._event is None:
            self._event, self._doc = self._from_doc(self._doc), b""
        return self._event


class SQLiteOutboxReader:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def _messages(self, rows: Sequence[Sequence[Any]]) -> list[OutboxMessage]:
        return [OutboxMessage(r[0], event_from_doc(self._db.conv, json.loads(r[1]))) for r in rows]

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        """Each event with the broker record kept when it was written, decoded only if asked for
        (the relay publishes the record as it is: :class:`_Stored`). The partition key, type and
        document are read as bytes: the record needs the first two so, and the document is
        decoded only with the event."""
        # pending() answers with the oldest pending seqs, in seq order (commit order), and
        # ``beyond`` holds earlier answers in the order they came: what follows it is every
        # pending seq above its last one
        after = beyond[-1].seq if beyond else 0
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT o.seq, CAST(o.doc AS BLOB), o.topic, CAST(o.partition_key AS BLOB),"
                " CAST(o.event_type AS BLOB), o.wire"
                " FROM outbox_unpublished u CROSS JOIN outbox o ON o.seq=u.seq WHERE u.seq > ?"
                " ORDER BY u.seq LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        conv = self._db.conv

        def decode(doc: bytes) -> DomainEvent:
            return event_from_doc(conv, json.loads(text(doc)))

        # the tightest loop we have: one message per row, no call per row but the constructor
        messages: list[OutboxMessage] = []
        append = messages.append
        for seq, doc, topic, key, type_name, wire in rows:
            if wire is None:
                append(OutboxMessage(seq, decode(doc)))
                continue
            timestamp, event_id, value = wire.split(b"\n", 2)  # see adapters.event_wire.stored_wire
            headers = [("eventType", type_name), ("timestamp", timestamp), ("eventId", event_id)]
            append(_Stored(seq, (topic, key, value, headers), decode, doc))
        return messages

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

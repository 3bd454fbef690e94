"""The outbox on MongoDB, and how its order is kept without a hot document.

Each event document holds ``partition_key`` (``org:connector``) and ``key_seq``: its place in
that connector's sequence, taken with ``$inc`` on ``counters/outbox_seq:{partition_key}``
inside the committing transaction (:mod:`adapters.mongo.unit_of_work`). Two commits carrying
events of one connector write the same counter, so the second waits for the first (write
conflict, retried) and takes the next number: ``key_seq`` order is commit order per connector,
and a number is only visible once every smaller one of its connector is (an aborted transaction
takes its ``$inc`` back: no gaps). Commits of different connectors share no document, so a
transaction abandoned by a hung client holds up at most its own connector, and only until the
adapter aborts it.

The relay reads pending events sorted by ``(key_seq, _id)``: any prefix of that order holds,
for each connector, a gap-free run of its oldest pending events, so a batch never publishes an
event of a connector before an earlier one. (Across connectors there is no order to keep.)

``_id`` is an ObjectId; :attr:`OutboxMessage.seq` is its 96-bit value as an int (documents of
earlier versions, whose ``_id`` was the global sequence number, keep that number). The events
route and pruning order events by ``(stored_at, key_seq, _id)``: the writer's clock (stamped
just before its transaction), then the connector's sequence, then creation order.

That order is not commit order: a writer that stamped earlier can commit after a reader read a
later-stamped event. So a reader does not simply go on from the last event it read:
:meth:`MongoOutboxReader.resume_point` hands it the last event stamped at least
``settle_seconds`` ago. A commit lands within its transaction's time limit of its stamp (or not
at all: a session the adapter gave up on is killed), so with ``settle_seconds`` covering that
limit plus the clock difference between processes, nothing still to land can be ordered before
that point. The newest events are read again (readers dedupe on event id); none is skipped.
No counter is shared by every writer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from adapters.codec import event_from_doc
from adapters.mongo.database import Doc, MongoDatabase
from connector_core.errors import UnknownEvent
from connector_core.ports.outbox import OutboxBacklog, OutboxMessage

#: newest first, as the events route and pruning see the outbox
_NEWEST_FIRST = [("stored_at", -1), ("key_seq", -1), ("_id", -1)]
_OBJECT_ID_FLOOR = 1 << 64  # every ObjectId made after 1970 is above it; old integer ids below
_PRUNE_CHUNK = 1000


def seq_of(doc_id: Any) -> int:
    return int.from_bytes(doc_id.binary, "big") if isinstance(doc_id, ObjectId) else int(doc_id)


def id_of(seq: int) -> ObjectId | int:
    return ObjectId(seq.to_bytes(12, "big")) if seq >= _OBJECT_ID_FLOOR else seq


#: how far apart the clocks of two processes writing one database may be (NTP keeps them closer)
CLOCK_SKEW_SECONDS = 2.0


def _beside(doc: Mapping[str, Any], op: str, last_op: str) -> Doc:
    """The events on one side of ``doc`` in the route's order ``(stored_at, key_seq, _id)``:
    ``op`` ``$gt`` after it, ``$lt`` before it; ``last_op`` compares ``_id`` (``$lte``: ``doc`` too)."""
    at, key_seq = doc.get("stored_at"), doc.get("key_seq")
    return {
        "$or": [
            {"stored_at": {op: at}},
            {"stored_at": at, "key_seq": {op: key_seq}},
            {"stored_at": at, "key_seq": key_seq, "_id": {last_op: doc["_id"]}},
        ]
    }


class MongoOutboxReader:
    """``settle_seconds``: how long after its stamp an event can still be committed (default:
    the transaction time limit plus :data:`CLOCK_SKEW_SECONDS`), see the module doc."""

    def __init__(self, db: MongoDatabase, *, settle_seconds: float | None = None) -> None:
        self._db = db
        self.settle_seconds = (
            db.transaction_retry_seconds + CLOCK_SKEW_SECONDS if settle_seconds is None else settle_seconds
        )

    def _message(self, doc: Mapping[str, Any]) -> OutboxMessage:
        return OutboxMessage(seq_of(doc["_id"]), event_from_doc(self._db.conv, doc["event"]))

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        """``beyond``: the pending order here is (connector's sequence, id), not one number, so
        the server leaves ``beyond`` out by id (not sent back only to be dropped here)."""
        query: Doc = {"published": False}
        if beyond:
            query["_id"] = {"$nin": [id_of(m.seq) for m in beyond]}
        async with self._db.op("read pending events"):
            docs = await self._db.outbox.find(query).sort([("key_seq", 1), ("_id", 1)]).limit(limit).to_list()
        return [self._message(d) for d in docs]

    async def mark_published(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        async with self._db.op("mark events published"):
            await self._db.outbox.update_many({"_id": {"$in": [id_of(s) for s in seqs]}}, {"$set": {"published": True}})

    async def backlog(self) -> OutboxBacklog:
        pipeline: list[Doc] = [
            {"$match": {"published": False}},
            {"$group": {"_id": None, "pending": {"$sum": 1}, "oldest": {"$min": "$event.occurred_at"}}},
        ]
        async with self._db.op("count pending events"):
            rows = await (await self._db.outbox.aggregate(pipeline)).to_list(None)
        if not rows:
            return OutboxBacklog()
        return OutboxBacklog(int(rows[0]["pending"]), self._db.conv.structure(rows[0]["oldest"], datetime))

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        """``published: true`` with ``set_aside: reason``: no longer pending, and not pruned as
        a published event is."""
        if not reasons:
            return
        async with self._db.op("set events aside"):
            for seq, why in reasons.items():
                await self._db.outbox.update_one({"_id": id_of(seq)}, {"$set": {"published": True, "set_aside": why}})

    async def set_aside_count(self) -> int:
        async with self._db.op("count set-aside events"):
            return int(await self._db.outbox.count_documents({"set_aside": {"$exists": True}}))

    async def resume_point(
        self, page: Sequence[OutboxMessage], *, after: str | None, org_id: str | None = None
    ) -> str | None:
        """The newest event up to the end of ``page`` (in the route's order) stamped at least
        ``settle_seconds`` ago (documents without a stamp count as settled), else ``after``."""
        if not page:
            return after
        horizon = self._db.clock.now() - timedelta(seconds=self.settle_seconds)
        of_org: Doc = {} if org_id is None else {"event.org_id": org_id}
        async with self._db.op("find where to read events on from"):
            end = await self._db.outbox.find_one(
                {"_id": id_of(page[-1].seq)}, projection={"stored_at": 1, "key_seq": 1}
            )
            if end is None:  # pruned meanwhile
                return after
            settled: Doc = {"$or": [{"stored_at": {"$lte": horizon}}, {"stored_at": None}]}
            found = await self._db.outbox.find_one(
                {"$and": [_beside(end, "$lt", "$lte"), settled, of_org]},
                projection={"event.event_id": 1},
                sort=_NEWEST_FIRST,
            )
        return after if found is None else str(found["event"]["event_id"])

    async def prune(self, keep: int, *, published_only: bool) -> int:
        removed = 0
        async with self._db.op("prune the outbox"):
            older = (
                self._db.outbox.find({}, projection={"_id": 1, "published": 1, "set_aside": 1})
                .sort(_NEWEST_FIRST)
                .skip(max(0, keep))
            )
            doomed = [
                d["_id"] async for d in older if not published_only or (d.get("published") and "set_aside" not in d)
            ]
            for start in range(0, len(doomed), _PRUNE_CHUNK):
                result = await self._db.outbox.delete_many({"_id": {"$in": doomed[start : start + _PRUNE_CHUNK]}})
                removed += int(result.deleted_count)
        return removed

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        query: Doc = {} if org_id is None else {"event.org_id": org_id}
        async with self._db.op("read recent events"):
            docs = await self._db.outbox.find(query).sort(_NEWEST_FIRST).limit(limit).to_list()
        return [self._message(d) for d in reversed(docs)]

    async def after(self, event_id: str, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        """In the events route's order, ``(stored_at, key_seq, _id)``: the events after the
        cursor's place in it (see the module's docstring for what that order promises)."""
        of_org: Doc = {} if org_id is None else {"event.org_id": org_id}
        async with self._db.op("read events after a cursor"):
            found = await self._db.outbox.find_one(
                {"event.event_id": event_id, **of_org}, projection={"stored_at": 1, "key_seq": 1}
            )
            if found is None:
                raise UnknownEvent.for_id(event_id)
            later = _beside(found, "$gt", "$gt")
            oldest_first = [(name, 1) for name, _ in _NEWEST_FIRST]
            docs = await self._db.outbox.find({**later, **of_org}).sort(oldest_first).limit(limit).to_list()
        return [self._message(d) for d in docs]

"""The outbox on MongoDB: events with ``_id`` = ``seq``, ``published`` flips once the relay
delivered. How ``seq`` is handed out: :mod:`adapters.mongo.unit_of_work`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.codec import event_from_doc
from adapters.mongo.database import Doc, MongoDatabase, mongo_errors
from connector_core.ports.outbox import OutboxMessage


class MongoOutboxReader:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    def _message(self, doc: Mapping[str, Any]) -> OutboxMessage:
        return OutboxMessage(int(doc["_id"]), event_from_doc(self._db.conv, doc["event"]))

    async def pending(self, limit: int) -> Sequence[OutboxMessage]:
        with mongo_errors("read pending events"):
            docs = await self._db.outbox.find({"published": False}).sort("seq", 1).limit(limit).to_list()
        return [self._message(d) for d in docs]

    async def mark_published(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with mongo_errors("mark events published"):
            await self._db.outbox.update_many({"_id": {"$in": list(seqs)}}, {"$set": {"published": True}})

    async def prune(self, keep: int, *, published_only: bool) -> int:
        with mongo_errors("prune the outbox"):
            newest = await self._db.outbox.find_one({}, sort=[("_id", -1)], projection={"_id": 1})
            if newest is None:
                return 0
            query: Doc = {"_id": {"$lte": int(newest["_id"]) - max(0, keep)}}
            if published_only:
                query["published"] = True
            result = await self._db.outbox.delete_many(query)
        return int(result.deleted_count)

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        query: Doc = {} if org_id is None else {"event.org_id": org_id}
        with mongo_errors("read recent events"):
            docs = await self._db.outbox.find(query).sort("_id", -1).limit(limit).to_list()
        return [self._message(d) for d in reversed(docs)]

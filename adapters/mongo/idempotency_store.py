"""Idempotency records on MongoDB (collection ``idempotencyKeys``, indexes created here on first
use): unique per ``(org_id, key)``; expiry is decided by the caller's clock, and a TTL index
(``expires_at`` + grace) is only a backstop that keeps the collection bounded.

Answers are stored as the API sent them (they never hold a secret); requests are kept as a
fingerprint, never their bodies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from adapters.mongo.database import IDEMPOTENCY, MongoDatabase, bson_time
from connector_core.errors import Conflict
from connector_core.ports.idempotency import IdempotencyRecord, StoredAnswer

COLLECTION = IDEMPOTENCY


def _record(doc: dict[str, Any]) -> IdempotencyRecord:
    status = doc.get("status")
    answer = None if status is None else StoredAnswer(int(status), bytes(doc.get("body") or b""))
    expires_at: datetime = doc["expires_at"]
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return IdempotencyRecord(str(doc["fingerprint"]), str(doc["claim_id"]), expires_at, answer)


class MongoIdempotencyStore:
    def __init__(self, db: MongoDatabase, *, ttl_grace: timedelta = timedelta(days=1)) -> None:
        self._db = db
        self._ttl_grace = ttl_grace
        self._coll: AsyncCollection[dict[str, Any]] = db.collection(COLLECTION)
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _indexes(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                async with self._db.op("create the idempotency indexes"):
                    await self._coll.create_index([("org_id", 1), ("key", 1)], name="org_key_unique", unique=True)
                    await self._coll.create_index(
                        "expires_at", name="ttl", expireAfterSeconds=int(self._ttl_grace.total_seconds())
                    )
                self._ready = True

    async def claim(
        self, org_id: str, key: str, *, fingerprint: str, claim_id: str, now: datetime, until: datetime
    ) -> IdempotencyRecord | None:
        await self._indexes()
        for _ in range(3):
            async with self._db.op("claim an idempotency key"):
                try:
                    # inserts when absent, replaces when expired; a live record makes the
                    # upsert collide with the unique index
                    await self._coll.find_one_and_update(
                        {"org_id": org_id, "key": key, "expires_at": {"$lt": now}},
                        {
                            "$set": {
                                "fingerprint": fingerprint,
                                "claim_id": claim_id,
                                "expires_at": bson_time(until),
                                "status": None,
                                "body": None,
                            }
                        },
                        upsert=True,
                    )
                    return None
                except DuplicateKeyError:
                    found = await self._coll.find_one({"org_id": org_id, "key": key})
            if found is not None:
                record = _record(found)
                if record.expires_at >= now:
                    return record
            # it expired or went away in between: claim again
        raise Conflict("could not claim the idempotency key: concurrent claims; retry")

    async def complete(self, org_id: str, key: str, *, claim_id: str, answer: StoredAnswer, until: datetime) -> bool:
        await self._indexes()
        async with self._db.op("store an idempotent answer"):
            result = await self._coll.update_one(
                {"org_id": org_id, "key": key, "claim_id": claim_id},
                {"$set": {"status": answer.status, "body": answer.body, "expires_at": bson_time(until)}},
            )
        return result.matched_count == 1

    async def release(self, org_id: str, key: str, *, claim_id: str) -> None:
        await self._indexes()
        async with self._db.op("release an idempotency key"):
            await self._coll.delete_one({"org_id": org_id, "key": key, "claim_id": claim_id, "status": None})

    async def purge_expired(self, moment: datetime) -> int:
        await self._indexes()
        async with self._db.op("purge expired idempotency keys"):
            result = await self._coll.delete_many({"expires_at": {"$lt": moment}})
        return result.deleted_count

"""Pending OAuth authorizations on MongoDB (``oauthStates``), sealed (bound to
``/oauth-state/{hash}``). Expiry is judged by the caller's clock in :meth:`purge_expired`; the
collection's TTL index is only a backstop."""

from __future__ import annotations

from datetime import datetime

from adapters.mongo.database import MongoDatabase, bson_time
from adapters.sealing import open_pending, seal_pending
from connector_core.ports.oauth_state import PendingAuthorization


class MongoOAuthStateStore:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    async def put(self, pending: PendingAuthorization) -> None:
        sealed = seal_pending(self._db.conv, self._db.sealer, pending)
        async with self._db.op("store an OAuth state"):
            await self._db.oauth_states.insert_one(
                {"_id": pending.state_hash, "expires_at": bson_time(pending.expires_at), "sealed": sealed}
            )

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        async with self._db.op("take an OAuth state"):
            doc = await self._db.oauth_states.find_one_and_delete({"_id": state_hash})
        if doc is None:
            return None
        return open_pending(self._db.conv, self._db.sealer, state_hash, doc["sealed"])

    async def purge_expired(self, moment: datetime) -> int:
        async with self._db.op("purge expired OAuth states"):
            result = await self._db.oauth_states.delete_many({"expires_at": {"$lt": moment}})
        return result.deleted_count

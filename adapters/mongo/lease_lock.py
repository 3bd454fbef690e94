"""Leases on MongoDB (``leases``), shared by every process on the database (policy:
:mod:`adapters.stored_lease_lock`). Taking a lease is one conditional upsert of its document:
no transaction, no counter."""

from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from adapters.mongo.database import MongoDatabase, bson_time
from adapters.stored_lease_lock import StoredLeaseLock
from connector_core.ports.clock import Clock


class MongoLeaseLock(StoredLeaseLock):
    def __init__(self, db: MongoDatabase, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db

    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        async with self._db.op(f"acquire lease {name!r}"):
            try:
                await self._db.leases.update_one(
                    {"name": name, "expires_at": {"$lte": now}},
                    {"$set": {"owner": owner, "expires_at": bson_time(expires)}, "$unset": {"fencing": ""}},
                    upsert=True,
                )
            except DuplicateKeyError:  # the lease exists and has not expired (or a racer took it)
                return False
        return True

    async def _drop(self, name: str, owner: str) -> bool:
        async with self._db.op(f"release lease {name!r}"):
            result = await self._db.leases.delete_one({"name": name, "owner": owner})
        return result.deleted_count == 1

    async def _prolong(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        async with self._db.op(f"extend lease {name!r}"):
            result = await self._db.leases.update_one(
                {"name": name, "owner": owner, "expires_at": {"$gt": now}},
                {"$set": {"expires_at": bson_time(expires)}},
            )
        return result.matched_count == 1

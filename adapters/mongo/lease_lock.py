"""Leases on MongoDB (``leases``), shared by every process on the database (policy:
:mod:`adapters.stored_lease_lock`). Fencing tokens come from ``counters/fence:{name}``, taken in
the same transaction that takes the lease, so they grow in the order leases are granted even
though a released lease's document is deleted."""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from adapters.mongo.database import MongoDatabase, bson_time, mongo_errors
from adapters.stored_lease_lock import StoredLeaseLock
from connector_core.errors import Conflict
from connector_core.ports.clock import Clock


class _LeaseHeld(Exception):
    """Inside the acquire transaction: someone else holds the lease."""


class MongoLeaseLock(StoredLeaseLock):
    def __init__(self, db: MongoDatabase, clock: Clock) -> None:
        super().__init__(clock)
        self._db = db

    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> int | None:
        db = self._db

        async def take(s: AsyncClientSession) -> int:
            # The fence first: competing acquirers meet on it at once (and if the lease turns
            # out to be held, the aborted transaction takes the increment back).
            fence = await db.next_value(f"fence:{name}", s)
            try:
                await db.leases.find_one_and_update(
                    {"name": name, "expires_at": {"$lte": now}},
                    {"$set": {"owner": owner, "fencing": fence, "expires_at": bson_time(expires)}},
                    upsert=True,
                    session=s,
                )
            except DuplicateKeyError as exc:  # the lease exists and has not expired
                raise _LeaseHeld from exc
            return fence

        try:
            return await db.transaction(f"acquire lease {name!r}", take)
        except (_LeaseHeld, Conflict):  # held, or another acquirer won the race
            return None

    async def _drop(self, name: str, owner: str) -> bool:
        with mongo_errors(f"release lease {name!r}"):
            result = await self._db.leases.delete_one({"name": name, "owner": owner})
        return result.deleted_count == 1

    async def _prolong(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        with mongo_errors(f"extend lease {name!r}"):
            result = await self._db.leases.update_one(
                {"name": name, "owner": owner, "expires_at": {"$gt": now}},
                {"$set": {"expires_at": bson_time(expires)}},
            )
        return result.matched_count == 1

"""Admin status from the existing deployment's user groups in MongoDB.

The existing service decides admin by looking the user up: a user administers their org when a
**non-deleted** group of **type** ``admin`` in that org lists them among its users. A group
merely *named* "Admins" (type ``custom``) does not make anyone an admin, nor does a deleted
admin group. Ids are stored as ObjectIds while tokens carry their hex strings, so both forms
are matched. Collection and field names come from :class:`UserGroupsSchema`.

A lookup waits at most ``timeout_seconds``, cut to what is left of the request's deadline.
Verdicts (yes and no) are cached for ``ttl_seconds`` in a bounded LRU, so a burst of admin
requests costs one query per user; a removed admin keeps access for at most that long.
Concurrent first requests of one user share one query. A MongoDB failure is never cached and
is :class:`Unavailable` (503): an admin is never turned away as a non-admin because the
database is down.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
from attrs import frozen
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from adapters.lru import LruCache, SingleFlight
from connector_core.deadline import remaining
from connector_core.errors import Unavailable
from connector_core.ports.iam import Principal

__all__ = ["MongoUserGroupsIam", "UserGroupsSchema", "id_forms"]

Doc = dict[str, Any]


@frozen
class UserGroupsSchema:
    """Where the existing deployment keeps its user groups, and what it calls their fields."""

    collection: str = "userGroups"
    org_field: str = "orgId"
    users_field: str = "users"
    type_field: str = "type"
    deleted_field: str = "isDeleted"
    admin_type: str = "admin"

    def admin_query(self, org_id: str, user_id: str) -> Doc:
        """The filter that finds an admin group of ``org_id`` listing ``user_id``."""
        return {
            self.org_field: {"$in": id_forms(org_id)},
            self.users_field: {"$in": id_forms(user_id)},
            self.type_field: self.admin_type,
            self.deleted_field: {"$ne": True},
        }


def id_forms(value: str) -> list[Any]:
    """``value`` as stored: the string itself, and the ObjectId when it is one (24 hex digits)."""
    return [ObjectId(value), value] if ObjectId.is_valid(value) and len(value) == 24 else [value]


@contextlib.contextmanager
def _unavailable(action: str) -> Iterator[None]:
    """Every driver error of a read is an outage of the user-group store (never a 'no')."""
    try:
        yield
    except PyMongoError as exc:
        raise Unavailable(
            f"MongoDB (user groups) is unavailable while trying to {action} ({type(exc).__name__})",
            metadata={"dependency": "iam"},
        ) from exc


class MongoUserGroupsIam:
    """:class:`~connector_core.ports.iam.IdentityAccess` over the user groups collection."""

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        schema: UserGroupsSchema | None = None,
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        timeout_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = collection
        self.schema = schema or UserGroupsSchema()
        self.ttl_seconds = ttl_seconds
        self.timeout_seconds = timeout_seconds
        self._verdicts: LruCache[tuple[str, str], tuple[bool, float]] = LruCache(max_entries)
        self._flights: SingleFlight[tuple[str, str]] = SingleFlight()
        self._now = monotonic

    @property
    def cached(self) -> int:
        """How many verdicts are cached (bounded by ``max_entries``)."""
        return len(self._verdicts)

    async def is_admin(self, principal: Principal) -> bool:
        if principal.user_id is None or principal.org_id is None:
            return False  # a service token administers nothing
        key = (principal.org_id, principal.user_id)
        found = self._fresh(key)
        if found is not None:
            return found
        async with self._flights.hold(key):
            found = self._fresh(key)  # another request of this user may just have asked
            if found is not None:
                return found
            with _unavailable("decide whether a user is an admin"), pymongo.timeout(remaining(self.timeout_seconds)):
                group = await self._collection.find_one(self.schema.admin_query(*key), projection={"_id": 1})
            verdict = group is not None
            self._verdicts.put(key, (verdict, self._now() + self.ttl_seconds))
            return verdict

    def _fresh(self, key: tuple[str, str]) -> bool | None:
        found = self._verdicts.get(key)
        if found is None:
            return None
        verdict, until = found
        return verdict if self._now() < until else None

    async def check(self) -> bool:
        """Health: the server answers a read of the collection."""
        with _unavailable("check the user groups collection"), pymongo.timeout(remaining(self.timeout_seconds)):
            await self._collection.find_one({}, projection={"_id": 1})
        return True

"""The collections and indexes of :class:`~adapters.mongo.database.MongoDatabase`, made at
start-up (idempotent; several processes may start together), and the indexes older versions
made that no read uses any more, dropped.

Each read that runs per request or per refresher pass has an index whose keys are its
conditions in order, then its sort: on SecantusDB a read with a condition on a field outside its
index (a status as ``$ne`` or ``$in``, a top-level ``$or``) was planned with no index at all and
read every record (``tests/integration/test_mongo_query_plans.py`` explains each find on the
real server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import CollectionInvalid, OperationFailure

if TYPE_CHECKING:
    from adapters.mongo.database import MongoDatabase

__all__ = ["create_indexes"]

_NAMESPACE_EXISTS = 48
_INDEX_NOT_FOUND = {26, 27}  # NamespaceNotFound, IndexNotFound
_INDEX_OPTIONS_CONFLICT = {85, 86}  # IndexOptionsConflict (mongod), IndexKeySpecsConflict (SecantusDB)


async def create_indexes(db: MongoDatabase) -> None:
    """Create the collections and indexes (idempotent), inside the caller's time limit."""
    existing = set(await db.db.list_collection_names())
    for collection in (db.connectors, db.tokens, db.outbox, db.oauth_states, db.leases, db.counters):
        if collection.name not in existing:
            await _create_collection(db, collection.name)
    await db.connectors.create_index(
        [("org_id", 1), ("key", 1)],
        name="org_key_unique",
        unique=True,
        # old-service documents carry no org_id: they must not collide on null
        partialFilterExpression={"org_id": {"$exists": True}},
    )
    # a plain one too: a server that cannot tell that {org_id: X} implies the partial
    # filter (SecantusDB) scanned the whole collection for every list. With _id last:
    # MongoDB < 5.0 refuses two indexes of one key pattern (codes 85/86), "org_key" did
    await db.connectors.create_index([("org_id", 1), ("key", 1), ("_id", 1)], name="org_key_id")
    await _drop_index(db.connectors, "org_key")
    await db.tokens.create_index([("org_id", 1), ("connector_key", 1)], name="org_connector_unique", unique=True)
    # _id last: the due query's order (refresh_due_at, _id) comes from the index, so
    # `limit` stops the scan instead of sorting every due record ("due" lacked it)
    await db.tokens.create_index([("status", 1), ("refresh_due_at", 1), ("_id", 1)], name="due_in_order")
    await _drop_index(db.tokens, "due")
    # the due query's second form: records whose backoff is over, or that never failed
    await db.tokens.create_index(
        [("status", 1), ("next_attempt_at", 1), ("refresh_due_at", 1), ("_id", 1)], name="due_after_backoff"
    )
    # the expiry and warning reads: one find per status, in the order of these
    await db.tokens.create_index(
        [("expiry_notified", 1), ("status", 1), ("expires_at", 1), ("_id", 1)], name="expiry_by_status"
    )
    await db.tokens.create_index([("status", 1), ("refresh_warn_at", 1), ("_id", 1)], name="warn_by_status")
    for old in ("expiry", "refresh_warn"):  # what those reads used before
        await _drop_index(db.tokens, old)
    await db.outbox.create_index([("published", 1), ("key_seq", 1), ("_id", 1)], name="pending_by_key_seq")
    await db.outbox.create_index([("stored_at", -1), ("key_seq", -1), ("_id", -1)], name="by_time")
    await db.outbox.create_index(
        [("event.org_id", 1), ("stored_at", -1), ("key_seq", -1), ("_id", -1)], name="by_org_time"
    )
    await db.outbox.create_index("event.event_id", name="by_event_id")
    await _ensure_ttl_index(db)
    await db.leases.create_index("name", name="name_unique", unique=True)
    # leases carried fencing tokens once, from one counter per lock name kept forever
    await db.counters.delete_many({"_id": {"$regex": "^fence:"}})


async def _create_collection(db: MongoDatabase, name: str) -> None:
    # Made up front: some servers refuse to create a collection inside a transaction.
    try:
        await db.db.create_collection(name)
    except CollectionInvalid:
        pass  # another process created it meanwhile
    except OperationFailure as exc:
        if exc.code != _NAMESPACE_EXISTS:
            raise


async def _drop_index(collection: AsyncCollection[dict[str, Any]], name: str) -> None:
    """Drop an index an older version made, if it is there (another process may race us)."""
    try:
        await collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code not in _INDEX_NOT_FOUND:
            raise


async def _ensure_ttl_index(db: MongoDatabase) -> None:
    grace = int(db.oauth_state_ttl_grace.total_seconds())
    try:
        await db.oauth_states.create_index("expires_at", name="ttl", expireAfterSeconds=grace)
    except OperationFailure as exc:
        if exc.code not in _INDEX_OPTIONS_CONFLICT:
            raise
        # the grace setting changed since the index was made: adjust it in place
        await db.db.command("collMod", db.oauth_states.name, index={"name": "ttl", "expireAfterSeconds": grace})

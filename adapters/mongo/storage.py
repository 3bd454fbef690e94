"""Every storage port on MongoDB (pymongo's asyncio client), one database.

Collections
    ``connectorsConfig``  one document per (org, connector key). Our fields (``org_id``, ``key``,
                          ``is_enabled``, ``version`` and the full aggregate under ``state``) plus,
                          top-level, the fields the old service wrote (``orgId``, ``name``,
                          ``isEnabled``, ``lastUpdatedBy``, ``createdAt``, ``updatedAt``) so its
                          readers keep working. Old-service documents (no ``org_id``) are ignored.
    ``tokens``            one document per token record: queryable metadata in the clear
                          (``status``, ``refresh_due_at``, ``next_attempt_at``, ``expires_at`` as
                          dates, ``expiry_notified``), the rest of the record under ``meta`` and the
                          token material sealed (AES-256-GCM, bound to ``/tokens/{id}``) in
                          ``material``, exactly as the SQLite adapter does.
    ``outbox``            events, ``_id`` = ``seq``; ``published`` flips once the relay delivered.
    ``oauthStates``       pending authorizations, sealed (bound to ``/oauth-state/{hash}``).
    ``leases``            lease locks; ``counters`` holds ``outbox_seq`` and ``fence:{name}``.

Atomicity. A unit of work commits in ONE multi-document transaction: every connector and token
write is conditional on the version the caller loaded (``update_one({..., "version": expected})``
matching nothing, or an insert hitting a unique index, is :class:`Conflict`), and the outbox
events are inserted in the same transaction, so a state change and its events are stored
together or not at all.

Outbox order. Each committing transaction takes its ``seq`` numbers with ``$inc`` on the single
``counters/outbox_seq`` document *inside* the transaction. Two transactions that both write
events therefore write the same document: the second gets a WriteConflict and is retried after
the first committed, so the numbers are handed out in commit order and a number is only
visible once every smaller one is (an aborted transaction rolls its ``$inc`` back: no gaps).
Hence ``seq`` order == commit order, for one connector and globally. The price: commits that
carry events are serialised on that document. The ``$inc`` is the transaction's first write, so
a loser learns it before doing any other work; losers are retried with jittered backoff for up
to ``transaction_retry_seconds``, then get :class:`Conflict`. Within one process such commits
queue on an ``asyncio.Lock`` instead of spinning on the server (a wait longer than
``transaction_retry_seconds`` is :class:`Unavailable`, so a slow or down server does not pile up
requests); only commits from other processes meet as WriteConflicts.

Standalone servers. A standalone ``mongod`` (no ``--replSet``) has no multi-document
transactions, so it cannot give the guarantees above: a fallback to unordered single-document
writes would store state without its events (or events for state that a version check then
rejected) and lose the seq/commit-order property. The adapter refuses instead:
:meth:`MongoDatabase.ensure_indexes` (run at start-up) raises :class:`Unavailable` naming the
``mongo_url`` setting. A one-node replica set is enough (``mongod --replSet rs0`` once
``rs.initiate()`` ran; connect with ``?replicaSet=rs0`` or ``?directConnection=true``).

Time. BSON dates have millisecond resolution, so the aggregates are stored losslessly (datetimes
as ISO-8601 strings under ``state``/``meta``/``event``) and only the queried and legacy fields are
native dates. Those are rounded *up* to the millisecond: a token is never reported due or expired,
and a lease never lapses, before its exact time. Lease expiry is decided by the injected clock,
never by the server's; the TTL index on ``oauthStates`` is only a backstop behind
:meth:`MongoOAuthStateStore.purge_expired`.

Errors. Driver exceptions are translated in one place, :func:`mongo_errors`: connection
failures (server selection, reconnects, network timeouts) become :class:`Unavailable` quickly
(``make_client`` sets 2 s server-selection/connect/socket timeouts), write conflicts and
duplicate keys become :class:`Conflict`. Messages name the operation and the exception class,
never document contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pymongo
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)
from pymongo.read_concern import ReadConcern

from adapters.codec import (
    connector_from_doc,
    connector_to_doc,
    event_from_doc,
    event_to_doc,
    make_json_converter,
)
from adapters.sealing import Sealer, open_pending, open_token_record, seal_pending, seal_token_record
from adapters.unit_of_work_base import Batch, BufferedUnitOfWork, Op
from connector_core.errors import Conflict, LeaseLost, Unavailable
from connector_core.model.connector import Connector
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.ports.outbox import OutboxMessage
from connector_core.tokens import TokenRecord, TokenStatus

T = TypeVar("T")
Doc = dict[str, Any]

#: the setting that points the service at MongoDB (named in start-up errors)
MONGO_URL_SETTING = "mongo_url (CM_MONGO_URL)"
DEFAULT_TIMEOUT_SECONDS = 2.0

CONNECTORS = "connectorsConfig"
TOKENS = "tokens"
OUTBOX = "outbox"
OAUTH_STATES = "oauthStates"
LEASES = "leases"
COUNTERS = "counters"
OUTBOX_SEQ = "outbox_seq"

_WRITE_CONFLICT = 112
_DUPLICATE_KEY = 11000
_ILLEGAL_OPERATION = 20
_NAMESPACE_EXISTS = 48
_INDEX_OPTIONS_CONFLICT = {85, 86}  # IndexOptionsConflict (mongod), IndexKeySpecsConflict (SecantusDB)


def make_client(url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, **options: Any) -> AsyncMongoClient[Doc]:
    """An ``AsyncMongoClient`` with short server-selection/connect/socket timeouts, so a down
    server answers :class:`Unavailable` (503) within about ``timeout_seconds``. No I/O happens
    until the first operation. ``options`` go to the client (e.g. ``event_listeners``)."""
    ms = max(1, int(timeout_seconds * 1000))
    settings: dict[str, Any] = {
        "serverSelectionTimeoutMS": ms,
        "connectTimeoutMS": ms,
        "socketTimeoutMS": ms,
        "appname": "connector-manager",
        **options,
    }
    return AsyncMongoClient(url, **settings)


# -- the one place where driver errors become ours ---------------------------------------------


class _RetryTransaction(Exception):
    """Raised inside a transaction body to have the whole transaction run again."""


def _is_write_conflict(exc: PyMongoError) -> bool:
    if isinstance(exc, ConnectionFailure):
        return False  # the network, not a conflict: never retried here (the driver already did)
    return exc.has_error_label("TransientTransactionError") or getattr(exc, "code", None) == _WRITE_CONFLICT


def _is_duplicate_key(exc: PyMongoError) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == _DUPLICATE_KEY for e in exc.details.get("writeErrors", []))
    return False


@contextlib.contextmanager
def mongo_errors(action: str) -> Iterator[None]:
    """Translate driver exceptions raised while doing ``action`` (re-raised ``from exc``)."""
    try:
        yield
    except PyMongoError as exc:
        name = type(exc).__name__
        if exc.has_error_label("UnknownTransactionCommitResult"):
            raise Unavailable(
                f"MongoDB failed while committing ({action}, {name}); the outcome is unknown: reload before retrying"
            ) from exc
        if isinstance(exc, ConnectionFailure):
            raise Unavailable(f"MongoDB is unreachable ({name}) while trying to {action}") from exc
        if _is_duplicate_key(exc):
            raise Conflict(f"could not {action}: the record already exists; retry") from exc
        if _is_write_conflict(exc):
            raise Conflict(f"could not {action}: a concurrent write got there first; retry") from exc
        code = getattr(exc, "code", None)
        if code == _ILLEGAL_OPERATION and "transaction" in str(getattr(exc, "details", None) or "").lower():
            raise Unavailable(_standalone_message()) from exc
        if exc.timeout:
            raise Unavailable(f"MongoDB timed out ({name}) while trying to {action}") from exc
        code_name = exc.details.get("codeName") if isinstance(exc, OperationFailure) and exc.details else None
        detail = " ".join(str(x) for x in (name, code, code_name) if x)
        raise Unavailable(f"MongoDB refused to {action} ({detail})") from exc


def _standalone_message() -> str:
    return (
        "MongoDB at the configured address is a standalone server without multi-document "
        f"transactions; point the {MONGO_URL_SETTING} setting at a replica set "
        "(a one-node set is enough: mongod --replSet rs0, then rs.initiate())"
    )


def _bson_time(value: datetime | None) -> datetime | None:
    """A datetime as BSON can hold it (milliseconds), rounded up so nothing fires early."""
    if value is None:
        return None
    extra = value.microsecond % 1000
    return value if not extra else value + timedelta(microseconds=1000 - extra)


# -- the database ------------------------------------------------------------------------------


class MongoDatabase:
    """One MongoDB database holding every storage collection. Owns ``client`` (closed by
    :meth:`aclose`). Call :meth:`ensure_indexes` once at start-up."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        db_name: str,
        *,
        sealer: Sealer,
        clock: Clock,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        transaction_retry_seconds: float = 3.0,
        oauth_state_ttl_grace: timedelta = timedelta(hours=1),
    ) -> None:
        self.client = client
        self.sealer = sealer
        self.clock = clock
        self.conv = make_json_converter()
        self.timeout_seconds = timeout_seconds
        self.transaction_retry_seconds = transaction_retry_seconds
        self.oauth_state_ttl_grace = oauth_state_ttl_grace
        # Commits that carry events all write counters/outbox_seq; within one process they
        # queue here rather than spin on the server's WriteConflicts.
        self._outbox_writers = asyncio.Lock()
        options: CodecOptions[Doc] = CodecOptions(document_class=dict, tz_aware=True, tzinfo=UTC)
        self.db: AsyncDatabase[Doc] = client.get_database(db_name, codec_options=options)
        self.connectors: AsyncCollection[Doc] = self.db[CONNECTORS]
        self.tokens: AsyncCollection[Doc] = self.db[TOKENS]
        self.outbox: AsyncCollection[Doc] = self.db[OUTBOX]
        self.oauth_states: AsyncCollection[Doc] = self.db[OAUTH_STATES]
        self.leases: AsyncCollection[Doc] = self.db[LEASES]
        self.counters: AsyncCollection[Doc] = self.db[COUNTERS]

    def __repr__(self) -> str:
        return f"MongoDatabase(db={self.db.name!r})"

    async def require_transactions(self) -> None:
        """:class:`Unavailable` unless the server is a replica-set member or mongos."""
        with mongo_errors("ask the server what it is"), pymongo.timeout(self.timeout_seconds):
            hello = await self.db.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise Unavailable(_standalone_message())

    async def ensure_indexes(self) -> None:
        """Refuse a standalone server, then create the collections and indexes (idempotent)."""
        await self.require_transactions()
        with mongo_errors("create the indexes"):
            existing = set(await self.db.list_collection_names())
            for name in (CONNECTORS, TOKENS, OUTBOX, OAUTH_STATES, LEASES, COUNTERS):
                if name not in existing:
                    await self._create_collection(name)
            await self.connectors.create_index(
                [("org_id", 1), ("key", 1)],
                name="org_key_unique",
                unique=True,
                # old-service documents carry no org_id: they must not collide on null
                partialFilterExpression={"org_id": {"$exists": True}},
            )
            await self.tokens.create_index(
                [("org_id", 1), ("connector_key", 1)], name="org_connector_unique", unique=True
            )
            await self.tokens.create_index([("status", 1), ("refresh_due_at", 1)], name="due")
            await self.tokens.create_index([("expiry_notified", 1), ("expires_at", 1)], name="expiry")
            await self.outbox.create_index([("published", 1), ("seq", 1)], name="pending")
            await self.outbox.create_index([("event.org_id", 1), ("_id", -1)], name="by_org")
            await self._ensure_ttl_index()
            await self.leases.create_index("name", name="name_unique", unique=True)
            # the hot counter exists up front, so concurrent first commits never race to create it
            await self.counters.update_one({"_id": OUTBOX_SEQ}, {"$setOnInsert": {"value": 0}}, upsert=True)

    async def _create_collection(self, name: str) -> None:
        # Made up front: some servers refuse to create a collection inside a transaction.
        try:
            await self.db.create_collection(name)
        except CollectionInvalid:
            pass  # another process created it meanwhile
        except OperationFailure as exc:
            if exc.code != _NAMESPACE_EXISTS:
                raise

    async def _ensure_ttl_index(self) -> None:
        grace = int(self.oauth_state_ttl_grace.total_seconds())
        try:
            await self.oauth_states.create_index("expires_at", name="ttl", expireAfterSeconds=grace)
        except OperationFailure as exc:
            if exc.code not in _INDEX_OPTIONS_CONFLICT:
                raise
            # the grace setting changed since the index was made: adjust it in place
            await self.db.command("collMod", OAUTH_STATES, index={"name": "ttl", "expireAfterSeconds": grace})

    async def check(self) -> bool:
        """A ping with a short timeout; never raises."""
        try:
            with pymongo.timeout(self.timeout_seconds):
                await self.db.command("ping")
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        await self.client.close()

    async def transaction(self, action: str, body: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run ``body(session)`` in one transaction, again while it only hit write conflicts
        (for up to ``transaction_retry_seconds``). The body re-reads what it checks, so a retry
        after someone else's commit sees their versions and raises :class:`Conflict`."""
        deadline = time.monotonic() + self.transaction_retry_seconds
        attempt = 0
        with mongo_errors(action):
            while True:
                attempt += 1
                try:
                    async with self.client.start_session() as session:
                        # majority: a committed token rotation or event survives a failover
                        async with await session.start_transaction(
                            read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
                        ):
                            result = await body(session)
                    return result
                except (OperationFailure, _RetryTransaction) as exc:
                    retry = isinstance(exc, _RetryTransaction) or _is_write_conflict(exc)
                    if not retry or time.monotonic() >= deadline:
                        if isinstance(exc, _RetryTransaction):
                            raise Conflict(f"could not {action}: too much contention; retry") from exc
                        raise
                backoff = min(0.5, 0.002 * 2**attempt)
                await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter, not secrecy

    @contextlib.asynccontextmanager
    async def outbox_writer(self) -> AsyncIterator[None]:
        """This process's turn to write events; :class:`Unavailable` after waiting
        ``transaction_retry_seconds`` (the server is slow or down: fail fast, don't pile up)."""
        try:
            async with asyncio.timeout(self.transaction_retry_seconds):
                await self._outbox_writers.acquire()
        except TimeoutError:
            raise Unavailable("MongoDB is too slow to take more event writes now; retry later") from None
        try:
            yield
        finally:
            self._outbox_writers.release()

    async def next_value(self, name: str, session: AsyncClientSession, *, count: int = 1) -> int:
        """Add ``count`` to counter ``name`` inside the session's transaction; the new value."""
        try:
            doc = await self.counters.find_one_and_update(
                {"_id": name},
                {"$inc": {"value": count}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        except DuplicateKeyError as exc:  # two first uses raced to create it
            raise _RetryTransaction(name) from exc
        assert doc is not None
        return int(doc["value"])

    # -- documents -----------------------------------------------------------------------------

    def connector_doc(self, connector: Connector, version: int) -> Doc:
        state = connector_to_doc(self.conv, connector)
        state.pop("version", None)
        return {
            "org_id": connector.org_id,
            "key": connector.key,
            "is_enabled": connector.is_enabled,
            "version": version,
            "state": state,
            # what the old service's readers look for
            "orgId": connector.org_id,
            "name": connector.key,
            "isEnabled": connector.is_enabled,
            "lastUpdatedBy": connector.last_updated_by,
            "createdAt": _bson_time(connector.created_at),
            "updatedAt": _bson_time(connector.updated_at),
        }

    def connector_from(self, doc: Mapping[str, Any]) -> Connector:
        state = dict(doc["state"])
        state["version"] = doc["version"]
        return connector_from_doc(self.conv, state)

    def token_doc(self, record: TokenRecord, version: int) -> Doc:
        meta, sealed = seal_token_record(self.conv, self.sealer, record)
        return {
            "_id": record.id,
            "org_id": record.org_id,
            "connector_key": record.connector_key,
            "status": str(record.status),
            "refresh_due_at": _bson_time(record.refresh_due_at),
            "next_attempt_at": _bson_time(record.next_attempt_at),
            "expires_at": _bson_time(record.tokens.expires_at),
            "expiry_notified": record.expiry_notified,
            "version": version,
            "meta": meta,
            "material": sealed,
        }

    def token_from(self, doc: Mapping[str, Any]) -> TokenRecord:
        return open_token_record(self.conv, self.sealer, doc["_id"], doc["meta"], doc["material"], int(doc["version"]))

    def message_from(self, doc: Mapping[str, Any]) -> OutboxMessage:
        return OutboxMessage(int(doc["_id"]), event_from_doc(self.conv, doc["event"]))


# -- unit of work -------------------------------------------------------------------------------


class MongoUnitOfWork(BufferedUnitOfWork):
    """Reads go straight to the collections; :meth:`commit` writes the batch in one transaction."""

    def __init__(self, db: MongoDatabase) -> None:
        super().__init__()
        self._db = db

    async def _load_connector(self, org_id: str, key: str) -> Connector | None:
        with mongo_errors("load a connector"):
            doc = await self._db.connectors.find_one({"org_id": org_id, "key": key})
        return None if doc is None else self._db.connector_from(doc)

    async def _list_connectors(self, org_id: str) -> Sequence[Connector]:
        with mongo_errors("list connectors"):
            docs = await self._db.connectors.find({"org_id": org_id}).sort("key", 1).to_list(None)
        return [self._db.connector_from(d) for d in docs]

    async def _load_token(self, token_id: str) -> TokenRecord | None:
        with mongo_errors("load a token record"):
            doc = await self._db.tokens.find_one({"_id": token_id})
        return None if doc is None else self._db.token_from(doc)

    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        with mongo_errors("load a token record"):
            doc = await self._db.tokens.find_one({"org_id": org_id, "connector_key": connector_key})
        return None if doc is None else self._db.token_from(doc)

    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        query = {
            "status": str(TokenStatus.ACTIVE),
            "refresh_due_at": {"$lte": moment},
            "$or": [{"next_attempt_at": None}, {"next_attempt_at": {"$lte": moment}}],
        }
        with mongo_errors("find tokens due for refresh"):
            docs = await self._db.tokens.find(query).sort([("refresh_due_at", 1), ("_id", 1)]).limit(limit).to_list()
        return [self._db.token_from(d) for d in docs]

    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        query = {
            "expiry_notified": False,
            "status": {"$ne": str(TokenStatus.REVOKED)},
            "expires_at": {"$lte": moment},
        }
        with mongo_errors("find expired tokens"):
            docs = await self._db.tokens.find(query).sort([("expires_at", 1), ("_id", 1)]).limit(limit).to_list()
        return [self._db.token_from(d) for d in docs]

    async def _apply(self, batch: Batch) -> None:
        db = self._db
        # Serialise and seal before the transaction, which should be short.
        connector_docs = [(sc, db.connector_doc(sc.connector, sc.expected_version + 1)) for sc in batch.connectors]
        token_docs = [
            (st, None if st.op is Op.DELETE else db.token_doc(st.record, st.expected_version + 1))
            for st in batch.tokens
        ]
        stored_at = _bson_time(db.clock.now())
        events = [event_to_doc(db.conv, e) for e in batch.events]

        async def write(s: AsyncClientSession) -> None:
            # The counter first: the transaction's snapshot starts with it, so a writer that
            # lost the race learns it at once (WriteConflict) instead of after all its writes.
            first = 0
            if events:
                first = await db.next_value(OUTBOX_SEQ, s, count=len(events)) - len(events) + 1
            for sc, doc in connector_docs:
                con = sc.connector
                if sc.op is Op.ADD:
                    try:
                        await db.connectors.insert_one(dict(doc), session=s)
                    except DuplicateKeyError:
                        raise Conflict(f"connector {con.key} already exists; retry") from None
                    continue
                found = await db.connectors.update_one(
                    {"org_id": con.org_id, "key": con.key, "version": sc.expected_version}, {"$set": doc}, session=s
                )
                if found.matched_count != 1:
                    raise Conflict(f"connector {con.key} was changed by someone else; retry")
            for st, tdoc in token_docs:
                rec = st.record
                if st.op is Op.DELETE:
                    gone = await db.tokens.delete_one({"_id": rec.id, "version": st.expected_version}, session=s)
                    if gone.deleted_count != 1:
                        raise Conflict("token record was changed by someone else; retry")
                    continue
                assert tdoc is not None
                if st.op is Op.ADD:
                    try:
                        await db.tokens.insert_one(tdoc, session=s)
                    except DuplicateKeyError:
                        raise Conflict("this connector already has a token record") from None
                    continue
                fields = {k: v for k, v in tdoc.items() if k != "_id"}
                found = await db.tokens.update_one(
                    {"_id": rec.id, "version": st.expected_version}, {"$set": fields}, session=s
                )
                if found.matched_count != 1:
                    raise Conflict("token record was changed by someone else; retry")
            if events:
                await db.outbox.insert_many(
                    [
                        {
                            "_id": first + i,
                            "seq": first + i,
                            "topic": ev.topic,
                            "partition_key": ev.partition_key,
                            "event_type": ev.event_type,
                            "event": e,
                            "published": False,
                            "stored_at": stored_at,
                        }
                        for i, (e, ev) in enumerate(zip(events, batch.events, strict=True))
                    ],
                    session=s,
                )

        if not events:
            await db.transaction("commit a unit of work", write)
            return
        async with db.outbox_writer():
            await db.transaction("commit a unit of work", write)


# -- outbox reader --------------------------------------------------------------------------------


class MongoOutboxReader:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    async def pending(self, limit: int) -> Sequence[OutboxMessage]:
        with mongo_errors("read pending events"):
            docs = await self._db.outbox.find({"published": False}).sort("seq", 1).limit(limit).to_list()
        return [self._db.message_from(d) for d in docs]

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
        return [self._db.message_from(d) for d in reversed(docs)]


# -- OAuth state ----------------------------------------------------------------------------------


class MongoOAuthStateStore:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    async def put(self, pending: PendingAuthorization) -> None:
        sealed = seal_pending(self._db.conv, self._db.sealer, pending)
        with mongo_errors("store an OAuth state"):
            await self._db.oauth_states.insert_one(
                {"_id": pending.state_hash, "expires_at": _bson_time(pending.expires_at), "sealed": sealed}
            )

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        with mongo_errors("take an OAuth state"):
            doc = await self._db.oauth_states.find_one_and_delete({"_id": state_hash})
        if doc is None:
            return None
        return open_pending(self._db.conv, self._db.sealer, state_hash, doc["sealed"])

    async def purge_expired(self, moment: datetime) -> int:
        with mongo_errors("purge expired OAuth states"):
            result = await self._db.oauth_states.delete_many({"expires_at": {"$lt": moment}})
        return result.deleted_count


# -- leases ---------------------------------------------------------------------------------------


class _LeaseHeld(Exception):
    """Inside the acquire transaction: someone else holds the lease."""


class MongoLeaseLock:
    """Leases shared by every process on the database. Expiry is judged by ``clock`` (not the
    server's clock); fencing tokens come from ``counters/fence:{name}``, taken in the same
    transaction that takes the lease, so they grow in the order leases are granted even though
    a released lease's document is deleted."""

    def __init__(self, db: MongoDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_seconds)
        owner = secrets.token_hex(16)
        db = self._db

        async def take(s: AsyncClientSession) -> int:
            # The fence first: competing acquirers meet on it at once (and if the lease turns
            # out to be held, the aborted transaction takes the increment back).
            fence = await db.next_value(f"fence:{name}", s)
            try:
                await db.leases.find_one_and_update(
                    {"name": name, "expires_at": {"$lte": now}},
                    {"$set": {"owner": owner, "fencing": fence, "expires_at": _bson_time(expires)}},
                    upsert=True,
                    session=s,
                )
            except DuplicateKeyError as exc:  # the lease exists and has not expired
                raise _LeaseHeld from exc
            return fence

        try:
            fence = await db.transaction(f"acquire lease {name!r}", take)
        except (_LeaseHeld, Conflict):  # held, or another acquirer won the race
            return None
        return Lease(name, owner, fence, expires)

    async def release(self, lease: Lease) -> bool:
        with mongo_errors(f"release lease {lease.name!r}"):
            result = await self._db.leases.delete_one({"name": lease.name, "owner": lease.owner})
        return result.deleted_count == 1

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_seconds)
        with mongo_errors(f"extend lease {lease.name!r}"):
            result = await self._db.leases.update_one(
                {"name": lease.name, "owner": lease.owner, "expires_at": {"$gt": now}},
                {"$set": {"expires_at": _bson_time(expires)}},
            )
        if result.matched_count != 1:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, lease.fencing_token, expires)


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "MONGO_URL_SETTING",
    "MongoDatabase",
    "MongoLeaseLock",
    "MongoOAuthStateStore",
    "MongoOutboxReader",
    "MongoUnitOfWork",
    "make_client",
    "mongo_errors",
]

"""One MongoDB database holding every storage collection, its indexes, transactions, and the one
place where driver errors become ours.

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
                          ``material``, exactly as the SQLite adapter does (:mod:`adapters.batch_writes`).
    ``outbox``            events (:mod:`adapters.mongo.outbox_reader`).
    ``oauthStates``       pending authorizations, sealed (bound to ``/oauth-state/{hash}``).
    ``leases``            lease locks; ``counters`` holds ``outbox_seq``.

Standalone servers. A standalone ``mongod`` (no ``--replSet``) has no multi-document
transactions, so it cannot give the unit of work's guarantees: a fallback to unordered
single-document writes would store state without its events (or events for state that a version
check then rejected). The adapter refuses instead: :meth:`MongoDatabase.ensure_indexes` (run at
start-up) raises :class:`Unavailable` naming the ``mongo_url`` setting. A one-node replica set is
enough (``mongod --replSet rs0`` once ``rs.initiate()`` ran; connect with ``?replicaSet=rs0`` or
``?directConnection=true``).

Time. BSON dates have millisecond resolution, so the aggregates are stored losslessly (datetimes
as ISO-8601 strings under ``state``/``meta``/``event``) and only the queried and legacy fields are
native dates. Those are rounded *up* to the millisecond (:func:`bson_time`): a token is never
reported due or expired, and a lease never lapses, before its exact time. Lease expiry is decided
by the injected clock, never by the server's; the TTL index on ``oauthStates`` is only a backstop
behind :meth:`~adapters.mongo.oauth_state_store.MongoOAuthStateStore.purge_expired`.

Errors. Driver exceptions are translated in one place, :func:`mongo_errors`: connection
failures (server selection, reconnects, network timeouts) become :class:`Unavailable` quickly
(``make_client`` sets 2 s server-selection/connect/socket timeouts), write conflicts and
duplicate keys become :class:`Conflict`. Messages name the operation and the exception class,
never document contents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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

from adapters.codec import make_json_converter
from adapters.sealing import Sealer
from connector_core.errors import Conflict, Unavailable
from connector_core.ports.clock import Clock

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


def _underlying(exc: PyMongoError) -> PyMongoError:
    """The error that decided the outcome: ``with_transaction`` wraps the last error it retried
    in a timeout error once its time is up (keeping the labels)."""
    cause = exc.__cause__
    if exc.timeout and isinstance(cause, PyMongoError) and cause is not exc:
        return cause
    return exc


@contextlib.contextmanager
def mongo_errors(action: str) -> Iterator[None]:
    """Translate driver exceptions raised while doing ``action`` (re-raised ``from exc``)."""
    try:
        yield
    except PyMongoError as raised:
        exc = _underlying(raised)
        name = type(exc).__name__
        if raised.has_error_label("UnknownTransactionCommitResult"):
            raise Unavailable(
                f"MongoDB failed while committing ({action}, {name}); the outcome is unknown: reload before retrying"
            ) from raised
        if isinstance(exc, ConnectionFailure):
            raise Unavailable(f"MongoDB is unreachable ({name}) while trying to {action}") from exc
        if _is_duplicate_key(exc):
            raise Conflict(f"could not {action}: the record already exists; retry") from exc
        if _is_write_conflict(exc):
            raise Conflict(f"could not {action}: a concurrent write got there first; retry") from exc
        code = getattr(exc, "code", None)
        if code == _ILLEGAL_OPERATION and "transaction" in str(getattr(exc, "details", None) or "").lower():
            raise Unavailable(_standalone_message()) from exc
        if raised.timeout:
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


def bson_time(value: datetime | None) -> datetime | None:
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
            # leases carried fencing tokens once, from one counter per lock name kept forever
            await self.counters.delete_many({"_id": {"$regex": "^fence:"}})
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
        """Run ``body(session)`` in one transaction with pymongo's ``with_transaction``: run
        again while it only hit write conflicts, for up to ``transaction_retry_seconds`` (the
        ``pymongo.timeout`` that bounds every step, commit included). The body re-reads what it
        checks, so a retry after someone else's commit sees their versions and raises
        :class:`Conflict`."""
        with mongo_errors(action), pymongo.timeout(self.transaction_retry_seconds):
            async with self.client.start_session() as session:
                # majority: a committed token rotation or event survives a failover
                return await session.with_transaction(
                    body, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
                )

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
        """Add ``count`` to counter ``name`` inside the session's transaction; the new value.
        Two first uses of a counter racing to create it: one gets :class:`Conflict`."""
        doc = await self.counters.find_one_and_update(
            {"_id": name},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert doc is not None
        return int(doc["value"])

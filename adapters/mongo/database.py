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
                          dates, ``expiry_notified``, ``refresh_deadline``, ``refresh_warn_at``), the rest of the
                          record under ``meta`` and the
                          token material sealed (AES-256-GCM, bound to ``/tokens/{id}``) in
                          ``material``, exactly as the SQLite adapter does (:mod:`adapters.batch_writes`).
    ``outbox``            events (:mod:`adapters.mongo.outbox_reader`).
    ``oauthStates``       pending authorizations, sealed (bound to ``/oauth-state/{hash}``).
    ``leases``            lease locks; ``counters`` holds ``outbox_seq:{org}:{connector}`` (one
                          event sequence per connector).

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

Time limits. Every operation runs under one ``pymongo.timeout`` (client-side operation timeout):
server selection, the driver's retry, a transaction's retries and its commit all share it, so
waits never stack. It is the adapter's own timeout cut to what is left of the request's deadline
(:mod:`connector_core.deadline`): a hung server costs a request one budget, then 503.

Abandoned transactions. A transaction whose client gave up (the server hung or went away
mid-way, or the commit's answer never came) keeps its documents locked on the server until the
server reaps it (60 s by default): every later write of those documents would wait for it. So
the adapter aborts what it started: such a session is handed to a background task that kills it
(``killSessions``) as soon as the server answers again, and until that is done every operation
of this database waits for it (within its own time limit). A commit whose answer never came is
:class:`CommitOutcomeUnknown`; once the kill went through, the outcome is settled and a read
shows what really happened.

Errors. Driver exceptions are translated in one place, :func:`adapters.mongo.errors.mongo_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pymongo
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    OperationFailure,
    PyMongoError,
)
from pymongo.read_concern import ReadConcern
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from adapters.codec import make_json_converter
from adapters.mongo.errors import mongo_errors, refused_if_credentials, standalone_message, unreachable
from adapters.mongo.indexes import create_indexes
from adapters.mongo.read_windows import ReadWindows
from adapters.sealing import Sealer
from connector_core.deadline import remaining
from connector_core.errors import CommitOutcomeUnknown, Unavailable, ValidationError
from connector_core.ports.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")
Doc = dict[str, Any]

DEFAULT_TIMEOUT_SECONDS = 2.0
#: how long closing waits for the aborts of abandoned sessions still under way
_SETTLE_GRACE_SECONDS = 0.5

CONNECTORS = "connectorsConfig"
TOKENS = "tokens"
OUTBOX = "outbox"
OAUTH_STATES = "oauthStates"
LEASES = "leases"
COUNTERS = "counters"
IDEMPOTENCY = "idempotencyKeys"

#: (read concern, write concern) of each collection, outside transactions (a transaction reads
#: a snapshot and commits with ``w: majority``, whatever the collection says). ``majority``
#: everywhere: an acknowledged write that a failover rolled back would be a lost token rotation
#: (``tokens``: the provider already retired the old refresh token), a configuration or an event
#: that vanished after it was announced, a consumed OAuth state usable again, a relay lease held
#: twice, or an Idempotency-Key answer forgotten; a majority read never shows a write that can
#: still be rolled back. The cost is a round trip to a majority of members per write.
CONCERNS: dict[str, tuple[str, str | int]] = {
    CONNECTORS: ("majority", "majority"),
    TOKENS: ("majority", "majority"),
    OUTBOX: ("majority", "majority"),
    OAUTH_STATES: ("majority", "majority"),
    LEASES: ("majority", "majority"),
    COUNTERS: ("majority", "majority"),
    IDEMPOTENCY: ("majority", "majority"),
}


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
    try:
        return AsyncMongoClient(url, **settings)
    except (PyMongoError, ValueError, TypeError):  # its text can repeat the URL, password included
        raise ValidationError(
            "is not a MongoDB URL the driver accepts (a user name or password must be percent-encoded)"
        ) from None


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
        abandoned_session_seconds: float = 120.0,
    ) -> None:
        self.client = client
        self.sealer = sealer
        self.clock = clock
        self.conv = make_json_converter()
        self.timeout_seconds = timeout_seconds
        self.transaction_retry_seconds = transaction_retry_seconds
        self.oauth_state_ttl_grace = oauth_state_ttl_grace
        #: where the refresher's ordered reads found their oldest records (adapters.mongo.read_windows)
        self.windows = ReadWindows()
        #: how long to keep trying to kill an abandoned session (the server reaps it by itself
        #: after its transaction lifetime limit, 60 s by default)
        self.abandoned_session_seconds = abandoned_session_seconds
        # background kills of abandoned sessions; every operation waits for them (module doc)
        self._settling: set[asyncio.Task[None]] = set()
        # a string that is not UTF-8 reads with surrogates instead of failing the whole cursor:
        # its record is then unreadable on its own (adapters.stored_tokens)
        options: CodecOptions[Doc] = CodecOptions(
            document_class=dict, tz_aware=True, tzinfo=UTC, unicode_decode_error_handler="surrogateescape"
        )
        self.db: AsyncDatabase[Doc] = client.get_database(db_name, codec_options=options)
        self.connectors = self.collection(CONNECTORS)
        self.tokens = self.collection(TOKENS)
        self.outbox = self.collection(OUTBOX)
        self.oauth_states = self.collection(OAUTH_STATES)
        self.leases = self.collection(LEASES)
        self.counters = self.collection(COUNTERS)

    def collection(self, name: str) -> AsyncCollection[Doc]:
        """The collection with its read and write concerns (:data:`CONCERNS`)."""
        read, write = CONCERNS[name]
        return self.db.get_collection(name, read_concern=ReadConcern(read), write_concern=WriteConcern(write))

    def __repr__(self) -> str:
        return f"MongoDatabase(db={self.db.name!r})"

    async def require_transactions(self) -> None:
        """:class:`Unavailable` unless the server is a replica-set member or mongos."""
        async with self.op("ask the server what it is"):
            hello = await self.db.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise Unavailable(standalone_message())

    async def ensure_indexes(self) -> None:
        """Refuse a standalone server, then create the collections and indexes (idempotent)."""
        await self.require_transactions()
        async with self.op("create the indexes"):
            await create_indexes(self)

    async def check(self) -> bool:
        """A ping with a short timeout; never raises."""
        try:
            return await self.start_probe()
        except Exception:
            return False

    async def start_probe(self) -> bool:
        """:meth:`check`, except that a server that refuses our credentials raises
        :class:`Refused` (start-up then stops at once, saying so, instead of waiting its budget)."""
        try:
            with pymongo.timeout(remaining(self.timeout_seconds)):
                await self.db.command("ping")
        except OperationFailure as exc:
            refused_if_credentials(exc)
            return False
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        # an abort under way is given a moment to finish (it frees what the session holds on the
        # server; and pymongo leaks the socket of a connection attempt cancelled midway)
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=_SETTLE_GRACE_SECONDS)
        for task in list(self._settling):
            task.cancel()
        for task in list(self._settling):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    @contextlib.asynccontextmanager
    async def op(self, action: str, *, seconds: float | None = None) -> AsyncIterator[None]:
        """Do ``action`` within one time limit (``seconds``, else the database's timeout, cut to
        what is left of the request's deadline), once earlier abandoned sessions are settled;
        driver errors translated."""
        budget = remaining(self.timeout_seconds if seconds is None else seconds)
        with mongo_errors(action), pymongo.timeout(budget):
            await self._settled(action, budget)
            yield

    async def transaction(self, action: str, body: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run ``body(session)`` in one transaction with pymongo's ``with_transaction``: run
        again while it only hit write conflicts, within one time limit (``transaction_retry_seconds``
        cut to the request's deadline) that bounds every step, commit included. The body re-reads
        what it checks, so a retry after someone else's commit sees their versions and raises
        :class:`Conflict`. A session the server may still hold a transaction for is aborted in
        the background (module doc); a :class:`CommitOutcomeUnknown` carries :meth:`settled`."""
        try:
            return await self._transaction(action, body)
        except CommitOutcomeUnknown as exc:
            exc.settled = self.settled
            raise

    async def _transaction(self, action: str, body: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        async with self.op(action, seconds=self.transaction_retry_seconds):
            session = self.client.start_session()
            abandoned = False
            try:
                # majority: a committed token rotation or event survives a failover
                return await session.with_transaction(
                    body, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
                )
            except (PyMongoError, asyncio.CancelledError) as exc:
                abandoned = isinstance(exc, asyncio.CancelledError) or unreachable(exc)
                raise
            finally:
                if abandoned:
                    self._abandon(session)
                else:
                    await session.end_session()

    def _abandon(self, session: AsyncClientSession) -> None:
        # A context of its own: the request's (expired) time limits must not follow the task.
        task = asyncio.get_running_loop().create_task(
            self._kill(session), name="mongo: abort an abandoned session", context=contextvars.Context()
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _kill(self, session: AsyncClientSession) -> None:
        """``killSessions`` for ``session`` once the server answers (aborting its transaction and
        releasing what it holds). Gives up when the server refuses (it answered:
        nothing to wait for) or after ``abandoned_session_seconds`` (it has reaped it by then)."""
        try:
            retrying = AsyncRetrying(
                retry=retry_if_exception(unreachable),
                wait=wait_exponential(multiplier=0.05, max=0.5),
                stop=stop_after_delay(self.abandoned_session_seconds),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt, pymongo.timeout(self.timeout_seconds):
                    await self.client.admin.command("killSessions", [session.session_id])
        except PyMongoError as exc:
            log.warning(
                "could not abort an abandoned MongoDB transaction (%s); the server reaps it", type(exc).__name__
            )
        else:
            log.info("aborted a MongoDB transaction this process had to abandon")
        # The session is not ended: ending returns its id to the driver's pool, and a killed
        # session id must not carry anyone's next transaction. Dropped, it is never used again.

    async def settled(self) -> None:
        """Return once every session abandoned so far is killed (or given up on): the outcome
        of a commit that was :class:`CommitOutcomeUnknown` is then final."""
        while self._settling:
            await asyncio.wait(set(self._settling))

    async def _settled(self, action: str, budget: float) -> None:
        """Wait (at most ``budget``) until every abandoned session of this database is killed."""
        if not self._settling:
            return
        _, waiting = await asyncio.wait(set(self._settling), timeout=budget)
        if waiting:
            raise Unavailable(
                f"MongoDB has not answered since a transaction was abandoned; cannot {action} yet",
                metadata={"dependency": "mongo"},
            )

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

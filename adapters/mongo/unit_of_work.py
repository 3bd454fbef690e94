"""The unit of work on MongoDB: reads go straight to the collections, :meth:`commit` writes the
batch in ONE multi-document transaction.

Every connector and token write is conditional on the version the caller loaded (the policy of
:mod:`adapters.batch_writes`: an update or delete matching nothing, or an insert hitting a unique
index, is :class:`Conflict`), and the outbox events are inserted in the same transaction, so a
state change and its events are stored together or not at all.

Events are ordered per connector, without any document that every commit writes: see
:mod:`adapters.mongo.outbox_reader`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from adapters.batch_writes import Kind, Table, Write, connector_from_fields, plan
from adapters.codec import event_to_doc
from adapters.mongo.database import Doc, MongoDatabase, bson_time
from adapters.stored_tokens import SET_ASIDE, open_token, read_batch, summaries
from adapters.unit_of_work_base import Batch, BufferedUnitOfWork
from connector_core.model.connector import Connector
from connector_core.tokens import CensusTally, TokenCensus, TokenRecord, TokenState, TokenStatus, TokenSummary
from connector_core.tokens.refresh_deadline import RefreshWarning

#: earlier than any stored date: a lower bound that leaves out null (SecantusDB starts an index
#: range with no lower bound at null, and reads every record with no such date)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _not_set_aside(moment: datetime) -> Callable[[Doc], bool]:
    """Leaves out the records a batch read set aside (adapters.stored_tokens); no field = not.
    Checked here as the records stream in (they are few), not sent: a top-level ``$or`` in the
    query made SecantusDB plan no index and read every record on each refresher pass."""

    def keep(doc: Doc) -> bool:
        # stored dates have millisecond precision (rounded up), so this is the server's `$lte`
        return doc.get("set_aside_until") is None or doc["set_aside_until"] <= moment

    return keep


def _until(moment: datetime) -> Doc:
    """At or before ``moment``, as an exclusive bound: stored dates are whole milliseconds, so
    ``<= moment`` is ``<`` the millisecond after ``moment``'s. Sent as ``$lt``, never ``$lte``:
    SecantusDB's compound-index ranges leave out the records exactly at an inclusive upper bound
    (a token due at that very millisecond waited a pass; a warning was never found in a test)."""
    return {"$lt": _after(moment)}


def _after(moment: datetime) -> datetime:
    """The millisecond after ``moment``'s: ``< _after(moment)`` is ``<= moment`` for stored dates."""
    whole = moment - timedelta(microseconds=moment.microsecond % 1000)
    return whole + timedelta(milliseconds=1)


def _value(value: Any) -> Any:
    return bson_time(value) if isinstance(value, datetime) else value


def _renamed(fields: Mapping[str, Any]) -> Doc:
    """Batch fields as a document: the token ``id`` is the document's ``_id``, dates in BSON precision."""
    return {("_id" if name == "id" else name): _value(value) for name, value in fields.items()}


def _document(w: Write) -> Doc:
    assert w.fields is not None
    doc = _renamed(w.fields)
    con = w.subject
    if isinstance(con, Connector):
        # what the old service's readers look for
        doc |= {
            "orgId": con.org_id,
            "name": con.key,
            "isEnabled": con.is_enabled,
            "lastUpdatedBy": con.last_updated_by,
            "createdAt": bson_time(con.created_at),
            "updatedAt": bson_time(con.updated_at),
        }
    return doc


def _due(record: TokenRecord) -> datetime | None:
    return record.refresh_due_at


def _expires(record: TokenRecord) -> datetime | None:
    return record.tokens.expires_at


def _warn(record: TokenRecord) -> datetime | None:
    return record.refresh_warn_at


def _ident(record: TokenRecord) -> str:
    return record.id


#: the token census's time limit (seconds): it reads every token record
CENSUS_SECONDS = 30.0


class MongoUnitOfWork(BufferedUnitOfWork):
    """Reads go straight to the collections; :meth:`commit` writes the batch in one transaction."""

    def __init__(self, db: MongoDatabase) -> None:
        super().__init__()
        self._db = db

    def _connector(self, doc: Mapping[str, Any]) -> Connector:
        return connector_from_fields(self._db.conv, doc["state"], int(doc["version"]))

    def _token(self, doc: Mapping[str, Any]) -> TokenRecord:
        db = self._db
        return open_token(db.conv, db.sealer, str(doc["_id"]), doc.get("meta"), doc.get("material"), doc.get("version"))

    async def _set_aside(self, token_ids: list[str], moment: datetime) -> None:
        async with self._db.op("set unreadable token records aside"):
            await self._db.tokens.update_many(
                {"_id": {"$in": token_ids}}, {"$set": {"set_aside_until": bson_time(moment + SET_ASIDE)}}
            )

    async def _batch(
        self,
        action: str,
        query: Doc,
        order: list[tuple[str, int]],
        limit: int,
        moment: datetime,
        keep: Callable[[Doc], bool] | None = None,
        *,
        seconds: float | None = None,
    ) -> Sequence[TokenRecord]:
        """The first ``limit`` records of ``query`` in ``order``; with ``keep``, the first
        ``limit`` of them that ``keep`` accepts (read in batches of ``limit`` until enough).
        ``seconds``: its time limit, if not the database's."""

        async def fetch() -> list[Doc]:
            async with self._db.op(action, seconds=seconds):
                if keep is None:
                    return await self._db.tokens.find(query).sort(order).limit(limit).to_list()
                found: list[Doc] = []
                if limit <= 0:
                    return found
                cursor = self._db.tokens.find(query).sort(order).batch_size(limit)
                try:
                    async for doc in cursor:
                        if keep(doc):
                            found.append(doc)
                            if len(found) >= limit:
                                break
                finally:
                    await cursor.close()
                return found

        return await read_batch(fetch, self._token, lambda ids: self._set_aside(ids, moment))

    async def _load_connector(self, org_id: str, key: str) -> Connector | None:
        async with self._db.op("load a connector"):
            doc = await self._db.connectors.find_one({"org_id": org_id, "key": key})
        return None if doc is None else self._connector(doc)

    async def _list_connectors(self, org_id: str) -> Sequence[Connector]:
        async with self._db.op("list connectors"):
            docs = await self._db.connectors.find({"org_id": org_id}).sort("key", 1).to_list(None)
        return [self._connector(d) for d in docs]

    async def _load_token(self, token_id: str) -> TokenRecord | None:
        async with self._db.op("load a token record"):
            doc = await self._db.tokens.find_one({"_id": token_id})
        return None if doc is None else self._token(doc)

    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        async with self._db.op("load a token record"):
            doc = await self._db.tokens.find_one({"org_id": org_id, "connector_key": connector_key})
        return None if doc is None else self._token(doc)

    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        # Two queries, each with plain indexed conditions in the order of an index: records that
        # never failed (no backoff), and those whose backoff is over; the first ``limit`` of
        # both together. The backoff condition is the server's: during an outage most due
        # records rest, and reading them all here to skip them outlasted the op's time limit.
        # (An $or of both in one query made SecantusDB plan no index and read every record; so
        # did two ranges in one query: the second asks for the backoff range only, and a record
        # rests only after it was due, so its refresh_due_at is checked here, as a guard.)
        # Set-aside records are few: they are skipped here, as the records stream in.
        active = str(TokenStatus.ACTIVE)
        order = [("refresh_due_at", 1), ("_id", 1)]

        not_set_aside = _not_set_aside(moment)

        def ready(doc: Doc) -> bool:
            # stored dates have millisecond precision (rounded up), so this is the server's `$lte`
            due = doc.get("refresh_due_at") is not None and doc["refresh_due_at"] <= moment
            return due and not_set_aside(doc)

        action = "find tokens due for refresh"
        # the records that never failed, in windows of their due dates (adapters.mongo.read_windows)
        prefix: Doc = {"status": active, "next_attempt_at": None}
        found = await self._windowed(action, "due", prefix, "refresh_due_at", _due, limit, moment, ready)
        # bounded below too: SecantusDB's index range would start at null, and read every
        # record that never failed (measured: minutes at 1,000,000 records)
        resting: Doc = {"status": active, "next_attempt_at": {"$gte": _EPOCH, **_until(moment)}}
        found += await self._batch(action, resting, order, limit, moment, ready)
        return sorted(found, key=lambda r: (r.refresh_due_at or moment, r.id))[:limit]

    async def _windowed(
        self,
        action: str,
        key: str,
        prefix: Doc,
        field: str,
        when: Callable[[TokenRecord], datetime | None],
        limit: int,
        moment: datetime,
        keep: Callable[[Doc], bool],
    ) -> list[TokenRecord]:
        """The first ``limit`` records of ``prefix`` whose ``field`` is at or before ``moment``,
        in the order of ``(field, _id)``, read in windows of ``field`` (one read, named ``key``)."""
        order = [(field, 1), ("_id", 1)]
        # a process's first pass reads the whole range (no floor yet): off the request path, it
        # has the census's time limit, or on SecantusDB a large due set would fail it each time
        first = self._db.windows.floor(key) is None
        seconds = max(self._db.timeout_seconds, CENSUS_SECONDS) if first else None

        def fetch(dates: Doc, n: int) -> Awaitable[Sequence[TokenRecord]]:
            return self._batch(action, {**prefix, field: dates}, order, n, moment, keep, seconds=seconds)

        return await self._db.windows.first(key, _EPOCH, _after(moment), limit, fetch, when, _ident)

    # The refresher's two other reads, one find per status with each condition plain and in the
    # order of an index: a status condition as `$ne` or `$in` (or a top-level `$or`) made
    # SecantusDB plan no index and read every record on each pass.

    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        keep, found = _not_set_aside(moment), []
        for status in TokenStatus:
            if status is not TokenStatus.REVOKED:
                prefix: Doc = {"expiry_notified": False, "status": str(status)}
                key = f"expired {status}"
                found += await self._windowed(
                    "find expired tokens", key, prefix, "expires_at", _expires, limit, moment, keep
                )
        return sorted(found, key=lambda r: (r.tokens.expires_at or moment, r.id))[:limit]

    async def _tokens_warn_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        what = "find tokens whose refresh-token warning is due"
        keep, found = _not_set_aside(moment), []
        for status in (TokenStatus.ACTIVE, TokenStatus.PAUSED):
            prefix: Doc = {"status": str(status)}
            key = f"warn {status}"
            found += await self._windowed(what, key, prefix, "refresh_warn_at", _warn, limit, moment, keep)
        return sorted(found, key=lambda r: (r.refresh_warn_at or moment, r.id))[:limit]

    async def _token_summaries(self, org_id: str) -> Sequence[TokenSummary]:
        async with self._db.op("list token records"):
            docs = await self._db.tokens.find({"org_id": org_id}, projection={"meta": 1}).to_list(None)
        found = summaries(self._db.conv, ((str(d["_id"]), d.get("meta")) for d in docs))
        return sorted(found, key=lambda t: t.connector_key)

    async def _token_census(self, now: datetime) -> TokenCensus:
        # a scan of every record, off the request path (the metrics serve the last reading
        # meanwhile): the time limit meant for a request's calls would fail it at scale
        async with self._db.op("count token records", seconds=max(self._db.timeout_seconds, CENSUS_SECONDS)):
            rows = await (await self._db.tokens.aggregate(_census_pipeline(now))).to_list(None)
        tally = CensusTally()
        for row in rows:
            key, state, warning = row["_id"]["key"], row["_id"]["state"], row["_id"].get("warning")
            tally.state(key, TokenState(state), int(row["count"]))
            tally.warning(key, None if warning is None else RefreshWarning(warning), int(row["count"]))
            soonest = row.get("soonest")
            tally.expiry(key, soonest if soonest is None or soonest.tzinfo else soonest.replace(tzinfo=UTC))
        return tally.census()

    def _collection(self, table: Table) -> AsyncCollection[Doc]:
        return self._db.connectors if table is Table.CONNECTORS else self._db.tokens

    async def _applied(self, w: Write, s: AsyncClientSession) -> bool:
        """Run one conditional write in the transaction; False when it did not apply."""
        collection = self._collection(w.table)
        if w.kind is Kind.INSERT:
            try:
                await collection.insert_one(_document(w), session=s)
            except DuplicateKeyError:
                return False
            return True
        where = {**_renamed(w.match), "version": w.expected_version}
        if w.kind is Kind.DELETE:
            return (await collection.delete_one(where, session=s)).deleted_count == 1
        fields = {k: v for k, v in _document(w).items() if k != "_id"}
        return (await collection.update_one(where, {"$set": fields}, session=s)).matched_count == 1

    async def _apply(self, batch: Batch) -> None:
        db = self._db
        # Serialise and seal before the transaction, which should be short.
        writes = plan(batch, db.conv, db.sealer)
        stored_at = bson_time(db.clock.now())
        events = [(e, event_to_doc(db.conv, e)) for e in batch.events]
        per_key = sorted(Counter(e.partition_key for e in batch.events).items())

        async def write(s: AsyncClientSession) -> None:
            # The connectors' event counters first: a commit that lost the race for one learns
            # it at once (write conflict, retried) instead of after all its writes.
            next_seq: dict[str, int] = {}
            for key, count in per_key:
                next_seq[key] = await db.next_value(f"outbox_seq:{key}", s, count=count) - count
            for w in writes:
                if not await self._applied(w, s):
                    raise w.refused()
            if not events:
                return
            docs = []
            for event, doc in events:
                next_seq[event.partition_key] += 1
                docs.append(
                    {
                        "_id": ObjectId(),
                        "key_seq": next_seq[event.partition_key],
                        "topic": event.topic,
                        "partition_key": event.partition_key,
                        "event_type": event.event_type,
                        "event": doc,
                        "published": False,
                        "stored_at": stored_at,
                    }
                )
            await db.outbox.insert_many(docs, session=s)

        await db.transaction("commit a unit of work", write)


def _census_pipeline(now: datetime) -> list[Doc]:
    """The rule of ``connector_core.tokens.token_state`` and ``.refresh_deadline.warning_at`` as
    one aggregation: count per (connector key, state, warning), soonest ACTIVE expiry."""
    active, paused = str(TokenStatus.ACTIVE), str(TokenStatus.PAUSED)
    is_active = {"$eq": ["$status", active]}
    live = {"$in": ["$status", [active, paused]]}
    has_deadline = {"$gt": ["$refresh_deadline", None]}  # null sorts below every date
    is_due = {"$and": [{"$gt": ["$refresh_due_at", None]}, {"$lte": ["$refresh_due_at", now]}]}

    def within(seconds: float) -> Doc:
        return {"$lte": ["$refresh_deadline", now + timedelta(seconds=seconds)]}

    state = {
        "$switch": {
            "branches": [
                {"case": {"$and": [is_active, {"$gt": ["$next_attempt_at", now]}]}, "then": "resting"},
                {"case": {"$and": [is_active, is_due]}, "then": "due"},
                {"case": is_active, "then": "active"},
                {"case": {"$eq": ["$status", paused]}, "then": "paused"},
                {"case": {"$eq": ["$status", str(TokenStatus.NEEDS_REAUTHENTICATION)]}, "then": "needs_reauth"},
            ],
            "default": "revoked",
        }
    }
    warning = {
        "$switch": {
            "branches": [
                {"case": {"$not": [{"$and": [live, has_deadline]}]}, "then": None},
                {"case": within(0), "then": "expired"},
                {"case": within(86400), "then": "within1Day"},
                {"case": within(7 * 86400), "then": "within7Days"},
            ],
            "default": None,
        }
    }
    return [
        {
            "$group": {
                "_id": {"key": "$connector_key", "state": state, "warning": warning},
                "count": {"$sum": 1},
                "soonest": {"$min": {"$cond": [is_active, "$expires_at", None]}},
            }
        }
    ]

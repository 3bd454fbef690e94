"""The unit of work on SQLite: reads go straight to the file, :meth:`commit` writes the whole
batch (connectors, tokens, outbox events) in one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.batch_writes import Kind, Write, connector_from_fields, plan
from adapters.codec import event_to_doc
from adapters.event_wire import stored_wire
from adapters.sqlite.change_stamp import bump_org_versions
from adapters.sqlite.database import SQLiteDatabase
from adapters.stored_tokens import SET_ASIDE, open_token, read_batch, summaries
from adapters.unit_of_work_base import Batch, BufferedUnitOfWork
from connector_core.model.connector import Connector
from connector_core.tokens import CensusTally, TokenCensus, TokenRecord, TokenState, TokenStatus, TokenSummary
from connector_core.tokens.refresh_deadline import RefreshWarning

#: the batch fields stored under another column name
_COLUMNS = {"state": "doc"}
_TOKEN_COLUMNS = "id, meta, material, version"


def _value(value: Any) -> Any:
    """A field as SQLite stores it: datetimes as POSIX seconds, booleans as 0/1, documents as JSON."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return value


def token_row(c: sqlite3.Connection, token_id: str) -> Sequence[Any] | None:
    """The stored columns of one token (for :func:`token_from_row`), or None."""
    row: Sequence[Any] | None = c.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id=?",  # noqa: S608 - our names
        (token_id,),
    ).fetchone()
    return row


def token_from_row(db: SQLiteDatabase, row: Sequence[Any]) -> TokenRecord:
    """The record of a row of :data:`_TOKEN_COLUMNS` (:class:`UnreadableRecord` when it cannot be read)."""
    token_id, meta, material, version = row
    return open_token(db.conv, db.sealer, token_id, meta, material, version)


def _row(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {_COLUMNS.get(name, name): _value(value) for name, value in fields.items()}


def _applied(c: sqlite3.Connection, w: Write) -> bool:
    """Run one conditional write; False when it did not apply (the caller raises the conflict).
    Table and column names come from :mod:`adapters.batch_writes`, never from input."""
    table = w.table.value
    if w.kind is Kind.INSERT:
        assert w.fields is not None
        row = _row(w.fields)
        columns, names = ", ".join(row), ", ".join(f":{k}" for k in row)
        try:
            c.execute(f"INSERT INTO {table} ({columns}) VALUES ({names})", row)  # noqa: S608 - our names
        except sqlite3.IntegrityError:
            return False
        return True
    where = " AND ".join(f"{k}=:where_{k}" for k in w.match) + " AND version=:expected"
    params = {f"where_{k}": v for k, v in w.match.items()} | {"expected": w.expected_version}
    if w.kind is Kind.DELETE:
        return c.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount == 1  # noqa: S608 - our names
    assert w.fields is not None
    row = _row(w.fields)
    sets = ", ".join(f"{k}=:{k}" for k in row if k not in w.match)
    return c.execute(f"UPDATE {table} SET {sets} WHERE {where}", row | params).rowcount == 1  # noqa: S608


class SQLiteUnitOfWork(BufferedUnitOfWork):
    def __init__(self, db: SQLiteDatabase) -> None:
        super().__init__()
        self._db = db

    async def _load_connector(self, org_id: str, key: str) -> Connector | None:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT doc, version FROM connectors WHERE org_id=? AND key=?", (org_id, key)
            ).fetchone()
        )
        return None if row is None else self._connector(row)

    async def _list_connectors(self, org_id: str) -> Sequence[Connector]:
        rows = await self._db.run(
            lambda c: c.execute("SELECT doc, version FROM connectors WHERE org_id=? ORDER BY key", (org_id,)).fetchall()
        )
        return [self._connector(r) for r in rows]

    def _connector(self, row: Sequence[Any]) -> Connector:
        return connector_from_fields(self._db.conv, json.loads(row[0]), int(row[1]))

    def _token(self, row: Sequence[Any]) -> TokenRecord:
        return token_from_row(self._db, row)

    async def _set_aside(self, token_ids: list[str], moment: datetime) -> None:
        until = (moment + SET_ASIDE).timestamp()
        await self._db.write(
            lambda c: c.executemany("UPDATE tokens SET set_aside_until=? WHERE id=?", [(until, i) for i in token_ids])
        )

    async def _load_token(self, token_id: str) -> TokenRecord | None:
        row = await self._db.run(lambda c: token_row(c, token_id))
        return None if row is None else self._token(row)

    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        row = await self._db.run(
            lambda c: c.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE org_id=? AND connector_key=?",  # noqa: S608
                (org_id, connector_key),
            ).fetchone()
        )
        return None if row is None else self._token(row)

    async def _batch(
        self, where: str, params: tuple[Any, ...], order: str, limit: int, moment: datetime
    ) -> Sequence[TokenRecord]:
        """The readable records matching ``where`` (our SQL, never input) that are not set
        aside at ``moment``, ordered, at most ``limit`` (:func:`~adapters.stored_tokens.read_batch`)."""
        t = moment.timestamp()
        sql = (
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE {where}"  # noqa: S608
            f" AND (set_aside_until IS NULL OR set_aside_until <= ?) ORDER BY {order} LIMIT ?"
        )

        async def fetch() -> list[Any]:
            return await self._db.run(lambda c: c.execute(sql, (*params, t, limit)).fetchall())

        return await read_batch(fetch, self._token, lambda ids: self._set_aside(ids, moment))

    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        t = moment.timestamp()
        where = "status=? AND refresh_due_at <= ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        return await self._batch(where, (str(TokenStatus.ACTIVE), t, t), "refresh_due_at, id", limit, moment)

    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        where = "expiry_notified=0 AND status!=? AND expires_at <= ?"
        params = (str(TokenStatus.REVOKED), moment.timestamp())
        return await self._batch(where, params, "expires_at, id", limit, moment)

    async def _tokens_warn_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        where = "refresh_warn_at <= ? AND status IN (?, ?)"
        params = (moment.timestamp(), str(TokenStatus.ACTIVE), str(TokenStatus.PAUSED))
        return await self._batch(where, params, "refresh_warn_at, id", limit, moment)

    async def _token_summaries(self, org_id: str) -> Sequence[TokenSummary]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT id, meta FROM tokens WHERE org_id=? ORDER BY connector_key", (org_id,)
            ).fetchall()
        )
        return summaries(self._db.conv, rows)

    async def _token_census(self, now: datetime) -> TokenCensus:
        t = now.timestamp()
        params = {
            "now": t,
            "day": t + 86400,
            "week": t + 7 * 86400,
            "active": str(TokenStatus.ACTIVE),
            "paused": str(TokenStatus.PAUSED),
            "reauth": str(TokenStatus.NEEDS_REAUTHENTICATION),
        }
        # the rule of connector_core.tokens.token_state and .refresh_deadline.warning_at, in SQL
        sql = """
            SELECT connector_key,
              CASE WHEN status = :active AND next_attempt_at > :now THEN 'resting'
                   WHEN status = :active AND refresh_due_at <= :now THEN 'due'
                   WHEN status = :active THEN 'active'
                   WHEN status = :paused THEN 'paused'
                   WHEN status = :reauth THEN 'needs_reauth'
                   ELSE 'revoked' END AS state,
              CASE WHEN status NOT IN (:active, :paused) OR refresh_deadline IS NULL THEN NULL
                   WHEN refresh_deadline <= :now THEN 'expired'
                   WHEN refresh_deadline <= :day THEN 'within1Day'
                   WHEN refresh_deadline <= :week THEN 'within7Days' END AS warning,
              COUNT(*), MIN(CASE WHEN status = :active THEN expires_at END)
            FROM tokens GROUP BY 1, 2, 3"""
        # a scan of every record: aside, so the service's statements do not wait for it
        rows = await self._db.read_aside(lambda c: c.execute(sql, params).fetchall())
        tally = CensusTally()
        for key, state, warning, count, soonest in rows:
            tally.state(key, TokenState(state), count)
            tally.warning(key, None if warning is None else RefreshWarning(warning), count)
            tally.expiry(key, None if soonest is None else datetime.fromtimestamp(soonest, UTC))
        return tally.census()

    async def _apply(self, batch: Batch) -> None:
        db = self._db
        # Serialise and seal outside the write lock.
        writes = plan(batch, db.conv, db.sealer)
        event_rows = [
            (e.topic, e.partition_key, e.event_type, json.dumps(event_to_doc(db.conv, e)), stored_wire(e))
            for e in batch.events
        ]

        def write(c: sqlite3.Connection) -> None:
            for w in writes:
                if not _applied(c, w):
                    raise w.refused()
            # what the orgs read changed: cached answers built from it are stale (change_stamp)
            bump_org_versions(c, (w.subject.org_id for w in writes))
            c.executemany(
                "INSERT INTO outbox (topic, partition_key, event_type, doc, record) VALUES (?, ?, ?, ?, ?)",
                event_rows,
            )

        await db.write(write)

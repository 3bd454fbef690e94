"""Every storage port on stdlib ``sqlite3``, in one database file (WAL mode).

Several processes may share the file: writes run in ``BEGIN IMMEDIATE`` transactions with
version checks, so a unit of work's state change and its outbox events are stored together
or not at all, and a stale writer gets :class:`Conflict`. Token material and OAuth state are
sealed (AES-256-GCM) before they reach the file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

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
from connector_core.ports.kv_store import Versioned
from connector_core.ports.lock import Lease
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.ports.outbox import OutboxMessage
from connector_core.tokens import TokenRecord, TokenSet, TokenStatus

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS connectors (
    org_id TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    is_enabled INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (org_id, key));
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, connector_key TEXT NOT NULL,
    status TEXT NOT NULL, refresh_due_at REAL, next_attempt_at REAL, expires_at REAL,
    expiry_notified INTEGER NOT NULL, version INTEGER NOT NULL,
    meta TEXT NOT NULL, material TEXT NOT NULL, UNIQUE (org_id, connector_key));
CREATE INDEX IF NOT EXISTS tokens_due ON tokens (status, refresh_due_at);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expiry_notified, expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition_key TEXT NOT NULL,
    event_type TEXT NOT NULL, doc TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published, seq);
CREATE INDEX IF NOT EXISTS outbox_by_key ON outbox (partition_key, seq);
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash TEXT PRIMARY KEY, expires_at REAL NOT NULL, sealed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, fencing INTEGER NOT NULL, expires_at REAL NOT NULL);
"""


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class SQLiteDatabase:
    """One database file. Statements run on a private thread, one connection, so the event
    loop never blocks on disk; other processes may open the same file."""

    def __init__(self, path: str | Path, *, sealer: Sealer, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.sealer = sealer
        self.conv = make_json_converter()
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteDatabase(path={self.path!r})"

    def _connection(self) -> sqlite3.Connection:
        with self._open_lock:
            if self._conn is None:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout_ms / 1000,
                )
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.executescript(SCHEMA)
                self._conn = conn
            return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread; driver errors become ours."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(self._connection()))
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"SQLite database is unavailable: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise Unavailable(f"SQLite database error: {type(exc).__name__}") from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any error)."""

        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(tx)

    async def check(self) -> bool:
        try:
            await self.run(lambda c: c.execute("SELECT 1").fetchone())
        except Unavailable:
            return False
        return True

    async def aclose(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            with self._open_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        if self._conn is not None:
            await self.run(close)
        self._executor.shutdown(wait=True)

    # -- token rows ------------------------------------------------------------------------

    def token_row(self, record: TokenRecord, version: int) -> dict[str, Any]:
        meta, sealed = seal_token_record(self.conv, self.sealer, record)
        return {
            "id": record.id,
            "org_id": record.org_id,
            "connector_key": record.connector_key,
            "status": str(record.status),
            "refresh_due_at": _ts(record.refresh_due_at),
            "next_attempt_at": _ts(record.next_attempt_at),
            "expires_at": _ts(record.tokens.expires_at),
            "expiry_notified": int(record.expiry_notified),
            "version": version,
            "meta": json.dumps(meta),
            "material": sealed,
        }

    def token_from_row(self, row: Sequence[Any]) -> TokenRecord:
        token_id, meta, material, version = row
        return open_token_record(self.conv, self.sealer, token_id, json.loads(meta), material, int(version))


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
        doc = json.loads(row[0])
        doc["version"] = row[1]
        return connector_from_doc(self._db.conv, doc)

    async def _load_token(self, token_id: str) -> TokenRecord | None:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT id, meta, material, version FROM tokens WHERE id=?",
                (token_id,),
            ).fetchone()
        )
        return None if row is None else self._token(row)

    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT id, meta, material, version FROM tokens WHERE org_id=? AND connector_key=?",
                (org_id, connector_key),
            ).fetchone()
        )
        return None if row is None else self._token(row)

    def _token(self, row: Sequence[Any]) -> TokenRecord:
        return self._db.token_from_row(row)

    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        t = moment.timestamp()
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT id, meta, material, version FROM tokens"
                " WHERE status=? AND refresh_due_at <= ?"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                " ORDER BY refresh_due_at, id LIMIT ?",
                (str(TokenStatus.ACTIVE), t, t, limit),
            ).fetchall()
        )
        return [self._token(r) for r in rows]

    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT id, meta, material, version FROM tokens"
                " WHERE expiry_notified=0 AND status!=? AND expires_at <= ?"
                " ORDER BY expires_at, id LIMIT ?",
                (str(TokenStatus.REVOKED), moment.timestamp(), limit),
            ).fetchall()
        )
        return [self._token(r) for r in rows]

    async def _apply(self, batch: Batch) -> None:
        db = self._db
        # Serialise and seal outside the write lock.
        connector_rows = []
        for sc in batch.connectors:
            doc = connector_to_doc(db.conv, sc.connector)
            doc.pop("version", None)
            connector_rows.append((sc, json.dumps(doc)))
        token_rows = [
            (st, None if st.op is Op.DELETE else db.token_row(st.record, st.expected_version + 1))
            for st in batch.tokens
        ]
        event_rows = [
            (e.topic, e.partition_key, e.event_type, json.dumps(event_to_doc(db.conv, e))) for e in batch.events
        ]

        def write(c: sqlite3.Connection) -> None:
            for sc, doc_json in connector_rows:
                con = sc.connector
                if sc.op is Op.ADD:
                    try:
                        c.execute(
                            "INSERT INTO connectors (org_id, key, version, is_enabled, doc) VALUES (?, ?, 1, ?, ?)",
                            (con.org_id, con.key, int(con.is_enabled), doc_json),
                        )
                    except sqlite3.IntegrityError:
                        raise Conflict(f"connector {con.key} already exists; retry") from None
                else:
                    cur = c.execute(
                        "UPDATE connectors SET version=version+1, is_enabled=?, doc=?"
                        " WHERE org_id=? AND key=? AND version=?",
                        (int(con.is_enabled), doc_json, con.org_id, con.key, sc.expected_version),
                    )
                    if cur.rowcount != 1:
                        raise Conflict(f"connector {con.key} was changed by someone else; retry")
            for st, row in token_rows:
                rec = st.record
                if st.op is Op.DELETE:
                    cur = c.execute("DELETE FROM tokens WHERE id=? AND version=?", (rec.id, st.expected_version))
                    if cur.rowcount != 1:
                        raise Conflict("token record was changed by someone else; retry")
                    continue
                assert row is not None
                if st.op is Op.ADD:
                    try:
                        c.execute(
                            "INSERT INTO tokens (id, org_id, connector_key, status,"
                            " refresh_due_at, next_attempt_at, expires_at, expiry_notified,"
                            " version, meta, material)"
                            " VALUES (:id, :org_id, :connector_key, :status, :refresh_due_at,"
                            " :next_attempt_at, :expires_at, :expiry_notified, :version, :meta,"
                            " :material)",
                            row,
                        )
                    except sqlite3.IntegrityError:
                        raise Conflict("this connector already has a token record") from None
                else:
                    cur = c.execute(
                        "UPDATE tokens SET status=:status, refresh_due_at=:refresh_due_at,"
                        " next_attempt_at=:next_attempt_at, expires_at=:expires_at,"
                        " expiry_notified=:expiry_notified, version=:version, meta=:meta,"
                        " material=:material WHERE id=:id AND version=:expected",
                        {**row, "expected": st.expected_version},
                    )
                    if cur.rowcount != 1:
                        raise Conflict("token record was changed by someone else; retry")
            c.executemany(
                "INSERT INTO outbox (topic, partition_key, event_type, doc) VALUES (?, ?, ?, ?)",
                event_rows,
            )

        await db.write(write)


class SQLiteOutboxReader:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def _messages(self, rows: Sequence[Sequence[Any]]) -> list[OutboxMessage]:
        return [OutboxMessage(r[0], event_from_doc(self._db.conv, json.loads(r[1]))) for r in rows]

    async def pending(self, limit: int) -> Sequence[OutboxMessage]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT seq, doc FROM outbox WHERE published=0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        )
        return self._messages(rows)

    async def mark_published(self, seqs: Sequence[int]) -> None:
        params = [(s,) for s in seqs]
        await self._db.write(lambda c: c.executemany("UPDATE outbox SET published=1 WHERE seq=?", params))

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        if org_id is None:
            query, params = "SELECT seq, doc FROM outbox ORDER BY seq DESC LIMIT ?", (limit,)
        else:
            # partition keys are "org:connector": one org's keys sort between "org:" and "org;"
            query = (
                "SELECT seq, doc FROM outbox WHERE partition_key >= ? AND partition_key < ? ORDER BY seq DESC LIMIT ?"
            )
            params = (f"{org_id}:", f"{org_id};", limit)  # type: ignore[assignment]
        rows = await self._db.run(
            lambda c: c.execute(f"SELECT seq, doc FROM ({query}) ORDER BY seq", params).fetchall()  # noqa: S608
        )
        return self._messages(rows)

    async def prune(self, keep: int, *, published_only: bool) -> int:
        only = " AND published=1" if published_only else ""
        return await self._db.write(
            lambda c: (
                c.execute(
                    f"DELETE FROM outbox WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM outbox) - ?{only}",  # noqa: S608
                    (max(0, keep),),
                ).rowcount
            )
        )


class SQLiteOAuthStateStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def put(self, pending: PendingAuthorization) -> None:
        sealed = seal_pending(self._db.conv, self._db.sealer, pending)
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO oauth_states (state_hash, expires_at, sealed) VALUES (?, ?, ?)",
                (pending.state_hash, pending.expires_at.timestamp(), sealed),
            )
        )

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        def take(c: sqlite3.Connection) -> str | None:
            row = c.execute("DELETE FROM oauth_states WHERE state_hash=? RETURNING sealed", (state_hash,)).fetchone()
            return None if row is None else str(row[0])

        sealed = await self._db.write(take)
        if sealed is None:
            return None
        return open_pending(self._db.conv, self._db.sealer, state_hash, sealed)

    async def purge_expired(self, moment: datetime) -> int:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM oauth_states WHERE expires_at < ?", (moment.timestamp(),)).rowcount
        )


class SQLiteKeyValueStore:
    """Plain key-value rows with a global revision counter (wrap it in the encrypted store)."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def get(self, key: str) -> Versioned | None:
        row = await self._db.run(lambda c: c.execute("SELECT value, revision FROM kv WHERE key=?", (key,)).fetchone())
        return None if row is None else Versioned(row[0], row[1])

    @staticmethod
    def _check(c: sqlite3.Connection, key: str, expected: int | None) -> None:
        if expected is None:
            return
        row = c.execute("SELECT revision FROM kv WHERE key=?", (key,)).fetchone()
        if (row[0] if row else 0) != expected:
            raise Conflict(f"key {key!r} changed concurrently")

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        def put(c: sqlite3.Connection) -> int:
            self._check(c, key, expected_revision)
            revision = _next_counter(c, "kv_revision")
            c.execute(
                "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value=excluded.value, revision=excluded.revision",
                (key, value, revision),
            )
            return revision

        return await self._db.write(put)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            self._check(c, key, expected_revision)
            return c.execute("DELETE FROM kv WHERE key=?", (key,)).rowcount == 1

        return await self._db.write(delete)

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT key, value, revision FROM kv WHERE key LIKE ? ESCAPE '\\' ORDER BY key",
                (escaped + "%",),
            ).fetchall()
        )
        return {r[0]: Versioned(r[1], r[2]) for r in rows}


def _next_counter(c: sqlite3.Connection, name: str) -> int:
    row = c.execute(
        "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name)"
        " DO UPDATE SET value=value+1 RETURNING value",
        (name,),
    ).fetchone()
    return int(row[0])


class SQLiteLeaseLock:
    """Leases shared by every process on the file; fencing tokens only grow."""

    def __init__(self, db: SQLiteDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        now = self._clock.now()
        owner = secrets.token_hex(16)

        def acquire(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT expires_at FROM leases WHERE name=?", (name,)).fetchone()
            if row is not None and row[0] > now.timestamp():
                return None
            fence = _next_counter(c, f"fence:{name}")
            c.execute(
                "INSERT INTO leases (name, owner, fencing, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner=excluded.owner,"
                " fencing=excluded.fencing, expires_at=excluded.expires_at",
                (name, owner, fence, now.timestamp() + ttl_seconds),
            )
            return fence

        fence = await self._db.write(acquire)
        if fence is None:
            return None
        return Lease(name, owner, fence, now + timedelta(seconds=ttl_seconds))

    async def release(self, lease: Lease) -> bool:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM leases WHERE name=? AND owner=?", (lease.name, lease.owner)).rowcount == 1
        )

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_seconds)
        done = await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE leases SET expires_at=? WHERE name=? AND owner=? AND expires_at>?",
                    (expires.timestamp(), lease.name, lease.owner, now.timestamp()),
                ).rowcount
                == 1
            )
        )
        if not done:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, lease.fencing_token, expires)


__all__ = [
    "UTC",
    "SQLiteDatabase",
    "SQLiteKeyValueStore",
    "SQLiteLeaseLock",
    "SQLiteOAuthStateStore",
    "SQLiteOutboxReader",
    "SQLiteUnitOfWork",
    "TokenSet",
    "functools",
]

"""One SQLite database file (WAL mode) holding every storage table, and the one place where
``sqlite3`` errors become ours.

Several processes may share the file: writes run in ``BEGIN IMMEDIATE`` transactions with
version checks, so a unit of work's state change and its outbox events are stored together
or not at all, and a stale writer gets :class:`Conflict`. Token material and OAuth state are
sealed (AES-256-GCM) before they reach the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from adapters.codec import make_json_converter
from adapters.sealing import Sealer
from adapters.sqlite.aside_reads import AsideReads
from adapters.sqlite.statement_queue import StatementQueue
from connector_core.errors import Unavailable

if TYPE_CHECKING:
    from adapters.sqlite.change_stamp import SQLiteChangeStamp

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS connectors (
    org_id TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    is_enabled INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (org_id, key));
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, connector_key TEXT NOT NULL,
    status TEXT NOT NULL, refresh_due_at REAL, next_attempt_at REAL, expires_at REAL,
    expiry_notified INTEGER NOT NULL, version INTEGER NOT NULL,
    meta TEXT NOT NULL, material TEXT NOT NULL, refresh_deadline REAL, refresh_warn_at REAL,
    set_aside_until REAL,
    UNIQUE (org_id, connector_key));
CREATE INDEX IF NOT EXISTS tokens_due ON tokens (status, refresh_due_at);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expiry_notified, expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition_key TEXT NOT NULL,
    event_type TEXT NOT NULL, doc TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0, wire BLOB,
    record BLOB);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published, seq);
DROP INDEX IF EXISTS outbox_by_key;
CREATE INDEX IF NOT EXISTS outbox_org ON outbox (json_extract(doc, '$.org_id'), seq);
CREATE INDEX IF NOT EXISTS outbox_event_id ON outbox (json_extract(doc, '$.event_id'));
CREATE TABLE IF NOT EXISTS outbox_set_aside (seq INTEGER PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_unpublished (seq INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash TEXT PRIMARY KEY, expires_at REAL NOT NULL, sealed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
"""


def _use_wal(conn: sqlite3.Connection, seconds: float) -> None:
    """Switch a fresh file to WAL. The switch needs the file to itself and SQLite does not wait
    for it (no busy handler), so a second process opening the file at the same moment is told
    'locked': try again, within the busy timeout."""
    for attempt in Retrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)),
        wait=wait_exponential(multiplier=0.005, max=0.1),
        stop=stop_after_delay(seconds),
        reraise=True,
    ):
        with attempt:
            conn.execute("PRAGMA journal_mode=WAL")


def _create_schema(conn: sqlite3.Connection) -> None:
    """In one write transaction: processes opening a fresh file together wait for each other
    (busy timeout) instead of failing on the other's schema change."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: Which outbox events are pending is kept in ``outbox_unpublished`` (a seq per row), not in each
#: outbox row: marking a batch published deletes a few pages of seqs instead of rewriting every
#: stored event (and its index entry). Triggers keep it right whoever writes the outbox (a
#: process of an earlier version too): an event is pending from its insert until it is marked
#: published or set aside (``published`` 1 or 2, which the relay of an earlier version writes).
_UNPUBLISHED_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS outbox_unpublished_add AFTER INSERT ON outbox WHEN NEW.published=0"
    " BEGIN INSERT OR IGNORE INTO outbox_unpublished (seq) VALUES (NEW.seq); END",
    "CREATE TRIGGER IF NOT EXISTS outbox_unpublished_done AFTER UPDATE OF published ON outbox WHEN NEW.published<>0"
    " BEGIN DELETE FROM outbox_unpublished WHERE seq=NEW.seq; END",
)


def _keep_unpublished(conn: sqlite3.Connection) -> None:
    """Files made before pending events were listed in ``outbox_unpublished``: list those still
    unpublished (``published = 0`` then meant pending), once, when the triggers are created;
    checked under the write lock, as another process may be doing the same."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
        if "outbox_unpublished_add" not in have:
            conn.execute("INSERT OR IGNORE INTO outbox_unpublished (seq) SELECT seq FROM outbox WHERE published=0")
        for statement in _UNPUBLISHED_TRIGGERS:
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _drop_lease_fencing(conn: sqlite3.Connection) -> None:
    """Files created while leases carried fencing tokens: drop that column and its counters
    (one per lock name, kept forever). Checked again under the write lock: another process
    opening the same file may have done it."""

    def fenced() -> bool:
        return any(row[1] == "fencing" for row in conn.execute("PRAGMA table_info(leases)"))

    if not fenced():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if fenced():
            conn.execute("ALTER TABLE leases DROP COLUMN fencing")
            conn.execute("DELETE FROM counters WHERE name LIKE 'fence:%'")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: token columns added after the first release: (name, type), added to older files on open
_ADDED_COLUMNS = {
    "tokens": (("refresh_deadline", "REAL"), ("refresh_warn_at", "REAL"), ("set_aside_until", "REAL")),
    # the event's broker record, kept when it is written (adapters.event_wire.stored_wire);
    # ``wire``: its headers and value only, as versions of 2026-12-02 to 12-04 kept it (read
    # still, never written: those versions encode an event without it from its document)
    "outbox": (("wire", "BLOB"), ("record", "BLOB")),
}
_ADDED_INDEX = "CREATE INDEX IF NOT EXISTS tokens_warn ON tokens (refresh_warn_at)"


def _add_columns(conn: sqlite3.Connection) -> None:
    """Files made before refresh-token lineages were kept (or records could be set aside, see
    adapters.stored_tokens), or before outbox events kept their broker record: add those
    columns (NULL until each record is next written; an outbox event without one is encoded
    when published) and the index, in one write transaction (another process opening the same
    file waits, then finds them there)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")  # our names, not input
        conn.execute(_ADDED_INDEX)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    """sqlite3's errors as ours: :class:`Unavailable`."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise Unavailable(f"SQLite database is unavailable: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise Unavailable(f"SQLite database error: {type(exc).__name__}") from exc


def text(raw: bytes) -> str:
    """Stored text as the connection reads it (see ``text_factory`` below)."""
    return raw.decode("utf-8", "surrogateescape")


def next_counter(c: sqlite3.Connection, name: str) -> int:
    """Add one to counter ``name`` inside the caller's transaction; the new value."""
    row = c.execute(
        "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name)"
        " DO UPDATE SET value=value+1 RETURNING value",
        (name,),
    ).fetchone()
    return int(row[0])


class SQLiteDatabase:
    """One database file. Statements run on a private thread, one connection, so the event
    loop never blocks on disk; other processes may open the same file."""

    def __init__(self, path: str | Path, *, sealer: Sealer, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.sealer = sealer
        self.conv = make_json_converter()
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._queue = StatementQueue(self._connection)
        self._open_lock = threading.Lock()
        #: opened on first use, after the schema exists (the first statement run creates it)
        self._stamp: SQLiteChangeStamp | None = None
        self._aside: AsideReads | None = None
        self._closing = False

    @property
    def stamp(self) -> SQLiteChangeStamp:
        """The file's change stamp (a connection of its own, closed with the database)."""
        if self._stamp is None:
            from adapters.sqlite.change_stamp import SQLiteChangeStamp

            self._stamp = SQLiteChangeStamp(self.path)
        return self._stamp

    def __repr__(self) -> str:
        return f"SQLiteDatabase(path={self.path!r})"

    async def read_aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` (a long read: a scan of a whole table) on a read-only connection of its
        own (:mod:`adapters.sqlite.aside_reads`), so the statements of the database thread do
        not wait for it; on the database thread for an in-memory database."""
        if self.path == ":memory:":
            return await self.run(fn)
        if self._conn is None:
            await self.run(lambda c: None)  # the file and its schema exist before it is read
        with self._open_lock:
            if self._queue.closed or self._closing:
                raise Unavailable("SQLite database is unavailable: the database is closed")
            if self._aside is None:
                self._aside = AsideReads(self.path, busy_timeout_ms=self._busy_timeout_ms, text_factory=text)
            aside = self._aside
        with _driver_errors():
            return await aside.run(fn)

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
                # text that is not UTF-8 (written by something else, damaged) reads with
                # surrogates instead of failing the whole query: its record is then unreadable
                # on its own (adapters.stored_tokens), and no error message quotes it
                conn.text_factory = text
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
                _use_wal(conn, self._busy_timeout_ms / 1000)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                _create_schema(conn)
                _drop_lease_fencing(conn)
                _add_columns(conn)
                _keep_unpublished(conn)
                self._conn = conn
            return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread; driver errors become ours."""
        return await self._submit(fn, write=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on
        any error of ``fn``), possibly shared with other writes waiting at the same moment, each
        in a savepoint of its own (:mod:`adapters.sqlite.statement_queue`). Returns once committed."""
        return await self._submit(fn, write=True)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        with _driver_errors():
            return await self._queue.submit(fn, write=write)

    async def check(self) -> bool:
        try:
            await self.run(lambda c: c.execute("SELECT 1").fetchone())
        except Unavailable:
            return False
        return True

    async def aclose(self) -> None:
        def close() -> None:
            with self._open_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        with self._open_lock:
            self._closing = True  # no aside reader is made any more
            aside = self._aside
        if self._stamp is not None:
            self._stamp.close()
        if aside is not None:
            aside.close()
        if not self._queue.closed:
            # after every call queued before it (a waiting write is committed); a call queued
            # after it fails, not run on a connection reopened and never closed
            await self._queue.close(close)
        self._queue.shutdown()

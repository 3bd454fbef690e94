"""Long reads of a SQLite file kept out of the service's way: a read-only connection of their
own, on a thread of their own.

The service's statements run one at a time on the database thread
(:mod:`adapters.sqlite.statement_queue`), so a read that scans the whole store holds up every
request behind it: the metrics' token census took 2 to 6 s at 1,000,000 token records, and a
point read queued behind it waited as long. In WAL mode a second connection reads a consistent
snapshot of what was committed without blocking the writer or being blocked by it, and SQLite
releases the GIL while it steps through the scan, so the service goes on meanwhile.

An in-memory database has no second connection (another one would open another database): its
reads run on the database thread as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["AsideReads", "SideConnection"]

T = TypeVar("T")


class SideConnection:
    """A connection of its own to a database file, opened by ``connect`` on first use and used
    by one caller at a time; once closed, every call raises :class:`sqlite3.ProgrammingError`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, closed: bool = False) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = closed

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)

    def close(self) -> None:
        """Close the connection (a call under way is interrupted first: its statement fails);
        later calls fail."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile
                conn.interrupt()  # thread-safe: the scan stops, the lock comes free at once
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class AsideReads:
    """Runs ``fn(connection)`` on a read-only connection to ``path``, one call at a time, on a
    thread that is not the database thread."""

    def __init__(self, path: str, *, busy_timeout_ms: int, text_factory: Callable[[bytes], str]) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._text_factory = text_factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-aside")
        self._side = SideConnection(self._open)
        self._closed = False

    def __repr__(self) -> str:
        return f"AsideReads(path={self._path!r})"

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn``'s result; sqlite3 errors propagate (the database maps them to its own)."""
        if self._closed:
            raise sqlite3.ProgrammingError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._side.call, fn)

    def _open(self) -> sqlite3.Connection:
        # ``mode=ro``: this connection can never write, whatever ``fn`` does; the file exists by
        # now (the database thread created it with its schema)
        uri = "file:" + urllib.parse.quote(os.path.abspath(self._path)) + "?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_ms / 1000
        )
        conn.text_factory = self._text_factory
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        return conn

    def close(self) -> None:
        """Close the connection (interrupting the call running, if any) and stop the thread."""
        self._closed = True
        self._side.close()
        self._executor.shutdown(wait=False)

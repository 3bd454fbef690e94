"""The queue of calls to a SQLite connection, run on one thread, writes committed together.

Calls that arrive while the thread is busy wait in the queue; the thread then takes all of them
at once: the reads first (they were all pending together, so any order is one they could have
run in), then the writes in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each inside a savepoint of
its own (a write alone in its transaction needs none). A write that raises is rolled back to its
savepoint and gets its error; the others are committed, and every write's caller hears back
only after the commit, so "returned" still means "stored". When the transaction itself fails
(``BEGIN``, ``COMMIT``, or an error after which SQLite abandoned the transaction), every write
it held gets that error, as each would have alone. The readers' results reach the event loop in
one call as soon as the reads are done, the writers' in one more after the commit.

The call that closes the connection (:meth:`StatementQueue.close`) is a barrier: it runs by
itself, after every call queued before it, so a write waiting when the database is closed is
committed first; a call queued after it fails ("the database is closed"), never run on a
connection reopened and never closed.

Under load (many workers each waiting for their own store step) this turns a transaction, a
thread hand-off and an event-loop wake-up per call into one per batch; with one call at a time
it is what it was: one call, one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["StatementQueue"]

T = TypeVar("T")

_READ, _WRITE, _ALONE = 0, 1, 2
#: (function, _READ, _WRITE or _ALONE, future, loop)
_Job = tuple[Callable[[sqlite3.Connection], Any], int, "asyncio.Future[Any]", asyncio.AbstractEventLoop]
#: (future, loop, succeeded, result or exception)
_Outcome = tuple["asyncio.Future[Any]", asyncio.AbstractEventLoop, bool, Any]


class StatementQueue:
    """Runs ``fn(connection)`` calls on one thread; ``connect`` gives the connection (opened
    on first use, on that thread)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._jobs: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._closed = False  # the closing call ran: every later call fails
        self._closing: asyncio.Future[None] | None = None  # the close, once asked for

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """``fn``'s result (a write: once committed) or its exception, raised as it came."""
        return await self._enqueue(fn, _WRITE if write else _READ)

    async def close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (which closes the connection, if one was opened) by itself, after
        everything queued before it; every call after it fails with ``sqlite3.OperationalError``.
        Only the first close queues ``fn``; another waits for that one."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._enqueue(lambda _: fn(), _ALONE))
        await asyncio.shield(self._closing)

    async def _enqueue(self, fn: Callable[[sqlite3.Connection], T], kind: int) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise _closed_error()
            self._jobs.append((fn, kind, future, loop))
            start = not self._draining
            self._draining = True
        if start:
            try:
                self._executor.submit(self._drain)
            except BaseException:
                with self._lock:
                    self._draining = False
                raise
        return await future

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    # -- on the database thread --------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._draining = False
                    return
                jobs = _take_batch(self._jobs)
                closed = self._closed
                self._closed = closed or jobs[0][1] == _ALONE
            if closed:  # queued before the close ran, taken after it
                _deliver_all([(future, loop, False, _closed_error()) for _, _, future, loop in jobs])
                continue
            writes = [job for job in jobs if job[1] == _WRITE]
            try:
                # the readers hear back at once, not after the writes' commit
                _deliver_all([self._call(fn, kind, future, loop) for fn, kind, future, loop in jobs if kind != _WRITE])
                if writes:
                    _deliver_all(self._write_all(writes))
            except BaseException as exc:  # the connection itself failed: every caller hears it
                _abandon(self._connect)
                _deliver_all([(future, loop, False, exc) for _, _, future, loop in jobs])

    def _call(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        kind: int,
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> _Outcome:
        try:
            # the closing call is not given a connection: none is opened only to be closed
            return future, loop, True, fn(None if kind == _ALONE else self._connect())  # type: ignore[arg-type]
        except Exception as exc:
            return future, loop, False, exc

    def _write_all(self, writes: list[_Job]) -> list[_Outcome]:
        """Every write in as few transactions as it takes (one, unless one was abandoned)."""
        outcomes: list[_Outcome] = []
        pending = deque(writes)
        while pending:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
            except Exception as exc:
                outcomes += [(future, loop, False, exc) for _, _, future, loop in pending]
                break
            done: list[_Outcome] = []
            failure: Exception | None = None
            alone = len(pending) == 1  # the transaction is its own: no savepoint needed
            while pending and failure is None:
                fn, _, future, loop = pending.popleft()
                if not alone:
                    conn.execute("SAVEPOINT w")
                try:
                    result = fn(conn)
                except Exception as exc:
                    outcomes.append((future, loop, False, exc))
                    if alone or not _rolled_back_to_savepoint(conn):
                        failure = exc  # the transaction is rolled back: the others in it too
                    continue
                if not alone:
                    conn.execute("RELEASE w")
                done.append((future, loop, True, result))
            if failure is None:
                try:
                    conn.execute("COMMIT")
                except Exception as exc:
                    failure = exc
            if failure is not None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                done = [(future, loop, False, failure) for future, loop, _, _ in done]
            outcomes += done
        return outcomes


def _take_batch(queue: deque[_Job]) -> list[_Job]:
    """The calls to run together: a call submitted alone by itself, else every call up to the
    next one submitted alone."""
    if queue[0][1] == _ALONE:
        return [queue.popleft()]
    batch: list[_Job] = []
    while queue and queue[0][1] != _ALONE:
        batch.append(queue.popleft())
    return batch


def _closed_error() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("the database is closed")


def _abandon(connect: Callable[[], sqlite3.Connection]) -> None:
    """Roll back whatever transaction a failure left open, if the connection still answers."""
    with contextlib.suppress(Exception):  # the original failure is what the callers hear
        conn = connect()
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _rolled_back_to_savepoint(conn: sqlite3.Connection) -> bool:
    """Undo the failed write's savepoint; False when SQLite had already ended the transaction."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO w")
        conn.execute("RELEASE w")
    except sqlite3.Error:
        return False
    return True


def _deliver_all(outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    if not outcomes:
        return
    for outcome in outcomes:
        by_loop.setdefault(outcome[1], []).append(outcome)
    for loop, some in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, some)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
            pass


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, _, ok, value in outcomes:
        if future.done():  # cancelled while it waited
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

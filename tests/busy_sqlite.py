"""A SQLite database whose one thread is held busy: calls queued meanwhile wait behind it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from adapters.sqlite import SQLiteDatabase


async def held_busy(db: SQLiteDatabase) -> tuple[asyncio.Future[None], threading.Event]:
    """The database thread running a step that waits until the returned event is set (10 s at
    most); the step's future, to await once it is set."""
    started, release = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    busy = asyncio.ensure_future(db.run(hold))
    assert await asyncio.to_thread(started.wait, 5)
    return busy, release

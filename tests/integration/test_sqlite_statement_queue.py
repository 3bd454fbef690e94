"""Writes waiting together share a transaction (adapters.sqlite.statement_queue), and each is
still all-or-nothing on its own."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sqlite.database import SQLiteDatabase
from connector_core.errors import Conflict, Unavailable
from tests.busy_sqlite import held_busy


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = SQLiteDatabase(tmp_path / "q.db", sealer=Aead(Keyring.generate()))
    await database.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    yield database
    await database.aclose()


def _insert(k: str, v: int, *, then_fail: BaseException | None = None):  # type: ignore[no-untyped-def]
    def fn(c: sqlite3.Connection) -> str:
        c.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        c.execute("UPDATE t SET v = v + 1 WHERE k = ?", (k,))
        if then_fail is not None:
            raise then_fail
        return k

    return fn


async def _rows(db: SQLiteDatabase) -> dict[str, int]:
    return dict(await db.run(lambda c: c.execute("SELECT k, v FROM t").fetchall()))


async def test_concurrent_writes_each_commit_or_roll_back_alone(db: SQLiteDatabase) -> None:
    calls = [db.write(_insert(f"k{i}", i, then_fail=Conflict("stale") if i % 3 == 0 else None)) for i in range(30)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, Conflict)
        else:
            assert result == f"k{i}"
    # the failed ones left nothing, not even their first statement; the others both of theirs
    assert await _rows(db) == {f"k{i}": i + 1 for i in range(30) if i % 3}


async def test_a_driver_error_in_one_write_leaves_the_others_stored(db: SQLiteDatabase) -> None:
    await db.write(_insert("taken", 0))
    calls = [db.write(_insert("taken", 5)), *(db.write(_insert(f"n{i}", i)) for i in range(5))]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], Unavailable)  # IntegrityError: the driver's error, mapped
    assert results[1:] == [f"n{i}" for i in range(5)]
    assert await _rows(db) == {"taken": 1, **{f"n{i}": i + 1 for i in range(5)}}


async def test_reads_see_committed_writes_only(db: SQLiteDatabase) -> None:
    seen: list[dict[str, int]] = []

    async def read() -> None:
        seen.append(await _rows(db))

    await asyncio.gather(*(db.write(_insert(f"k{i}", i)) for i in range(10)), *(read() for _ in range(10)))
    # a read ran before the batch of writes or after its commit, never in between
    for rows in seen:
        assert all(v == int(k[1:]) + 1 for k, v in rows.items())
    assert len(await _rows(db)) == 10


async def test_a_cancelled_caller_does_not_stop_the_others(db: SQLiteDatabase) -> None:
    slow = asyncio.ensure_future(db.write(_insert("a", 1)))
    others = [asyncio.ensure_future(db.write(_insert(f"b{i}", i))) for i in range(5)]
    slow.cancel()
    assert await asyncio.gather(*others) == [f"b{i}" for i in range(5)]
    rows = await _rows(db)
    assert {f"b{i}" for i in range(5)} <= set(rows)


async def test_writes_waiting_together_share_one_commit(db: SQLiteDatabase) -> None:
    statements: list[str] = []
    await db.run(lambda c: c.set_trace_callback(statements.append))
    await asyncio.gather(*(db.write(_insert(f"k{i}", i)) for i in range(30)))
    await db.run(lambda c: c.set_trace_callback(None))
    assert statements.count("COMMIT") < 30
    assert len(await _rows(db)) == 30


async def _busy(tmp_path: Path) -> tuple[SQLiteDatabase, asyncio.Future[None], threading.Event]:
    """A database with a table ``t`` whose thread is held busy until the event is set."""
    db = SQLiteDatabase(tmp_path / "c.db", sealer=Aead(Keyring.generate()))
    await db.write(lambda c: c.execute("CREATE TABLE t (k TEXT)"))
    busy, release = await held_busy(db)
    return db, busy, release


async def test_a_write_queued_before_aclose_is_committed_before_the_close(tmp_path: Path) -> None:
    db, busy, release = await _busy(tmp_path)  # the database thread is busy ...
    write = asyncio.ensure_future(db.write(lambda c: c.execute("INSERT INTO t VALUES ('x')")))
    await asyncio.sleep(0)  # ... the write is queued first, then the close
    closing = asyncio.ensure_future(db.aclose())
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(busy, write, closing)
    with sqlite3.connect(tmp_path / "c.db") as check:
        assert check.execute("SELECT k FROM t").fetchall() == [("x",)]
    assert db._conn is None  # no connection reopened after the close (and left open)


async def test_a_call_queued_after_aclose_fails_and_opens_no_connection(tmp_path: Path) -> None:
    db, busy, release = await _busy(tmp_path)  # the database thread is busy ...
    closing = asyncio.ensure_future(db.aclose())
    await asyncio.sleep(0)  # ... the close is queued first, then a late write (a lease release)
    late = asyncio.ensure_future(db.write(lambda c: c.execute("INSERT INTO t VALUES ('late')")))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(busy, closing)
    with pytest.raises(Unavailable, match="closed"):
        await late
    with pytest.raises(Unavailable, match="closed"):  # and one sent once it is closed
        await db.run(lambda c: c.execute("SELECT 1").fetchone())
    assert db._conn is None  # not reopened (and left open)
    with sqlite3.connect(tmp_path / "c.db") as check:
        assert check.execute("SELECT k FROM t").fetchall() == []
    await db.aclose()  # closing again is harmless


async def test_closing_a_database_never_used_creates_no_file(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "never.db", sealer=Aead(Keyring.generate()))
    await db.aclose()
    assert not (tmp_path / "never.db").exists()


async def test_two_closes_at_once_both_succeed(tmp_path: Path) -> None:
    db, busy, release = await _busy(tmp_path)
    closes = [asyncio.ensure_future(db.aclose()) for _ in range(2)]
    await asyncio.sleep(0.05)
    release.set()
    await busy
    assert await asyncio.gather(*closes) == [None, None]
    assert db._conn is None

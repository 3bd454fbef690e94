"""SQLite leases: files created while leases carried fencing tokens keep working without them; a
worker cancelled while its lease write waits leaves no lease behind."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteUnitOfWork
from adapters.system import ManualClock
from connector_core.services.token_lease import TokenLeases, lease_name
from tests.builders import token_record
from tests.busy_sqlite import held_busy


async def test_a_file_with_fenced_leases_drops_the_column_and_its_counters(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            """
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE leases (
                name TEXT PRIMARY KEY, owner TEXT NOT NULL, fencing INTEGER NOT NULL, expires_at REAL NOT NULL);
            INSERT INTO counters VALUES ('fence:token-refresh:t1', 7), ('fence:outbox-relay', 3), ('outbox_seq', 42);
            INSERT INTO leases VALUES ('token-refresh:t1', 'someone', 7, 0);
            """
        )
    old.close()
    db = SQLiteDatabase(path, sealer=Aead(Keyring.generate()))
    try:
        lock = SQLiteLeaseLock(db, ManualClock())
        lease = await lock.acquire("token-refresh:t1", 30)  # the lapsed row is taken over
        assert lease is not None
        assert await lock.acquire("token-refresh:t1", 30) is None
        assert await lock.release(lease) is True
        columns = await db.run(lambda c: [r[1] for r in c.execute("PRAGMA table_info(leases)")])
        counters = await db.run(lambda c: dict(c.execute("SELECT name, value FROM counters").fetchall()))
    finally:
        await db.aclose()
    assert columns == ["name", "owner", "expires_at"]
    assert counters == {"outbox_seq": 42}


@pytest.mark.parametrize("one_transaction", [True, False], ids=["one transaction", "lease then read"])
async def test_a_worker_cancelled_while_its_lease_write_waits_leaves_no_lease(
    tmp_path: Path, one_transaction: bool
) -> None:
    """The database thread is busy when a batch worker asks for a token's lease, and the worker is
    cancelled (a shutdown's grace is over). The queued write still runs and takes the lease; it
    is then dropped, not left to lapse (for the lease's whole TTL nobody could refresh the token)."""
    clock = ManualClock()
    db = SQLiteDatabase(tmp_path / "t.db", sealer=Aead(Keyring.generate()))
    lock = SQLiteLeaseLock(db, clock)
    try:
        async with SQLiteUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("org-1", clock.now(), token_id="t-1"))
            await uow.commit()
        leases = TokenLeases(lock, ttl=70, clock=clock, reads=lock if one_transaction else None)
        busy, release = await held_busy(db)

        async def worker() -> None:
            async with leases.hold_read("t-1", lambda: SQLiteUnitOfWork(db)) as taken:
                assert taken is not None
                await asyncio.sleep(3600)

        w = asyncio.ensure_future(worker())
        await asyncio.sleep(0.05)  # its lease write is queued behind the busy step
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        release.set()
        await busy
        await leases.settle()
        # The clock stands still, so a lease left behind would never lapse: the lease is free
        # again only if the write that took it was undone. (A look at the table alone could
        # come before that write: the database thread runs the reads waiting with it first.)
        taken_again = None
        for _ in range(100):
            taken_again = await lock.acquire(lease_name("t-1"), 70)
            if taken_again is not None:
                break
            await asyncio.sleep(0.02)
        assert taken_again is not None
        rows = await db.run(lambda c: c.execute("SELECT name FROM leases").fetchall())
        assert [r[0] for r in rows] == [lease_name("t-1")]  # ours, and only ours
    finally:
        await db.aclose()

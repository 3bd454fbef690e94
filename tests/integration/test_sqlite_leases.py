"""SQLite files created while leases carried fencing tokens keep working without them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.crypto import Aead, Keyring
from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock
from adapters.system import ManualClock


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

"""The metrics' token census on SQLite scans every record (2 to 6 s at 1,000,000): it reads
on a connection and a thread of its own, so neither waits for the other."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sqlite import SQLiteDatabase, SQLiteUnitOfWork
from connector_core.errors import Unavailable
from connector_core.tokens import TokenState
from tests.builders import token_record


async def census_of(db: SQLiteDatabase) -> dict[str, int]:
    async with SQLiteUnitOfWork(db) as uow:
        census = await uow.tokens.census(datetime.now(UTC))
    return {key: n for (key, state), n in census.states.items() if state is TokenState.ACTIVE and n}


async def test_the_census_does_not_wait_for_the_database_thread_nor_it_for_the_census(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "cm.db", sealer=Aead(Keyring.generate()))
    try:
        async with SQLiteUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("o1", datetime.now(UTC), key="jira", token_id="t-o1"))
            await uow.commit()

        # the database thread kept busy inside a write transaction (a long batch of writes)
        holding, release = threading.Event(), threading.Event()

        def long_write(c: sqlite3.Connection) -> None:
            holding.set()
            release.wait(10)

        writing = asyncio.ensure_future(db.write(long_write))
        await asyncio.to_thread(holding.wait, 5)
        try:
            counted = await asyncio.wait_for(census_of(db), timeout=3)  # queued behind it: 10 s
        finally:
            release.set()
            await writing
        assert counted == {"jira": 1}

        # and the service's statements go on while a census reads (the aside connection
        # stepping through a scan holds no lock the database thread needs)
        gate = threading.Event()
        original = db.read_aside

        async def slow_aside(fn):  # type: ignore[no-untyped-def]
            def slow(c: sqlite3.Connection):  # type: ignore[no-untyped-def]
                gate.wait(10)
                return fn(c)

            return await original(slow)

        db.read_aside = slow_aside  # type: ignore[method-assign]
        census = asyncio.ensure_future(census_of(db))
        try:
            async with SQLiteUnitOfWork(db) as uow:
                await uow.tokens.add(token_record("o2", datetime.now(UTC), key="jira", token_id="t-o2"))
                await asyncio.wait_for(uow.commit(), timeout=3)
        finally:
            gate.set()
        assert await census in ({"jira": 1}, {"jira": 2})
    finally:
        await db.aclose()


@pytest.mark.parametrize(
    "where",
    [
        ":memory:",  # no second connection: it counts on the database thread
        "p%41q#1?x/cm.db",  # %41 reads as "A", # and ? end the path in a URI: still this very file
    ],
)
async def test_the_census_counts_what_was_committed(tmp_path: Path, where: str) -> None:
    db = SQLiteDatabase(where if where == ":memory:" else tmp_path / where, sealer=Aead(Keyring.generate()))
    try:
        async with SQLiteUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("o1", datetime.now(UTC), key="jira", token_id="t-o1"))
            await uow.commit()
        assert await census_of(db) == {"jira": 1}
    finally:
        await db.aclose()


_LONG_SCAN = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000) SELECT count(*) FROM r"
)


async def test_closing_interrupts_a_long_read_and_no_read_starts_after(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "cm.db", sealer=Aead(Keyring.generate()))
    await census_of(db)
    reading = asyncio.ensure_future(db.read_aside(lambda c: c.execute(_LONG_SCAN).fetchone()))
    await asyncio.sleep(0.2)  # the scan is under way (it takes many seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await db.aclose()
    assert loop.time() - started < 1.0  # did not wait for the scan, nor block the loop
    with pytest.raises(Unavailable):
        await reading
    with pytest.raises(Unavailable):
        await census_of(db)

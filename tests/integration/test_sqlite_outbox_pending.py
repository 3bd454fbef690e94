"""The SQLite outbox lists its pending events in a table of their own (``outbox_unpublished``),
so marking a batch published does not rewrite every stored event. Whoever writes the outbox (a
process of an earlier version too) keeps that list right, and a file from before the list
existed gets it filled once, from the events it had not published."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.crypto import Aead, Keyring
from adapters.sqlite import SQLiteDatabase, SQLiteOutboxReader
from connector_core.catalog import Catalog
from tests.sqlite_outbox import commit_toggles


def _open(path: Path) -> SQLiteDatabase:
    return SQLiteDatabase(path, sealer=Aead(Keyring.generate()))


async def test_a_file_from_before_the_pending_list_keeps_its_unpublished(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "o.db"
    db = _open(path)
    await commit_toggles(db, catalog, 4)
    seqs = [m.seq for m in await SQLiteOutboxReader(db).pending(10)]
    await db.aclose()
    with sqlite3.connect(path) as conn:  # the file as an earlier version left it: two of four published
        conn.execute("DROP TRIGGER outbox_unpublished_add")
        conn.execute("DROP TRIGGER outbox_unpublished_done")
        conn.execute("DROP TABLE outbox_unpublished")
        conn.execute("UPDATE outbox SET published=1 WHERE seq IN (?, ?)", seqs[:2])
    db = _open(path)
    try:
        reader = SQLiteOutboxReader(db)
        assert [m.seq for m in await reader.pending(10)] == seqs[2:]
        assert (await reader.backlog()).pending == 2
        await db.aclose()
        db = _open(path)  # opened again: filled once only, what was published since stays so
        reader = SQLiteOutboxReader(db)
        await reader.mark_published(seqs[2:3])
        await db.aclose()
        db = _open(path)
        assert [m.seq for m in await SQLiteOutboxReader(db).pending(10)] == seqs[3:]
    finally:
        await db.aclose()


async def test_a_writer_and_a_relay_of_an_earlier_version_keep_the_list_right(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "o.db"
    db = _open(path)
    try:
        reader = SQLiteOutboxReader(db)
        await commit_toggles(db, catalog, 1)
        with sqlite3.connect(path) as conn:  # an earlier version writes an event, marks the first
            conn.execute(
                "INSERT INTO outbox (topic, partition_key, event_type, doc)"
                " SELECT topic, partition_key, event_type, doc FROM outbox ORDER BY seq LIMIT 1"
            )
            first = conn.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
            conn.execute("UPDATE outbox SET published=1 WHERE seq=?", (first,))
        pending = await reader.pending(10)
        assert [m.seq for m in pending] == [first + 1] and pending[0].wire is None
        assert (await reader.backlog()).pending == 1
    finally:
        await db.aclose()


async def test_pruning_published_events_keeps_pending_and_set_aside_ones(tmp_path: Path, catalog: Catalog) -> None:
    db = _open(tmp_path / "o.db")
    try:
        reader = SQLiteOutboxReader(db)
        await commit_toggles(db, catalog, 6)
        seqs = [m.seq for m in await reader.pending(10)]
        await reader.mark_published(seqs[:2])
        await reader.set_aside({seqs[2]: "MSG_SIZE_TOO_LARGE"})
        assert await reader.prune(0, published_only=True) == 2
        assert [m.seq for m in await reader.pending(10)] == seqs[3:]
        assert await reader.set_aside_count() == 1
        assert await reader.prune(0, published_only=False) == 4
        assert await reader.pending(10) == [] and (await reader.backlog()).pending == 0
        await commit_toggles(db, catalog, 1)
        assert len(await reader.pending(10)) == 1
    finally:
        await db.aclose()

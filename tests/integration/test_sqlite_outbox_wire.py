"""The SQLite outbox keeps each event's broker record when it writes the event, so the relay
publishes it without decoding and encoding it again: the kept record is exactly the one encoded
from the event, events whose record depends on the profile keep none, and events stored before
records were kept (a file from an earlier version) are encoded when published."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from adapters.crypto import Aead, Keyring
from adapters.event_wire import encode_record, kafka_record, stored_wire
from adapters.sqlite import SQLiteDatabase, SQLiteOutboxReader
from connector_core.catalog import Catalog
from connector_core.model.events import RealTimeUpdatesChanged
from tests.sqlite_outbox import commit_toggles


def _gmail_update() -> RealTimeUpdatesChanged:
    return RealTimeUpdatesChanged(
        event_id=uuid.uuid4().hex,
        org_id="org",
        connector_key="googleWorkspace",
        occurred_at=datetime.now(UTC),
        enabled=True,
        topic_name="projects/p/topics/t",
    )


async def test_pending_events_carry_the_record_kept_when_they_were_written(tmp_path: Path, catalog: Catalog) -> None:
    db = SQLiteDatabase(tmp_path / "o.db", sealer=Aead(Keyring.generate()))
    try:
        await commit_toggles(db, catalog, 3)
        pending = await SQLiteOutboxReader(db).pending(10)
        assert len(pending) == 3
        for m in pending:
            assert m.wire is not None
            assert m.wire == encode_record(m.event) == encode_record(m.event, "pipeshub")
            assert kafka_record(m, "pipeshub") == encode_record(m.event, "pipeshub")
    finally:
        await db.aclose()


def test_an_event_whose_record_depends_on_the_profile_keeps_none() -> None:
    event = _gmail_update()
    assert encode_record(event) != encode_record(event, "pipeshub")
    assert stored_wire(event) is None


async def test_events_stored_without_a_record_are_encoded_when_published(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "o.db"
    db = SQLiteDatabase(path, sealer=Aead(Keyring.generate()))
    await commit_toggles(db, catalog, 2)
    await db.aclose()
    with sqlite3.connect(path) as conn:  # the file as an earlier version left it
        conn.execute("ALTER TABLE outbox DROP COLUMN record")
        conn.execute("ALTER TABLE outbox DROP COLUMN wire")
    db = SQLiteDatabase(path, sealer=Aead(Keyring.generate()))
    try:
        await commit_toggles(db, catalog, 1)  # opening the file added the columns back
        old_first, old_second, new = await SQLiteOutboxReader(db).pending(10)
        assert old_first.wire is None and old_second.wire is None
        assert kafka_record(old_first) == encode_record(old_first.event)
        assert new.wire == encode_record(new.event)
        assert [m.event.event_type for m in (old_first, old_second, new)] == ["appEnabled", "appDisabled", "appEnabled"]
    finally:
        await db.aclose()


async def test_events_stored_by_the_versions_that_kept_headers_and_value_only_keep_their_record(
    tmp_path: Path, catalog: Catalog
) -> None:
    """Versions of 2026-12-02 to 12-04 kept the timestamp and event id headers and the value in
    ``wire`` (topic and type in columns of their own); their events are published as they were
    encoded then."""
    path = tmp_path / "o.db"
    db = SQLiteDatabase(path, sealer=Aead(Keyring.generate()))
    try:
        await commit_toggles(db, catalog, 2)
        written = list(await SQLiteOutboxReader(db).pending(10))
        with sqlite3.connect(path) as conn:  # as those versions wrote them
            for m in written:
                assert m.wire is not None
                _, _, value, headers = m.wire
                old_wire = headers["timestamp"] + b"\n" + headers["eventId"] + b"\n" + value
                conn.execute("UPDATE outbox SET wire=?, record=NULL WHERE seq=?", (old_wire, m.seq))
        again = await SQLiteOutboxReader(db).pending(10)
        assert [m.seq for m in again] == [m.seq for m in written]
        for before, after in zip(written, again, strict=True):
            assert after.wire == before.wire == encode_record(after.event)
    finally:
        await db.aclose()

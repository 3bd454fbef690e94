"""Adapter harnesses: every contract test runs once per backend, one marker each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from attrs import define

from adapters.crypto import Aead, Keyring
from adapters.memory import (
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.sqlite import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)
from adapters.system import ManualClock
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.lock import LeaseLock
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.outbox import OutboxReader
from connector_core.ports.unit_of_work import UnitOfWork


@define
class Harness:
    name: str
    uow: Callable[[], UnitOfWork]
    outbox: OutboxReader
    kv: KeyValueStore
    lock: LeaseLock
    states: OAuthStateStore
    clock: ManualClock
    #: a second, independent handle on the same store (another "process"), when there is one
    reopen: Callable[[], Any] | None = None
    extra: Any = None


BACKENDS: list[Any] = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
]


def make_sqlite(path: Path, clock: ManualClock, aead: Aead) -> tuple[SQLiteDatabase, Harness]:
    db = SQLiteDatabase(path, sealer=aead)
    return db, Harness(
        name="sqlite",
        uow=lambda: SQLiteUnitOfWork(db),
        outbox=SQLiteOutboxReader(db),
        kv=SQLiteKeyValueStore(db),
        lock=SQLiteLeaseLock(db, clock),
        states=SQLiteOAuthStateStore(db),
        clock=clock,
        extra=db,
    )


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    clock = ManualClock()
    aead = Aead(Keyring.generate())
    if request.param == "memory":
        storage = MemoryStorage()
        yield Harness(
            name="memory",
            uow=storage.unit_of_work,
            outbox=MemoryOutboxReader(storage),
            kv=MemoryKeyValueStore(),
            lock=MemoryLeaseLock(clock),
            states=MemoryOAuthStateStore(storage),
            clock=clock,
            extra=storage,
        )
    elif request.param == "sqlite":
        path = tmp_path / f"cm-{uuid.uuid4().hex}.db"
        db, h = make_sqlite(path, clock, aead)
        opened: list[SQLiteDatabase] = [db]

        def reopen() -> Harness:
            db2, h2 = make_sqlite(path, clock, aead)
            opened.append(db2)
            return h2

        h.reopen = reopen
        yield h
        for d in opened:
            await d.aclose()
    else:  # pragma: no cover
        raise AssertionError(request.param)


@pytest.fixture
async def sqlite_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """For checks only an on-disk, multi-process store can answer."""
    clock = ManualClock()
    aead = Aead(Keyring.generate())
    path = tmp_path / "cm.db"
    db, h = make_sqlite(path, clock, aead)
    opened = [db]

    def reopen() -> Harness:
        db2, h2 = make_sqlite(path, clock, aead)
        opened.append(db2)
        return h2

    h.reopen = reopen
    yield h
    for d in opened:
        await d.aclose()

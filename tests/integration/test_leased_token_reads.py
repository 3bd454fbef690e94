"""Taking a token's lease and reading the token under it: in one SQLite transaction where the
leases live with the tokens, else the lock's acquire and a unit of work's read composed; both
answer alike, and the refresher built on the embedded default uses the single call."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteUnitOfWork
from adapters.system import ManualClock
from connector_core.errors import UnreadableRecord
from connector_core.ports.lock import LeasedTokenReads, LeaseLock
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.token_lease import ComposedLeasedReads, lease_name
from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.builders import token_record


@contextlib.asynccontextmanager
async def world(tmp_path: Path, composed: bool) -> AsyncIterator[tuple[LeasedTokenReads, LeaseLock, SQLiteDatabase]]:
    db = SQLiteDatabase(tmp_path / "t.db", sealer=Aead(Keyring.generate()))
    lock = SQLiteLeaseLock(db, ManualClock())

    def uow() -> UnitOfWork:
        return SQLiteUnitOfWork(db)

    try:
        yield (ComposedLeasedReads(lock, uow) if composed else lock), lock, db
    finally:
        await db.aclose()


@pytest.mark.parametrize("composed", [False, True], ids=["one transaction", "composed"])
async def test_the_lease_and_the_token_as_stored_none_while_held_elsewhere(tmp_path: Path, composed: bool) -> None:
    async with world(tmp_path, composed) as (reads, lock, db):
        stored = token_record("org-1", ManualClock().now(), token_id="t-1")
        async with SQLiteUnitOfWork(db) as uow:
            await uow.tokens.add(stored)
            await uow.commit()

        taken = await reads.acquire_and_get(lease_name("t-1"), 30, "t-1")
        assert taken is not None and taken.lease.name == lease_name("t-1")
        assert taken.record is not None and taken.record.tokens == stored.tokens
        assert await reads.acquire_and_get(lease_name("t-1"), 30, "t-1") is None  # held
        assert await lock.acquire(lease_name("t-1"), 30) is None
        assert await lock.release(taken.lease) is True

        missing = await reads.acquire_and_get(lease_name("t-2"), 30, "t-2")
        assert missing is not None and missing.record is None
        assert await lock.acquire(lease_name("t-2"), 30) is None  # the lease is held all the same


@pytest.mark.parametrize("composed", [False, True], ids=["one transaction", "composed"])
async def test_an_unreadable_token_raises_and_leaves_its_lease_free(tmp_path: Path, composed: bool) -> None:
    async with world(tmp_path, composed) as (reads, lock, db):
        async with SQLiteUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("org-1", ManualClock().now(), token_id="t-1"))
            await uow.commit()
        await db.write(lambda c: c.execute("UPDATE tokens SET material='not-a-sealed-envelope' WHERE id='t-1'"))

        with pytest.raises(UnreadableRecord) as raised:
            await reads.acquire_and_get(lease_name("t-1"), 30, "t-1")
        assert "not-a-sealed" not in str(raised.value)
        assert await lock.acquire(lease_name("t-1"), 30) is not None


async def test_the_refresher_on_the_embedded_default_takes_and_reads_in_one_call(tmp_path: Path) -> None:
    env = {"CM_MASTER_KEY": "test-master-key"}
    container = await build_container(load_settings(env=env, data_dir=tmp_path, run_refresher=False), env=env)
    try:
        reads: object = container.refresher.leases.reads
        assert isinstance(reads, SQLiteLeaseLock) and reads is container.storage.lock
    finally:
        await container.aclose()

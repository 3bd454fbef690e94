"""Embedded SQLite adapters (one file per test)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from adapters.crypto import Aead
from adapters.sqlite import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)
from adapters.sqlite.idempotency_store import SQLiteIdempotencyStore
from adapters.sqlite.sealed_values import SQLiteSealedValues
from adapters.system import ManualClock
from connector_core.ports.kv_store import KeyValueStore
from tests.contract.backends import Env, IdempotencyUnderTest, LockUnderTest, Storage, manual_advance

MARK = "sqlite"


def open_storage(path: Path, clock: ManualClock, aead: Aead) -> tuple[SQLiteDatabase, Storage]:
    db = SQLiteDatabase(path, sealer=aead)
    return db, Storage(
        "sqlite",
        lambda: SQLiteUnitOfWork(db),
        SQLiteOutboxReader(db),
        SQLiteOAuthStateStore(db),
        clock,
        extra=db,
        sealed=SQLiteSealedValues(db),
    )


@contextlib.asynccontextmanager
async def storage(env: Env) -> AsyncIterator[Storage]:
    path = env.tmp_path / f"cm-{uuid.uuid4().hex}.db"
    db, st = open_storage(path, env.clock, env.aead)
    opened = [db]

    def reopen() -> Storage:
        db2, st2 = open_storage(path, env.clock, env.aead)
        opened.append(db2)
        return st2

    st.reopen = reopen
    try:
        yield st
    finally:
        for d in opened:
            await d.aclose()


async def damage_token(st: Storage, token_id: str, field: str) -> None:
    """Bytes that are not UTF-8 for ``meta``, text that is no sealed envelope for ``material``;
    ``org_id``: the record moved to org ``moved-<token id>`` (its columns and metadata rewritten,
    its material as it is), as someone with write access to the store could; ``org_id column``:
    its column alone."""
    if field in ("org_id", "org_id column"):
        moved = f"moved-{token_id}"
        meta = "meta" if field == "org_id column" else "json_set(meta, '$.org_id', ?)"
        params = (moved, token_id) if field == "org_id column" else (moved, moved, token_id)
        await st.extra.write(lambda c: c.execute(f"UPDATE tokens SET org_id=?, meta={meta} WHERE id=?", params))
        return
    value: object = b"\xff\xfe not text" if field == "meta" else "not-a-sealed-envelope"
    await st.extra.write(
        lambda c: c.execute(f"UPDATE tokens SET {field}=CAST(? AS TEXT) WHERE id=?", (value, token_id))
    )


async def token_material(st: Storage, token_id: str) -> object:
    """The record's ``material`` column as stored."""
    rows = await st.extra.run(lambda c: c.execute("SELECT material FROM tokens WHERE id=?", (token_id,)).fetchall())
    return rows[0][0]


async def set_token_material(st: Storage, token_id: str, material: str) -> None:
    """Overwrite the record's ``material`` column, nothing else (its version neither)."""
    await st.extra.write(lambda c: c.execute("UPDATE tokens SET material=? WHERE id=?", (material, token_id)))


@contextlib.asynccontextmanager
async def kv(env: Env) -> AsyncIterator[KeyValueStore]:
    db = SQLiteDatabase(env.tmp_path / f"kv-{uuid.uuid4().hex}.db", sealer=env.aead)
    try:
        yield SQLiteKeyValueStore(db)
    finally:
        await db.aclose()


@contextlib.asynccontextmanager
async def lock(env: Env) -> AsyncIterator[LockUnderTest]:
    db = SQLiteDatabase(env.tmp_path / f"lock-{uuid.uuid4().hex}.db", sealer=env.aead)
    try:
        yield LockUnderTest(SQLiteLeaseLock(db, env.clock), manual_advance(env.clock))
    finally:
        await db.aclose()


@contextlib.asynccontextmanager
async def idempotency(env: Env) -> AsyncIterator[IdempotencyUnderTest]:
    path = env.tmp_path / f"idem-{uuid.uuid4().hex}.db"
    db, other_db = SQLiteDatabase(path, sealer=env.aead), SQLiteDatabase(path, sealer=env.aead)
    try:
        yield IdempotencyUnderTest(SQLiteIdempotencyStore(db), SQLiteIdempotencyStore(other_db))
    finally:
        await db.aclose()
        await other_db.aclose()

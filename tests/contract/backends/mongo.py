"""MongoDB adapters against the session's MongoDB-compatible server (one database per test)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from bson import ObjectId

from adapters.crypto import Aead
from adapters.iam.mongo_user_groups import MongoUserGroupsIam
from adapters.mongo import (
    MongoDatabase,
    MongoLeaseLock,
    MongoOAuthStateStore,
    MongoOutboxReader,
    MongoUnitOfWork,
    make_client,
)
from adapters.mongo.idempotency_store import MongoIdempotencyStore
from adapters.mongo.sealed_values import MongoSealedValues
from adapters.system import ManualClock
from connector_core.ports.iam import Principal
from tests.contract.backends import Env, IamUnderTest, IdempotencyUnderTest, LockUnderTest, Storage, manual_advance
from tests.fakes.pipeshub import SeedDeployment

MARK = "mongo"

#: The suites' ManualClock sits in the past of the server's wall clock, so with the default
#: grace the server's TTL sweeper (every 60 s) could delete a state between put and take.
#: The TTL index is a backstop only; push it out of the tests' way.
_TTL_GRACE = timedelta(days=365 * 20)


def _open(url: str, db_name: str, clock: ManualClock, aead: Aead) -> MongoDatabase:
    return MongoDatabase(make_client(url), db_name, sealer=aead, clock=clock, oauth_state_ttl_grace=_TTL_GRACE)


def _storage(db: MongoDatabase, clock: ManualClock) -> Storage:
    return Storage(
        "mongo",
        lambda: MongoUnitOfWork(db),
        MongoOutboxReader(db),
        MongoOAuthStateStore(db),
        clock,
        extra=db,
        sealed=MongoSealedValues(db),
    )


@contextlib.asynccontextmanager
async def _database(env: Env, prefix: str) -> AsyncIterator[tuple[str, str, list[MongoDatabase]]]:
    url: str = env.request.getfixturevalue("mongo_url")
    db_name = f"{prefix}_{uuid.uuid4().hex}"
    opened: list[MongoDatabase] = []
    try:
        yield url, db_name, opened
    finally:
        if opened:
            with contextlib.suppress(Exception):
                await opened[0].client.drop_database(db_name)
        for db in opened:
            await db.aclose()


@contextlib.asynccontextmanager
async def storage(env: Env) -> AsyncIterator[Storage]:
    async with _database(env, "cm") as (url, db_name, opened):
        db = _open(url, db_name, env.clock, env.aead)
        opened.append(db)
        await db.ensure_indexes()
        st = _storage(db, env.clock)

        def reopen() -> Storage:
            other = _open(url, db_name, env.clock, env.aead)
            opened.append(other)
            return _storage(other, env.clock)

        st.reopen = reopen
        yield st


async def damage_token(st: Storage, token_id: str, field: str) -> None:
    """A ``meta`` that is no token record, a ``material`` that is no sealed envelope; ``org_id``:
    the record moved to org ``moved-<token id>`` (its fields and metadata rewritten, its material
    as it is), as someone with write access to the store could; ``org_id column``: its field
    alone."""
    if field in ("org_id", "org_id column"):
        moved = f"moved-{token_id}"
        change = {"org_id": moved} if field == "org_id column" else {"org_id": moved, "meta.org_id": moved}
        await st.extra.tokens.update_one({"_id": token_id}, {"$set": change})
        return
    value: object = {"tokens": "not a token set"} if field == "meta" else "not-a-sealed-envelope"
    await st.extra.tokens.update_one({"_id": token_id}, {"$set": {field: value}})


async def token_material(st: Storage, token_id: str) -> object:
    """The record's ``material`` field as stored."""
    return (await st.extra.tokens.find_one({"_id": token_id}) or {}).get("material")


async def set_token_material(st: Storage, token_id: str, material: str) -> None:
    """Overwrite the record's ``material`` field, nothing else (its version neither)."""
    await st.extra.tokens.update_one({"_id": token_id}, {"$set": {"material": material}})


@contextlib.asynccontextmanager
async def lock(env: Env) -> AsyncIterator[LockUnderTest]:
    async with _database(env, "cmlock") as (url, db_name, opened):
        db = _open(url, db_name, env.clock, env.aead)
        opened.append(db)
        await db.ensure_indexes()
        yield LockUnderTest(MongoLeaseLock(db, env.clock), manual_advance(env.clock))


@contextlib.asynccontextmanager
async def idempotency(env: Env) -> AsyncIterator[IdempotencyUnderTest]:
    async with _database(env, "cmidem") as (url, db_name, opened):
        db, other = _open(url, db_name, env.clock, env.aead), _open(url, db_name, env.clock, env.aead)
        opened.extend([db, other])
        yield IdempotencyUnderTest(
            MongoIdempotencyStore(db, ttl_grace=_TTL_GRACE), MongoIdempotencyStore(other, ttl_grace=_TTL_GRACE)
        )


@contextlib.asynccontextmanager
async def iam(env: Env) -> AsyncIterator[IamUnderTest]:
    """The existing deployment's user groups: an admin is in a non-deleted group of type admin."""
    url: str = env.request.getfixturevalue("mongo_url")
    client = make_client(url)
    db = client[f"es_{uuid.uuid4().hex}"]
    seed = SeedDeployment(None, db)  # MongoDB only: no etcd here

    def principal(org: str, user: str) -> Principal:
        # the existing service's user token: no admin claim at all
        return Principal(user_id=user, org_id=org, claims={"userId": user, "orgId": org, "accountType": "business"})

    async def make_admin(org: str, user: str) -> Principal:
        await seed.group(ObjectId(org), "admin", [ObjectId(user)])
        await seed.group(ObjectId(org), "everyone", [ObjectId(user)])
        return principal(org, user)

    async def make_member(org: str, user: str) -> Principal:
        await seed.group(ObjectId(org), "everyone", [ObjectId(user)])
        await seed.group(ObjectId(org), "custom", [ObjectId(user)], name="Admins")
        return principal(org, user)

    try:
        yield IamUnderTest(MongoUserGroupsIam(db["userGroups"]), make_admin, make_member)
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(db.name)
        await client.close()

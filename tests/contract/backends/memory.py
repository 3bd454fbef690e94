"""In-memory adapters."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from adapters.iam.claims import ClaimAdminIam
from adapters.memory import (
    MemoryCache,
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.memory.idempotency_store import MemoryIdempotencyStore
from connector_core.ports.cache import Cache
from connector_core.ports.iam import Principal
from connector_core.ports.kv_store import KeyValueStore
from tests.contract.backends import Env, IamUnderTest, IdempotencyUnderTest, LockUnderTest, Storage, manual_advance

MARK = "memory"


@contextlib.asynccontextmanager
async def storage(env: Env) -> AsyncIterator[Storage]:
    mem = MemoryStorage()
    yield Storage("memory", mem.unit_of_work, MemoryOutboxReader(mem), MemoryOAuthStateStore(mem), env.clock, extra=mem)


@contextlib.asynccontextmanager
async def kv(env: Env) -> AsyncIterator[KeyValueStore]:
    yield MemoryKeyValueStore()


@contextlib.asynccontextmanager
async def lock(env: Env) -> AsyncIterator[LockUnderTest]:
    yield LockUnderTest(MemoryLeaseLock(env.clock), manual_advance(env.clock))


@contextlib.asynccontextmanager
async def cache(env: Env) -> AsyncIterator[Cache]:
    yield MemoryCache()


@contextlib.asynccontextmanager
async def idempotency(env: Env) -> AsyncIterator[IdempotencyUnderTest]:
    store = MemoryIdempotencyStore()
    yield IdempotencyUnderTest(store, store)  # one process: the same records


@contextlib.asynccontextmanager
async def iam(env: Env) -> AsyncIterator[IamUnderTest]:
    """The claims adapter: the user token itself says who is an admin."""

    async def make_admin(org: str, user: str) -> Principal:
        return Principal(user_id=user, org_id=org, claims={"userId": user, "orgId": org, "isAdmin": True})

    async def make_member(org: str, user: str) -> Principal:
        return Principal(user_id=user, org_id=org, claims={"userId": user, "orgId": org})

    yield IamUnderTest(ClaimAdminIam(), make_admin, make_member)

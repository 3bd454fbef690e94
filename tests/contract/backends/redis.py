"""Redis adapters against the session's Redis server; every test gets its own key prefix."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from adapters.redis import RedisCache, RedisLeaseLock, connect_redis
from adapters.system import SystemClock
from connector_core.ports.cache import Cache
from tests.contract.backends import Env, LockUnderTest, real_advance

MARK = "redis"


@contextlib.asynccontextmanager
async def lock(env: Env) -> AsyncIterator[LockUnderTest]:
    client = connect_redis(env.request.getfixturevalue("redis_url"))
    try:
        # Redis expires keys on its own clock: the lock reads the system clock, the test sleeps
        yield LockUnderTest(
            RedisLeaseLock(client, SystemClock(), prefix=f"cm-test:{uuid.uuid4().hex}:lock:"), real_advance
        )
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def cache(env: Env) -> AsyncIterator[Cache]:
    client = connect_redis(env.request.getfixturevalue("redis_url"))
    try:
        yield RedisCache(client, prefix=f"cm-test:{uuid.uuid4().hex}:")
    finally:
        await client.aclose()

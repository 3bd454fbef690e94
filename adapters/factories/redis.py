"""The Redis backend: the cache and leases on one client."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from attrs import frozen

from adapters.factories.sections import RedisSettings
from adapters.health import require
from adapters.redaction import redact_url
from adapters.redis import RedisCache, RedisLeaseLock, connect_redis
from connector_core.ports.cache import Cache
from connector_core.ports.clock import Clock
from connector_core.ports.lock import LeaseLock

#: a PING slower than this counts as Redis being unwell
PING_TIMEOUT_SECONDS = 2.0


@frozen
class RedisBackend:
    client: aioredis.Redis

    def cache(self) -> Cache:
        return RedisCache(self.client)

    def lock(self, clock: Clock) -> LeaseLock:
        return RedisLeaseLock(self.client, clock)

    async def check(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), timeout=PING_TIMEOUT_SECONDS))
        except Exception:  # a probe answers; it never raises
            return False

    async def aclose(self) -> None:
        await self.client.aclose()


async def open_redis(settings: RedisSettings) -> RedisBackend:
    backend = RedisBackend(connect_redis(settings.url))
    try:
        await require(backend.check, f"Redis at {redact_url(settings.url)}")
    except BaseException:
        await backend.aclose()
        raise
    return backend

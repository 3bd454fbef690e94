"""The Redis backend: the cache and leases on one client."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from attrs import frozen
from redis import exceptions as redis_errors

from adapters.factories.sections import RedisSettings
from adapters.health import Refused, require
from adapters.redaction import redact_url
from adapters.redis import RedisCache, RedisLeaseLock, connect_redis, connect_redis_sentinel
from connector_core.errors import ValidationError
from connector_core.ports.cache import Cache
from connector_core.ports.clock import Clock
from connector_core.ports.lock import LeaseLock

#: a PING slower than this counts as Redis being unwell
PING_TIMEOUT_SECONDS = 2.0


@frozen
class RedisBackend:
    """A client of the server (or of the primary the Sentinels name), the adapters on it."""

    client: aioredis.Redis
    #: replicas that must confirm a lease or an invalidation (with Sentinels)
    replica_acks: int = 0
    #: with Sentinels: their clients, closed with the backend
    sentinel: Any = None

    def cache(self) -> Cache:
        return RedisCache(self.client, replicas=self.replica_acks)

    def lock(self, clock: Clock) -> LeaseLock:
        return RedisLeaseLock(self.client, clock, replicas=self.replica_acks)

    async def check(self) -> bool:
        try:
            return await self.start_probe()
        except Exception:  # a probe answers; it never raises
            return False

    async def start_probe(self) -> bool:
        """:meth:`check`, except that a server that refuses our credentials raises
        :class:`Refused` (start-up then stops at once, saying so, instead of waiting its budget)."""
        try:
            return bool(await asyncio.wait_for(self.client.ping(), timeout=PING_TIMEOUT_SECONDS))
        except redis_errors.AuthenticationError:  # its text is the server's: not kept
            raise Refused("authentication failed: check the password (and user) in the Redis URL") from None
        except Exception:
            return False

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()


async def open_redis(settings: RedisSettings) -> RedisBackend:
    """A client of the server at ``url``, or with Sentinels of the primary they name."""
    try:
        if settings.sentinels:
            client, sentinel = connect_redis_sentinel(
                settings.sentinels,
                settings.sentinel_master,
                url=settings.url,
                sentinel_password=settings.sentinel_password,
            )
            backend = RedisBackend(client, settings.replica_acks, sentinel)
            where = f"Redis primary {settings.sentinel_master!r} of the Sentinels at " + ", ".join(
                f"{host}:{port}" for host, port in settings.sentinels
            )
        else:
            backend = RedisBackend(connect_redis(settings.url), settings.replica_acks)
            where = f"Redis at {redact_url(settings.url)}"
    except ValueError:  # the driver's text can repeat the URL, password included: not kept
        raise ValidationError.for_field("url", "is not a Redis URL the driver accepts") from None
    try:
        await require(backend.start_probe, where, within=settings.start_up_timeout_seconds)
    except BaseException:
        await backend.aclose()
        raise
    return backend

"""The lease lock port on Redis: ``SET NX PX`` with a random owner token.

One key per lock name (value = owner token, expiring after the TTL on the server's clock).
Acquire is one ``SET NX PX``; release (compare-and-delete) and extend (compare-and-``PEXPIRE``)
are Lua scripts, so each is atomic. There are no fencing tokens (see
:mod:`connector_core.ports.lock`); keys ``{name}:fence`` left by earlier versions are unused.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis

from adapters.lease_wait import acquire_waiting
from adapters.redis.cache import redis_call
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease

__all__ = ["RedisLeaseLock"]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _px(ttl_seconds: float) -> int:
    return max(1, math.ceil(ttl_seconds * 1000))


class RedisLeaseLock:
    """:class:`~connector_core.ports.lock.LeaseLock` on Redis. Raises :class:`Unavailable` when
    Redis cannot be reached within ``timeout``; :meth:`extend` raises :class:`LeaseLost`."""

    def __init__(self, client: aioredis.Redis, clock: Clock, *, prefix: str = "cm:lock:", timeout: float = 1.0):
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._timeout = timeout
        # registering only computes the SHA; EVALSHA falls back to loading the script once
        self._release: Any = client.register_script(_RELEASE)
        self._extend: Any = client.register_script(_EXTEND)

    def _key(self, name: str) -> str:
        return f"{self._prefix}{{{name}}}"  # {name}: a Redis Cluster hash tag

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        async def attempt() -> Lease | None:
            now = self._clock.now()
            owner = secrets.token_hex(16)
            taken = await redis_call(
                "lock acquire",
                self._timeout,
                lambda: self._client.set(self._key(name), owner, nx=True, px=_px(ttl_seconds)),
            )
            return Lease(name, owner, now + timedelta(seconds=ttl_seconds)) if taken else None

        return await acquire_waiting(attempt, wait)

    async def release(self, lease: Lease) -> bool:
        deleted = await redis_call(
            "lock release", self._timeout, lambda: self._release(keys=[self._key(lease.name)], args=[lease.owner])
        )
        return int(deleted) == 1

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        done = await redis_call(
            "lock extend",
            self._timeout,
            lambda: self._extend(keys=[self._key(lease.name)], args=[lease.owner, _px(ttl_seconds)]),
        )
        if int(done) != 1:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, now + timedelta(seconds=ttl_seconds))

    def __repr__(self) -> str:
        return f"RedisLeaseLock(prefix={self._prefix!r})"

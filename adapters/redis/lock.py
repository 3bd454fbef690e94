"""The lease lock port on Redis: ``SET NX PX`` with a random owner token, a fencing counter.

Each lock name has two keys in one hash slot (``{name}`` is a Redis Cluster hash tag): the lock
itself (value = owner token, expiring after the TTL on the server's clock) and a fencing counter
that never expires. Acquire, release and extend are Lua scripts, so each is atomic:

- acquire: ``SET NX PX`` and, only if that succeeded, increment the counter. Incrementing in a
  separate call could hand a slow acquirer a smaller token than the holder before it.
- release: compare-and-delete on the owner token; extend: compare-and-``PEXPIRE``.

The counter is an ``INCR`` with a floor: the next token is ``max(counter + 1, server time in
microseconds)``. A plain ``INCR`` restarts at 1 when Redis loses its data (a restart without
persistence, a failover to a replica that had not received the key), and a restarted counter
would hand out tokens *smaller* than ones still in use, which is exactly what fencing must never
do. With the floor, tokens keep growing across such a loss as long as the server's clock does.
The counter key (a few bytes per lock name) is kept forever.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis

from adapters.redis.cache import redis_call
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease

__all__ = ["RedisLeaseLock"]

_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return false
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if fence < floor then
    fence = floor
end
redis.call('SET', KEYS[2], string.format('%.0f', fence))
return fence
"""

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
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._release: Any = client.register_script(_RELEASE)
        self._extend: Any = client.register_script(_EXTEND)

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}{{{name}}}"
        return [base, base + ":fence"]

    async def acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        now = self._clock.now()
        owner = secrets.token_hex(16)
        fence = await redis_call(
            "lock acquire", self._timeout, lambda: self._acquire(keys=self._keys(name), args=[owner, _px(ttl_seconds)])
        )
        if fence is None:
            return None
        return Lease(name, owner, int(fence), now + timedelta(seconds=ttl_seconds))

    async def release(self, lease: Lease) -> bool:
        deleted = await redis_call(
            "lock release", self._timeout, lambda: self._release(keys=self._keys(lease.name)[:1], args=[lease.owner])
        )
        return int(deleted) == 1

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        done = await redis_call(
            "lock extend",
            self._timeout,
            lambda: self._extend(keys=self._keys(lease.name)[:1], args=[lease.owner, _px(ttl_seconds)]),
        )
        if int(done) != 1:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, lease.fencing_token, now + timedelta(seconds=ttl_seconds))

    def __repr__(self) -> str:
        return f"RedisLeaseLock(prefix={self._prefix!r})"

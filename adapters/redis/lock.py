"""The lease lock port on Redis: ``SET NX PX`` with a random owner token.

One key per lock name (value = owner token, expiring after the TTL on the server's clock).
Acquire is one ``SET NX PX``; release (compare-and-delete) and extend (compare-and-``PEXPIRE``)
are Lua scripts, so each is atomic. There are no fencing tokens (see
:mod:`connector_core.ports.lock`); keys ``{name}:fence`` left by earlier versions are unused.

**Under a failover** (Redis with Sentinel, ``replicas`` > 0). Redis replicates asynchronously:
a lock set on a primary that dies before a replica has it would be gone on the promoted replica,
and a second holder could take it while the first still works. So an acquire and an extend count
only once ``replicas`` replicas confirmed them (``WAIT``, on the same connection); when they did
not in time, the acquire is undone and both raise :class:`Unavailable` (the holder stops, as for
any outage of the lock). A primary with fewer replicas connected than ``replicas`` (alone after
a failover, until the old primary is back as its replica) waits for those it has
(:class:`~adapters.redis.cache.ReplicaAcks`). What this guarantees: a lease granted (or
extended) before a failover is still held after it when the promoted replica was one that
confirmed it — with one replica, always; with more, set ``replicas`` to their number. What it
cannot: a promoted replica that had lost its link to the primary just before, or an old primary
cut off from the Sentinels that keeps accepting writes (set ``min-replicas-to-write`` on the
servers to refuse those). Then two holders can
overlap for at most one TTL, and the token store's version check still keeps the result of only
one of them (:mod:`connector_core.ports.lock`).
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from adapters.lease_wait import acquire_waiting
from adapters.orphan_leases import OrphanLeases
from adapters.redis.cache import ReplicaAcks, replicated
from connector_core.errors import LeaseLost, Unavailable
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

    def __init__(
        self,
        client: aioredis.Redis,
        clock: Clock,
        *,
        prefix: str = "cm:lock:",
        timeout: float = 1.0,
        replicas: int = 0,
    ):
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._timeout = timeout
        self._acks = ReplicaAcks(replicas) if replicas else None
        # registering only computes the SHA; EVALSHA falls back to loading the script once
        self._release: Any = client.register_script(_RELEASE)
        self._extend: Any = client.register_script(_EXTEND)
        self._orphans = OrphanLeases()  # leases taken for callers cancelled meanwhile: dropped

    def _key(self, name: str) -> str:
        return f"{self._prefix}{{{name}}}"  # {name}: a Redis Cluster hash tag

    @staticmethod
    def _unreplicated(what: str) -> Unavailable:
        return Unavailable(f"Redis did not replicate the {what} in time", metadata={"dependency": "redis"})

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        async def attempt() -> Lease | None:
            now = self._clock.now()
            owner = secrets.token_hex(16)
            key = self._key(name)

            async def queue(pipe: Pipeline) -> None:
                pipe.set(key, owner, nx=True, px=_px(ttl_seconds))

            lease = Lease(name, owner, now + timedelta(seconds=ttl_seconds))
            taken, confirmed = await self._orphans.taking(
                replicated("lock acquire", self._timeout, self._client, self._acks, queue),
                lambda answer: bool(answer[0]),
                lambda _: self._release_quietly(lease),
            )
            if not taken:
                return None
            if not confirmed:  # a failover could lose it: not a lease to work under
                await self._release_quietly(lease)
                raise self._unreplicated("lease")
            return lease

        return await acquire_waiting(attempt, wait)

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.release(lease)
        except Unavailable:
            pass  # it lapses after its TTL

    async def release(self, lease: Lease) -> bool:
        key = self._key(lease.name)

        async def queue(pipe: Pipeline) -> None:
            await self._release(keys=[key], args=[lease.owner], client=pipe)

        # replicated when it can be: a release a failover lost would hold the name until its TTL
        deleted, _ = await replicated("lock release", self._timeout, self._client, self._acks, queue)
        return int(deleted) == 1

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        key = self._key(lease.name)

        async def queue(pipe: Pipeline) -> None:
            await self._extend(keys=[key], args=[lease.owner, _px(ttl_seconds)], client=pipe)

        done, confirmed = await replicated("lock extend", self._timeout, self._client, self._acks, queue)
        if int(done) != 1:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        if not confirmed:
            raise self._unreplicated("lease extension")
        return Lease(lease.name, lease.owner, now + timedelta(seconds=ttl_seconds))

    def __repr__(self) -> str:
        return f"RedisLeaseLock(prefix={self._prefix!r})"

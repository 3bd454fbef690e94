"""The Redis adapters on a primary, a replica and three Sentinels: the client follows a failover
to the new primary; a lease or an invalidation counts only once the replica has it, so a
failover does not hand a lease to a second holder nor bring back what was invalidated."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from adapters.redis import RedisCache, RedisLeaseLock, connect_redis_sentinel
from adapters.system import SystemClock
from connector_core.errors import Unavailable
from tests import servers
from tests.servers import RedisSentinelGroup

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def group() -> Iterator[RedisSentinelGroup]:
    started = servers.redis_sentinel_group()
    try:
        yield started
    finally:
        started.close()


def sentinels(group: RedisSentinelGroup) -> list[tuple[str, int]]:
    return [("127.0.0.1", s.port) for s in group.sentinels]


async def test_a_lease_or_invalidation_no_replica_confirmed_does_not_count(group: RedisSentinelGroup) -> None:
    client, sentinel = connect_redis_sentinel(sentinels(group), group.master)
    prefix = f"cm-it:{uuid.uuid4().hex[:8]}:"
    lock = RedisLeaseLock(client, SystemClock(), prefix=prefix + "lock:", replicas=1)
    cache = RedisCache(client, prefix=prefix, replicas=1)
    replica = group.replicas[0]
    try:
        lease = await lock.acquire("token-refresh:t1", 30)
        assert lease is not None  # the replica confirmed it
        await cache.set("k", "v", 30)
        await cache.delete("k")

        replica.hang()  # it confirms nothing while frozen
        try:
            with pytest.raises(Unavailable, match="did not replicate the lease in time"):
                await lock.acquire("token-refresh:t2", 30)
            with pytest.raises(Unavailable, match="did not replicate the lease extension"):
                await lock.extend(lease, 30)
            with pytest.raises(Unavailable, match="did not replicate the cache invalidation"):
                await cache.delete("k")
        finally:
            replica.resume()
        # the unconfirmed lease was undone: the name is free
        again = await lock.acquire("token-refresh:t2", 30)
        assert again is not None
        assert await lock.release(again) is True
        assert await lock.release(lease) is True
    finally:
        await client.aclose()
        await sentinel.aclose()


async def test_the_client_follows_a_failover_and_a_lease_is_not_granted_twice(group: RedisSentinelGroup) -> None:
    client, sentinel = connect_redis_sentinel(sentinels(group), group.master)
    prefix = f"cm-it:{uuid.uuid4().hex[:8]}:"
    lock = RedisLeaseLock(client, SystemClock(), prefix=prefix + "lock:", replicas=1)
    cache = RedisCache(client, prefix=prefix, replicas=1)
    try:
        lease = await lock.acquire("token-refresh:t1", 60)
        assert lease is not None
        await cache.set("stale", "old", 60)
        await cache.delete("stale")  # confirmed by the replica: a failover cannot bring it back

        old_primary = group.current_primary()
        old_primary.kill()
        outage_started = time.monotonic()
        async with asyncio.timeout(30):
            while True:
                started = time.monotonic()
                try:
                    taken = await lock.acquire("token-refresh:t1", 60)
                    break
                except Unavailable:
                    # generous: each call is bounded by the client's 1 s timeouts, whatever Redis does
                    assert time.monotonic() - started < 3
                    await asyncio.sleep(0.1)
        assert group.current_primary() is not old_primary
        assert time.monotonic() - outage_started < 30
        assert taken is None  # the lease taken on the dead primary is still held on the new one
        lease = await lock.extend(lease, 60)  # and its holder keeps it
        assert await cache.get("stale") is None
        await cache.set("k", "v", 30)
        assert await cache.get("k") == "v"
        assert await lock.release(lease) is True
    finally:
        await client.aclose()
        await sentinel.aclose()

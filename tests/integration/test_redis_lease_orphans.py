"""Redis leases: a worker cancelled while its lease's SET waits for the server (a shutdown's
grace over) leaves no lease behind once the SET goes through. (On etcd a take that does not
finish revokes its etcd lease, and the key with it: ``adapters/etcd/lock.py``.)"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from adapters.redis.cache import connect_redis
from adapters.redis.lock import RedisLeaseLock
from adapters.system import SystemClock
from tests.servers import ServerProcess


@pytest.mark.redis
async def test_a_cancelled_acquire_whose_set_went_through_leaves_no_lease(
    redis_server: ServerProcess, redis_url: str
) -> None:
    client = connect_redis(redis_url)
    lock = RedisLeaseLock(client, SystemClock(), prefix=f"cm-it:{uuid.uuid4().hex[:10]}:lock:", timeout=5.0)
    try:
        assert await lock.acquire("warm-up", 1) is not None  # connected
        redis_server.hang()  # the server reads nothing for a moment
        try:
            acquiring = asyncio.ensure_future(lock.acquire("t-1", 60))
            await asyncio.sleep(0.2)  # the SET is sent, its answer not read
            acquiring.cancel()
            with pytest.raises(asyncio.CancelledError):
                await acquiring
        finally:
            redis_server.resume()
        # The SET runs once the server goes on. A lease it took for nobody would hold the name
        # for its whole minute; it is dropped instead, so the name can be taken again at once.
        again = None
        for _ in range(150):
            again = await lock.acquire("t-1", 60)
            if again is not None:
                break
            await asyncio.sleep(0.02)
        assert again is not None
    finally:
        await client.aclose()

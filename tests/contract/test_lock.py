"""Contract: LeaseLock (exclusive, expiring, fencing tokens only grow)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from connector_core.errors import LeaseLost
from tests.contract.conftest import Harness


def name() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}"


async def test_exclusive_until_released(harness: Harness) -> None:
    n = name()
    a = await harness.lock.acquire(n, 30)
    assert a is not None
    assert await harness.lock.acquire(n, 30) is None
    assert await harness.lock.release(a) is True
    b = await harness.lock.acquire(n, 30)
    assert b is not None and b.fencing_token > a.fencing_token and b.owner != a.owner


async def test_expired_lease_can_be_taken_and_the_old_owner_loses(harness: Harness) -> None:
    n = name()
    a = await harness.lock.acquire(n, 5)
    assert a is not None
    harness.clock.advance(6)
    b = await harness.lock.acquire(n, 5)
    assert b is not None and b.fencing_token > a.fencing_token
    assert await harness.lock.release(a) is False
    with pytest.raises(LeaseLost):
        await harness.lock.extend(a, 5)
    extended = await harness.lock.extend(b, 60)
    assert extended.expires_at > b.expires_at
    harness.clock.advance(30)
    assert await harness.lock.acquire(n, 5) is None


async def test_concurrent_acquire_has_one_winner(harness: Harness) -> None:
    n = name()
    leases = await asyncio.gather(*(harness.lock.acquire(n, 30) for _ in range(10)))
    assert len([x for x in leases if x is not None]) == 1

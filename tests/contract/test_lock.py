"""Contract: LeaseLock (exclusive, expiring, fencing tokens only grow)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from connector_core.errors import LeaseLost
from tests.contract.backends import LockUnderTest


def name() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}"


async def test_exclusive_until_released(lease_lock: LockUnderTest) -> None:
    n = name()
    a = await lease_lock.lock.acquire(n, 30)
    assert a is not None
    assert await lease_lock.lock.acquire(n, 30) is None
    assert await lease_lock.lock.release(a) is True
    b = await lease_lock.lock.acquire(n, 30)
    assert b is not None and b.fencing_token > a.fencing_token and b.owner != a.owner


async def test_expired_lease_can_be_taken_and_the_old_owner_loses(lease_lock: LockUnderTest) -> None:
    n = name()
    a = await lease_lock.lock.acquire(n, 1)
    assert a is not None
    await lease_lock.advance(1.5)
    b = await lease_lock.lock.acquire(n, 1)
    assert b is not None and b.fencing_token > a.fencing_token
    assert await lease_lock.lock.release(a) is False
    with pytest.raises(LeaseLost):
        await lease_lock.lock.extend(a, 5)
    extended = await lease_lock.lock.extend(b, 60)
    assert extended.expires_at > b.expires_at
    await lease_lock.advance(1.5)
    assert await lease_lock.lock.acquire(n, 1) is None


async def test_concurrent_acquire_has_one_winner(lease_lock: LockUnderTest) -> None:
    n = name()
    leases = await asyncio.gather(*(lease_lock.lock.acquire(n, 30) for _ in range(10)))
    assert len([x for x in leases if x is not None]) == 1

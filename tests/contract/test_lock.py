"""Contract: LeaseLock (exclusive, expiring, owned; a waiting acquire; no fencing tokens)."""

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
    assert await lease_lock.lock.release(a) is False
    b = await lease_lock.lock.acquire(n, 30)
    assert b is not None and b.owner != a.owner
    with pytest.raises(LeaseLost):
        await lease_lock.lock.extend(a, 30)  # a released holding stays released


async def test_expired_lease_can_be_taken_and_the_old_owner_loses(lease_lock: LockUnderTest) -> None:
    n = name()
    a = await lease_lock.lock.acquire(n, 1)
    assert a is not None
    await lease_lock.advance(1.5)
    b = await lease_lock.lock.acquire(n, 1)
    assert b is not None and b.owner != a.owner
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


async def test_a_waiting_acquire_gets_the_lease_once_it_is_released(lease_lock: LockUnderTest) -> None:
    n = name()
    a = await lease_lock.lock.acquire(n, 30)
    assert a is not None
    waiting = asyncio.create_task(lease_lock.lock.acquire(n, 30, wait=10))
    await asyncio.sleep(0)
    assert await lease_lock.lock.release(a) is True
    b = await waiting
    assert b is not None and b.owner != a.owner


async def test_a_waiting_acquire_gives_up_while_the_lease_is_held(lease_lock: LockUnderTest) -> None:
    n = name()
    a = await lease_lock.lock.acquire(n, 60)
    assert a is not None
    assert await lease_lock.lock.acquire(n, 60, wait=0.3) is None
    assert await lease_lock.lock.release(a) is True


async def test_a_lease_shows_no_owner_token(lease_lock: LockUnderTest) -> None:
    lease = await lease_lock.lock.acquire(name(), 30)
    assert lease is not None
    assert lease.owner not in repr(lease)
    assert not hasattr(lease, "fencing_token")  # the version check of the guarded store is the fence

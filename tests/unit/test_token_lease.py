"""The token lease: a release that fails is tried again in the background until the store is
back; the lease lasts as long as the work it guards needs, not a fixed minute."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from adapters.memory import MemoryLeaseLock
from adapters.system import ManualClock
from connector_core.errors import LeaseLost, Unavailable
from connector_core.ports.lock import Lease
from connector_core.services import token_lease
from connector_core.services.token_lease import lease_ttl_for
from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.unit.test_refresh import make_env


class ReleaseOutage(MemoryLeaseLock):
    """The lock's store is away for the first ``failures`` releases."""

    failures = 0
    releases = 0

    async def release(self, lease: Lease) -> bool:
        self.releases += 1
        if self.failures:
            self.failures -= 1
            raise Unavailable("lock store is away")
        return await super().release(lease)


async def test_a_release_that_failed_is_retried_until_the_store_is_back(
    catalog: Any, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_lease, "RELEASE_RETRY_SECONDS", 0.001)
    env = make_env(catalog, t0)
    lock = ReleaseOutage(env.clock)
    env.refresher.leases.lock = lock
    seeded = await env.seed()
    env.make_due()
    lock.failures = 3

    assert (await env.refresher.refresh_due()).refreshed == 1
    name = f"token-refresh:{seeded.id}"
    assert await lock.acquire(name, 1) is None  # still held: the store was away at release

    releases = env.refresher.leases.releases
    assert releases is not None and releases.pending == 1
    await releases.wait()
    assert lock.releases == 4
    assert await lock.acquire(name, 1) is not None  # given up as soon as the store answered


async def test_a_release_is_not_retried_past_the_lease_s_own_end(
    catalog: Any, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_lease, "RELEASE_RETRY_SECONDS", 0.001)
    env = make_env(catalog, t0)
    lock = ReleaseOutage(env.clock)
    env.refresher.leases.lock = lock
    await env.seed()
    env.make_due()
    lock.failures = 1_000_000

    assert (await env.refresher.refresh_due()).refreshed == 1
    env.clock.advance(env.refresher.leases.ttl + 1)  # lapsed by itself: nothing left to release
    releases = env.refresher.leases.releases
    assert releases is not None
    await releases.wait()
    assert lock.failures > 1_000_000 - 10


async def test_token_leases_last_as_long_as_the_work_they_guard(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=tmp_path, storage="memory", secrets="memory", oauth_http_timeout_seconds=4
    )
    container = await build_container(settings, env={"CM_MASTER_KEY": "lease-test"})
    try:
        assert container.refresher.leases.ttl == lease_ttl_for(4) == 2 * 4 + token_lease.LEASE_MARGIN_SECONDS
        # a provider call gets half the lease: the provider client's timeout fits in it
        assert container.refresher.leases.ttl / 2 > 4
        assert container.oauth.revocation.leases.ttl == lease_ttl_for(4)
    finally:
        await container.aclose()


class CountingExtends(MemoryLeaseLock):
    extends = 0

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        self.extends += 1
        return await super().extend(lease, ttl_seconds)


async def test_a_step_right_after_taking_the_lease_does_not_renew_it(t0: Any) -> None:
    clock = ManualClock(t0)
    lock = CountingExtends(clock)
    leases = token_lease.TokenLeases(lock, ttl=40, clock=clock)
    async with leases.hold("t1", wait=False) as held:
        assert held is not None
        assert await held.step(lambda: asyncio.sleep(0, "called")) == "called"
        assert lock.extends == 0  # a full lease left: the call (at most half of it) ends inside it
        clock.advance(40 * (1 - token_lease.FRESH_SHARE) + 1)
        await held.step(lambda: asyncio.sleep(0))
        assert lock.extends == 1  # less than three quarters left: renewed first
        await held.step(lambda: asyncio.sleep(0))
        assert lock.extends == 1  # just renewed


async def test_a_step_on_a_lapsed_lease_stops_before_the_call(t0: Any) -> None:
    clock = ManualClock(t0)
    leases = token_lease.TokenLeases(MemoryLeaseLock(clock), ttl=40, clock=clock)
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)

    async with leases.hold("t1", wait=False) as held:
        assert held is not None
        clock.advance(41)
        with pytest.raises(LeaseLost):
            await held.step(call)
    assert calls == []


async def test_without_a_clock_every_step_renews(t0: Any) -> None:
    lock = CountingExtends(ManualClock(t0))
    async with token_lease.TokenLeases(lock, ttl=40).hold("t1", wait=False) as held:
        assert held is not None
        await held.step(lambda: asyncio.sleep(0))
    assert lock.extends == 1

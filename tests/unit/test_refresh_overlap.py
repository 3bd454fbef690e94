"""A batch refresh resolves the token's provider and client credentials (store reads that need
no lease) while it takes the token's lease, not after; a token it then skips leaves no stray
resolution behind. While ``concurrency`` provider calls are in flight, three times as many more
tokens are leased and read, waiting for a call's turn (their store steps overlap the calls)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from adapters.memory import MemoryLeaseLock
from connector_core.catalog import Catalog
from connector_core.errors import Unavailable
from connector_core.ports.lock import Lease
from connector_core.services.providers import ResolvedProvider
from connector_core.services.token_lease import lease_name
from tests.unit.test_refresh import make_env


class LockNotingResolution(MemoryLeaseLock):
    """Notes, when a lease is taken, whether the provider was already being resolved."""

    def __init__(self, *args: Any, resolving: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resolving = resolving
        self.seen: list[list[tuple[str, str]]] = []

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        for _ in range(5):  # a store round trip: other tasks run meanwhile
            await asyncio.sleep(0)
        self.seen.append(list(self.resolving))
        return await super().acquire(name, ttl_seconds, wait=wait)


async def test_the_provider_is_resolved_while_the_lease_is_taken(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0)
    lock = LockNotingResolution(env.clock, resolving=env.resolved)  # what the env's source was asked
    env.refresher.leases.lock = lock
    seeded = await env.seed()
    env.make_due()

    assert (await env.refresher.refresh_due()).refreshed == 1
    assert lock.seen == [[(seeded.org_id, seeded.connector_key)]]


async def test_a_skipped_token_leaves_no_stray_resolution(catalog: Catalog, t0: Any) -> None:
    async def credentials(org: str, key: str) -> ResolvedProvider:
        raise Unavailable("the secret store is away")

    env = make_env(catalog, t0)
    env.refresher._resolve = credentials
    seeded = await env.seed()
    env.make_due()
    assert await env.lock.acquire(f"token-refresh:{seeded.id}", 60) is not None  # another worker
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(context))

    report = await env.refresher.refresh_due()
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()

    assert report.skipped == 1
    assert env.provider.calls == []
    assert unhandled == []


async def test_while_calls_are_in_flight_the_next_tokens_wait_for_a_turn_under_their_lease(
    catalog: Catalog, t0: Any
) -> None:
    env = make_env(catalog, t0)
    seeded = [await env.seed(f"org-{i}") for i in range(10)]
    env.make_due()
    in_flight: list[str] = []
    answer = asyncio.Event()

    async def held_up(used: str) -> None:
        in_flight.append(used)
        await answer.wait()

    env.provider.before_answer = held_up
    run = asyncio.create_task(env.refresher.refresh_due(batch_size=100, concurrency=2))
    for _ in range(50):
        await asyncio.sleep(0)

    leased = []
    for record in seeded:  # a lease another worker could take now is not held
        lease = await env.lock.acquire(lease_name(record.id), 60)
        if lease is None:
            leased.append(record.id)
        else:
            await env.lock.release(lease)
    assert len(in_flight) == 2  # never more calls than ``concurrency``
    assert len(leased) == 8  # six more tokens leased, read, resolved: waiting for a turn
    answer.set()
    assert (await run).refreshed == 10
    assert len(in_flight) == 10

"""ReadThroughCache over the in-memory cache: hits, per-org invalidation, and no stale read after
a write returned, even when a slow reader caches what it read before the write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.memory import MemoryCache
from adapters.read_cache import ReadThroughCache
from connector_core.errors import Unavailable


class Source:
    """The source of truth, counting its reads."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.reads = 0

    def loader(self, org_id: str) -> Any:
        async def load() -> Any:
            self.reads += 1
            return self.data.get(org_id)

        return load


class DeafCache(MemoryCache):
    """A cache whose writes are lost (as RedisCache.set during an outage), reads and deletes work."""

    def __init__(self) -> None:
        super().__init__()
        self.deaf = False

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        if not self.deaf:
            await super().set(key, value, ttl_seconds)


class UnreachableCache(MemoryCache):
    async def delete(self, *keys: str) -> None:
        raise Unavailable("Redis is unavailable (cache invalidation: ConnectionError)")


@pytest.fixture
def source() -> Source:
    src = Source()
    src.data = {"org-1": [{"name": "jira", "isEnabled": True}], "org-2": [{"name": "drive", "isEnabled": True}]}
    return src


async def test_second_read_is_a_hit(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache(), ttl_seconds=30)
    first = await rc.get_or_load("org-1", "connectors", source.loader("org-1"))
    second = await rc.get_or_load("org-1", "connectors", source.loader("org-1"))
    assert first == second == [{"name": "jira", "isEnabled": True}]
    assert source.reads == 1


async def test_invalidate_org_drops_every_key_of_that_org_only(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache())
    for name in ("connectors:active", "connectors:inactive", "config:jira"):
        await rc.get_or_load("org-1", name, source.loader("org-1"))
    await rc.get_or_load("org-2", "connectors:active", source.loader("org-2"))
    assert source.reads == 4

    source.data["org-1"] = [{"name": "jira", "isEnabled": False}]
    await rc.invalidate_org("org-1")

    for name in ("connectors:active", "connectors:inactive", "config:jira"):
        assert await rc.get_or_load("org-1", name, source.loader("org-1")) == [{"name": "jira", "isEnabled": False}]
    assert await rc.get_or_load("org-2", "connectors:active", source.loader("org-2")) is not None
    assert source.reads == 7  # org-2 still cached


async def test_a_slow_reader_cannot_cache_what_it_read_before_a_write(source: Source) -> None:
    """reader: fix key, read source (old) | writer: write, invalidate, return | reader: cache old."""
    rc = ReadThroughCache(MemoryCache())
    await rc.get_or_load("org-1", "connectors", source.loader("org-1"))  # the org has a generation

    key = await rc.org_key("org-1", "connectors")
    stale = await source.loader("org-1")()
    source.data["org-1"] = [{"name": "jira", "isEnabled": False}]  # the toggle ...
    await rc.invalidate_org("org-1")  # ... returned
    await rc.set_json(key, stale)  # the slow reader finishes

    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == [{"name": "jira", "isEnabled": False}]


async def test_the_same_race_on_an_org_without_a_generation_yet(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache())
    key = await rc.org_key("org-1", "connectors")  # creates the org's first generation
    stale = await source.loader("org-1")()
    source.data["org-1"] = []
    await rc.invalidate_org("org-1")
    await rc.set_json(key, stale)
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == []


async def test_concurrent_readers_and_a_writer_end_fresh(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache())

    async def slow_read() -> Any:
        key = await rc.org_key("org-1", "connectors")
        value = await source.loader("org-1")()
        await asyncio.sleep(0.01)
        await rc.set_json(key, value)

    readers = [asyncio.create_task(slow_read()) for _ in range(10)]
    await asyncio.sleep(0)
    source.data["org-1"] = [{"name": "jira", "isEnabled": False}]
    await rc.invalidate_org("org-1")
    await asyncio.gather(*readers)
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == [{"name": "jira", "isEnabled": False}]


async def test_lost_cache_writes_only_cost_misses(source: Source) -> None:
    cache = DeafCache()
    rc = ReadThroughCache(cache)
    await rc.get_or_load("org-1", "connectors", source.loader("org-1"))
    cache.deaf = True  # generation and value writes are lost from now on
    await rc.invalidate_org("org-1")
    source.data["org-1"] = []
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == []
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == []
    assert source.reads == 3


async def test_invalidation_that_cannot_be_confirmed_raises() -> None:
    rc = ReadThroughCache(UnreachableCache())
    with pytest.raises(Unavailable):
        await rc.invalidate_org("org-1")


async def test_org_ids_and_names_cannot_collide(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache())
    a = await rc.org_key("a:b", "c")
    b = await rc.org_key("a", "b:c")
    assert a.cache_key != b.cache_key
    await rc.set_json(a, {"org": "a:b"})
    assert await rc.get_json(b) is None
    await rc.invalidate_org("a")
    assert await rc.get_json(await rc.org_key("a:b", "c")) == {"org": "a:b"}


async def test_values_round_trip_and_null_is_not_cached(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache())
    key = await rc.org_key("org-ü", "config:jira")
    value = {"baseUrl": "https://exämple.test/ü", "filters": [1, 2.5, True, None], "name": "日本語"}
    await rc.set_json(key, value)
    assert await rc.get_json(key) == value

    calls = 0

    async def nothing() -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        return None

    assert await rc.get_or_load("org-1", "missing", nothing) is None
    assert await rc.get_or_load("org-1", "missing", nothing) is None
    assert calls == 2


async def test_values_expire_with_the_ttl(source: Source) -> None:
    rc = ReadThroughCache(MemoryCache(), ttl_seconds=0.05)
    await rc.get_or_load("org-1", "connectors", source.loader("org-1"))
    await asyncio.sleep(0.1)
    await rc.get_or_load("org-1", "connectors", source.loader("org-1"))
    assert source.reads == 2

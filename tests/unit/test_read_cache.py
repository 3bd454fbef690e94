"""ReadThroughCache over the in-memory cache: hits, per-org invalidation, no stale read after a
write returned (even when a slow reader caches what it read before the write), and a breaker that
bypasses an unwell cache and brings it back empty."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from attrs import evolve

from adapters.crypto import Aead
from adapters.invalidating_uow import invalidating
from adapters.memory import MemoryCache, MemoryStorage, MemoryUnitOfWork
from adapters.read_cache import ReadThroughCache
from adapters.system import SystemClock
from connector_core.catalog import Catalog
from connector_core.errors import CommitOutcomeUnknown, Unavailable
from connector_core.model.events import SyncAction
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.infrastructure import open_infrastructure
from entrypoints.service_secrets import load_keyring
from entrypoints.settings import load_settings
from tests.builders import api_token_connector
from tests.conftest import CountingIds


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


class FlakyCache(MemoryCache):
    """Keeps its data across an outage (a frozen Redis) and fails every call while ``down``;
    counts the reads and writes it was asked (not the invalidations the breaker probes with)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.asked = 0

    def _check(self, *, count: bool = True) -> None:
        self.asked += count
        if self.down:
            raise Unavailable("Redis is unavailable (cache get: TimeoutError)")

    async def get(self, key: str) -> str | None:
        self._check()
        return await super().get(key)

    async def get_many(self, *keys: str) -> Sequence[str | None]:
        self._check()
        return await super().get_many(*keys)

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self._check()
        await super().set(key, value, ttl_seconds)

    async def delete(self, *keys: str) -> None:
        self._check(count=False)
        await super().delete(*keys)


async def recovered(rc: ReadThroughCache) -> None:
    async with asyncio.timeout(5):
        while rc.bypassed:
            await asyncio.sleep(0.01)


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
    assert rc.bypassed
    await rc.aclose()


async def test_an_unwell_cache_is_asked_once_then_bypassed_and_comes_back_empty(
    source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.read_cache")
    cache = FlakyCache()
    rc = ReadThroughCache(cache, probe_max_interval=0.02)
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == source.data["org-1"]
    cache.down = True
    asked = cache.asked
    for _ in range(5):  # every read answers from the source ...
        assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == source.data["org-1"]
    assert rc.bypassed and cache.asked == asked + 1  # ... and only the first one asked the cache
    assert source.reads == 6
    source.data["org-1"] = [{"name": "jira", "isEnabled": False}]  # changed while the cache was away
    cache.down = False
    await recovered(rc)
    # what was cached before the outage is never served again ...
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == source.data["org-1"]
    assert await rc.get_or_load("org-1", "connectors", source.loader("org-1")) == source.data["org-1"]
    assert source.reads == 7  # ... and the cache is in use again
    messages = [r.getMessage() for r in caplog.records if r.name == "adapters.read_cache"]
    assert len([m for m in messages if "bypassed" in m]) == 1, messages
    assert len([m for m in messages if "in use again" in m]) == 1, messages
    await rc.aclose()


async def test_a_reader_that_never_saw_the_outage_is_not_served_what_it_could_not_invalidate(source: Source) -> None:
    """Two processes share one cache; the writer's invalidation fails during the outage, the
    other process makes no call until the cache is back. The writer's recovery drops everything
    cached before, so the other process reads the new state too."""
    cache = FlakyCache()
    writer, other = ReadThroughCache(cache, probe_max_interval=0.02), ReadThroughCache(cache)
    assert await other.get_or_load("org-1", "connectors", source.loader("org-1")) == source.data["org-1"]
    cache.down = True
    source.data["org-1"] = []  # the write is committed ...
    with pytest.raises(Unavailable):
        await writer.invalidate_org("org-1")  # ... but its invalidation is lost
    cache.down = False
    await recovered(writer)
    assert await other.get_or_load("org-1", "connectors", source.loader("org-1")) == []
    await writer.aclose()


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


async def test_writes_while_the_cache_is_down_are_saved_answered_2xx_and_never_read_stale(tmp_path: Path) -> None:
    """Through the HTTP API with a cache that keeps its data across an outage (a frozen Redis):
    a PUT and a toggle while it is down answer 2xx and are visible at once; once it is back,
    nothing cached before the outage is served."""
    settings = load_settings(env={}, storage="memory", secrets="memory", cache="memory", data_dir=tmp_path)
    env = {"CM_MASTER_KEY": "test-master-key"}
    cache = FlakyCache()
    opened = await open_infrastructure(settings, Aead(load_keyring(settings, env)), SystemClock())
    infra = evolve(opened, cache=ReadThroughCache(cache, probe_max_interval=0.02))
    container = await build_container(settings, env=env, infrastructure=infra)
    token = issue_user_token(
        container.service_secrets.jwt_secret,
        user_id="u",
        org_id="org-a",
        email="u@example.com",
        admin=True,
        ttl=600,
        now=int(time.time()),
    )
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "baseUrl": "https://acme.atlassian.net",
        "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "t"},
    }
    p = "/api/v1/connectors"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://t") as c:
        assert (await c.put(f"{p}/config/confluence", json=body, headers=auth)).status_code == 200
        inactive = [x["key"] for x in (await c.get(f"{p}/inactive", headers=auth)).json()]
        assert "confluence" in inactive  # and cached
        cache.down = True
        r = await c.post(f"{p}/toggle/confluence", headers=auth)
        assert r.status_code == 200 and r.json()["connector"]["isEnabled"] is True
        assert [x["key"] for x in (await c.get(f"{p}/active", headers=auth)).json()] == ["confluence"]
        body["baseUrl"] = "https://other.atlassian.net"
        assert (await c.put(f"{p}/config/confluence", json=body, headers=auth)).status_code == 200
        cache.down = False
        assert infra.cache is not None
        await recovered(infra.cache)
        assert [x["key"] for x in (await c.get(f"{p}/active", headers=auth)).json()] == ["confluence"]
        assert "confluence" not in [x["key"] for x in (await c.get(f"{p}/inactive", headers=auth)).json()]
    await infra.cache.aclose()
    await container.aclose()


class UnknownOutcomeUnitOfWork(MemoryUnitOfWork):
    """Stores the batch but answers as a store that hung mid-commit: outcome unknown, settled
    once ``settled`` is set."""

    def __init__(self, storage: MemoryStorage, settled: asyncio.Event) -> None:
        super().__init__(storage)
        self._settled = settled

    async def commit(self) -> None:
        await super().commit()

        async def wait() -> None:
            await self._settled.wait()

        raise CommitOutcomeUnknown("the store did not answer the commit", settled=wait)


async def test_a_commit_of_unknown_outcome_keeps_its_org_out_of_the_cache_until_settled(catalog: Catalog) -> None:
    storage, settled = MemoryStorage(), asyncio.Event()
    rc = ReadThroughCache(MemoryCache())
    now = SystemClock().now()
    connector = api_token_connector(catalog, "org-1", now)

    async def enabled() -> list[str]:
        async with storage.unit_of_work() as uow:
            return [c.key for c in await uow.connectors.list("org-1") if c.is_enabled]

    async with invalidating(storage.unit_of_work, rc)() as uow:
        await uow.connectors.add(connector)
        await uow.commit()
    assert await rc.get_or_load("org-1", "enabled", enabled) == []  # cached
    connector.enable(catalog.get("confluence"), sync_action=SyncAction.NONE, by="u", now=now, ids=CountingIds())
    unknown = invalidating(lambda: UnknownOutcomeUnitOfWork(storage, settled), rc)()
    with pytest.raises(CommitOutcomeUnknown):
        async with unknown as uow:
            await uow.connectors.save(connector)
            await uow.commit()
    # the change landed although its outcome was unknown: no read may see the cached old state
    assert await rc.get_or_load("org-1", "enabled", enabled) == ["confluence"]
    assert await rc.get_or_load("org-1", "enabled", enabled) == ["confluence"]
    settled.set()
    async with asyncio.timeout(5):
        while rc.holding:
            await asyncio.sleep(0.01)
    assert await rc.get_or_load("org-1", "enabled", enabled) == ["confluence"]
    await rc.aclose()

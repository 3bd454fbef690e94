"""The hot reads' answer cache against a stamp the test drives: it answers again only under the
same store version or the same org version, never when the stamp cannot be read, and not
after its time-to-live."""

from __future__ import annotations

import json

from entrypoints.http.response_cache import ResponseCache


class Stamp:
    def __init__(self) -> None:
        self.store: int | None = 1
        self.orgs: dict[str, int] = {}

    def store_version(self) -> int | None:
        return self.store

    def org_version(self, org_id: str) -> int | None:
        return None if self.store is None else self.orgs.get(org_id, 0)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Source:
    def __init__(self) -> None:
        self.value = 1
        self.builds = 0

    async def build(self) -> dict[str, int]:
        self.builds += 1
        return {"value": self.value}


async def read(cache: ResponseCache, source: Source, org: str = "acme") -> int:
    return int(json.loads(await cache.answer(org, "connectors", source.build))["value"])


async def test_the_same_store_version_answers_again_without_building() -> None:
    cache, source = ResponseCache(Stamp()), Source()
    assert await read(cache, source) == 1
    assert await read(cache, source) == 1
    assert source.builds == 1 and (cache.hits, cache.misses) == (1, 1)


async def test_a_commit_to_the_org_builds_anew() -> None:
    stamp, source = Stamp(), Source()
    cache = ResponseCache(stamp)
    await read(cache, source)
    source.value = 2
    stamp.store, stamp.orgs["acme"] = 2, 1
    assert await read(cache, source) == 2


async def test_a_commit_to_another_org_keeps_the_answer() -> None:
    stamp, source = Stamp(), Source()
    cache = ResponseCache(stamp)
    await read(cache, source)
    stamp.store, stamp.orgs["globex"] = 2, 1
    assert await read(cache, source) == 1
    assert source.builds == 1


async def test_a_commit_during_the_build_leaves_nothing_reusable() -> None:
    stamp = Stamp()
    cache = ResponseCache(stamp)

    class Racing(Source):
        async def build(self) -> dict[str, int]:
            built = await super().build()
            stamp.store, stamp.orgs["acme"] = 2, 1  # committed after the read, before the answer
            self.value = 2
            return built

    source = Racing()
    assert await read(cache, source) == 1
    assert await read(cache, source) == 2


async def test_nothing_is_cached_while_the_stamp_cannot_be_read() -> None:
    stamp, source = Stamp(), Source()
    stamp.store = None
    cache = ResponseCache(stamp)
    await read(cache, source)
    await read(cache, source)
    assert source.builds == 2 and cache.hits == 0


async def test_answers_lapse_after_their_time_to_live() -> None:
    clock, source = Clock(), Source()
    cache = ResponseCache(Stamp(), ttl_seconds=1.0, monotonic=clock)
    await read(cache, source)
    clock.t += 1.5
    source.value = 2  # time-derived fields changed without a commit
    assert await read(cache, source) == 2


async def test_answers_lapse_when_the_service_clock_moves_either_way() -> None:
    """Time-derived fields follow the service's clock: a manual clock moved on (tests), or a
    wall clock stepped back, ends the answer although little monotonic time passed."""
    for step in (+3 * 86400.0, -3600.0):
        monotonic, service, source = Clock(), Clock(), Source()
        cache = ResponseCache(Stamp(), ttl_seconds=1.0, monotonic=monotonic, clock=service)
        await read(cache, source)
        assert await read(cache, source) == source.value and cache.hits == 1
        service.t += step
        source.value += 1
        assert await read(cache, source) == source.value, step


async def test_the_cache_stays_bounded() -> None:
    cache, source = ResponseCache(Stamp(), max_entries=3), Source()
    for i in range(10):
        await read(cache, source, org=f"org-{i}")
    assert len(cache._entries) == 3

"""Contract: Cache (get/set/delete, TTL expiry, any text as a value)."""

from __future__ import annotations

import asyncio
import uuid

from connector_core.ports.cache import Cache


def key() -> str:
    return f"cache-{uuid.uuid4().hex[:8]}"


async def test_miss_set_get_overwrite(cache: Cache) -> None:
    k = key()
    assert await cache.get(k) is None
    await cache.set(k, "one", 30)
    assert await cache.get(k) == "one"
    await cache.set(k, "two", 30)
    assert await cache.get(k) == "two"


async def test_delete_invalidates(cache: Cache) -> None:
    k = key()
    await cache.set(k, "v", 30)
    await cache.delete(k)
    assert await cache.get(k) is None
    await cache.delete(k)  # deleting a missing key is fine
    await cache.delete()  # and so is deleting nothing


async def test_delete_several_keys_at_once(cache: Cache) -> None:
    a, b, c = key(), key(), key()
    for k in (a, b, c):
        await cache.set(k, k, 30)
    await cache.delete(a, b, key())
    assert await cache.get(a) is None
    assert await cache.get(b) is None
    assert await cache.get(c) == c


async def test_values_expire_after_their_ttl(cache: Cache) -> None:
    short, long = key(), key()
    await cache.set(short, "short", 0.3)
    await cache.set(long, "long", 30)
    assert await cache.get(short) == "short"
    await asyncio.sleep(0.6)
    assert await cache.get(short) is None
    assert await cache.get(long) == "long"


async def test_set_again_restarts_the_ttl(cache: Cache) -> None:
    k = key()
    await cache.set(k, "v1", 0.3)
    await cache.set(k, "v2", 30)
    await asyncio.sleep(0.6)
    assert await cache.get(k) == "v2"


async def test_any_text_round_trips(cache: Cache) -> None:
    values = {
        key(): "héllo wörld — ✓ 日本語 🚀",
        key(): '{"isEnabled": true, "name": "Ünïcode"}',
        key(): "",
        key(): "line1\nline2\ttab \\ backslash \x00 nul",
        key(): "x" * 100_000,
    }
    for k, v in values.items():
        await cache.set(k, v, 30)
    for k, v in values.items():
        assert await cache.get(k) == v


async def test_keys_are_exact(cache: Cache) -> None:
    base = key()
    await cache.set(base, "a", 30)
    await cache.set(base + ":x", "b", 30)
    await cache.set("ü-" + base, "c", 30)
    await cache.delete(base)
    assert await cache.get(base + ":x") == "b"
    assert await cache.get("ü-" + base) == "c"
    assert await cache.get(base[:-1]) is None


async def test_get_many_answers_in_the_order_asked(cache: Cache) -> None:
    a, b, missing = key(), key(), key()
    await cache.set(a, "A", 30)
    await cache.set(b, "B", 30)
    assert list(await cache.get_many(b, missing, a)) == ["B", None, "A"]
    assert list(await cache.get_many()) == []

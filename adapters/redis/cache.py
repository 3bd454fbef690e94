"""The cache port on Redis, and the one place where Redis driver errors are translated.

Every call is bounded by ``timeout`` (cut to what is left of the request's deadline) and raises
:class:`Unavailable` when Redis cannot be asked: a lost write or a lost invalidation is never
silent. What to do about it (read the source instead, stop using the cache until Redis is well,
drop what was cached before the outage) is decided once, by
:class:`~adapters.read_cache.ReadThroughCache`, which also logs the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from connector_core.deadline import remaining
from connector_core.errors import ConnectorManagerError, Unavailable

__all__ = ["RedisCache", "connect_redis", "redis_call", "translated"]

T = TypeVar("T")


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Redis driver errors inside the block leave as :class:`Unavailable` (or, for a request Redis
    answered and refused, :class:`ConnectorManagerError`), with a secret-free message."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError) as exc:
        # ConnectionError covers authentication failures and BusyLoading too: unusable for now
        raise Unavailable(
            f"Redis is unavailable ({what}: {type(exc).__name__})", metadata={"dependency": "redis"}
        ) from exc
    except (redis_errors.ReadOnlyError, redis_errors.OutOfMemoryError) as exc:
        raise Unavailable(
            f"Redis refuses writes ({what}: {type(exc).__name__})", metadata={"dependency": "redis"}
        ) from exc
    except redis_errors.RedisError as exc:
        raise ConnectorManagerError(f"Redis rejected the {what} request ({type(exc).__name__})") from exc


async def redis_call(what: str, seconds: float, op: Callable[[], Awaitable[T]]) -> T:
    """``await op()`` within ``seconds`` (cut to what is left of the request's deadline), errors translated."""
    async with translated(what):
        async with asyncio.timeout(remaining(seconds)):
            return await op()


def connect_redis(url: str, *, timeout: float = 1.0) -> aioredis.Redis:
    """A client for the adapters: socket timeouts of ``timeout`` and a single quick retry (the
    library default backs off for seconds, longer than a cache read is worth). Connects lazily."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        health_check_interval=30,
    )


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, bytes):
        return str(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # not written by us: a miss is always correct
        return None


class RedisCache:
    """:class:`~connector_core.ports.cache.Cache` on Redis; keys are ``prefix + key``.

    ``timeout`` bounds every call, so an unreachable Redis costs a call at most that long.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "cm:", timeout: float = 1.0) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    async def get(self, key: str) -> str | None:
        raw = await redis_call("cache get", self._timeout, lambda: self._client.get(self._prefix + key))
        return _text(raw)

    async def get_many(self, *keys: str) -> Sequence[str | None]:
        if not keys:
            return []
        wire = [self._prefix + key for key in keys]
        raw = await redis_call("cache get", self._timeout, lambda: self._client.mget(wire))
        return [_text(r) for r in raw]

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        px = max(1, math.ceil(ttl_seconds * 1000))
        await redis_call("cache set", self._timeout, lambda: self._client.set(self._prefix + key, value, px=px))

    async def delete(self, *keys: str) -> None:
        """Invalidate; raises :class:`Unavailable` when Redis did not confirm."""
        if not keys:
            return
        wire = [self._prefix + key for key in keys]
        await redis_call("cache invalidation", self._timeout, lambda: self._client.delete(*wire))

    async def check(self) -> bool:
        """PING within the timeout; never raises."""
        try:
            await redis_call("ping", self._timeout, self._client.ping)
        except ConnectorManagerError:
            return False
        return True

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self._prefix!r}, timeout={self._timeout:g})"

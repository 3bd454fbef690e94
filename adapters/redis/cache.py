"""The cache port on Redis, and the one place where Redis driver errors are translated.

Reads degrade, invalidations don't:

- :meth:`RedisCache.get` answers ``None`` when Redis cannot be reached (a miss is always correct:
  the caller reads the source of truth), and :meth:`RedisCache.set` drops the value. The first
  failure of an outage is logged once at WARNING (no addresses, no values), the recovery at INFO.
- :meth:`RedisCache.delete` raises :class:`Unavailable` when it cannot invalidate. A caller
  deletes after writing the source of truth; if that delete were silently lost, the old value
  would still be served until its TTL ran out by every reader that *can* reach Redis (another
  instance on the other side of a partition, or everyone once Redis is back with its data), e.g.
  a connector shown enabled after the toggle to disabled returned 200. Raising makes the failure
  visible to the writer, which can retry, fail the request or bypass the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from connector_core.deadline import remaining
from connector_core.errors import ConnectorManagerError, Unavailable

__all__ = ["RedisCache", "connect_redis", "redis_call", "translated"]

log = logging.getLogger(__name__)

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
    if not isinstance(raw, bytes):
        return str(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # not written by us: a miss is always correct
        return None


class RedisCache:
    """:class:`~connector_core.ports.cache.Cache` on Redis; keys are ``prefix + key``.

    ``timeout`` bounds every call, so an unreachable Redis costs a read at most that long.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "cm:", timeout: float = 1.0) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._degraded = False

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def _went_down(self, exc: ConnectorManagerError) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("Redis cache degraded, reading through to the source: %s", exc.message)

    def _is_up(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("Redis cache reachable again")

    async def get(self, key: str) -> str | None:
        try:
            raw = await redis_call("cache get", self._timeout, lambda: self._client.get(self._prefix + key))
        except ConnectorManagerError as exc:
            self._went_down(exc)
            return None
        self._is_up()
        return None if raw is None else _text(raw)

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        px = max(1, math.ceil(ttl_seconds * 1000))
        try:
            await redis_call("cache set", self._timeout, lambda: self._client.set(self._prefix + key, value, px=px))
        except ConnectorManagerError as exc:
            self._went_down(exc)  # nothing cached: the next read is a miss, which is correct
            return
        self._is_up()

    async def delete(self, *keys: str) -> None:
        """Invalidate; raises :class:`Unavailable` when Redis did not confirm (see the module doc)."""
        if not keys:
            return
        wire = [self._prefix + key for key in keys]
        try:
            await redis_call("cache invalidation", self._timeout, lambda: self._client.delete(*wire))
        except ConnectorManagerError as exc:
            self._went_down(exc)
            raise
        self._is_up()

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

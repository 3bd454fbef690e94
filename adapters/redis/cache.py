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
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from connector_core.deadline import remaining
from connector_core.errors import ConnectorManagerError, Unavailable

__all__ = [
    "RedisCache",
    "ReplicaAcks",
    "connect_redis",
    "connect_redis_sentinel",
    "redis_call",
    "replicated",
    "translated",
]

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


class ReplicaAcks:
    """How many replicas must confirm a write (``WAIT``): ``wanted``, or as many as the primary
    had connected at its last answer when that is fewer. A primary left alone after a failover
    (its old primary not back yet as a replica) has nobody to wait for, and nobody a Sentinel
    could promote over it either: its writes count as they are. Its first write after losing a
    replica waits in vain once (the count is learned from that answer)."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.connected = wanted

    @property
    def needed(self) -> int:
        return min(self.wanted, self.connected)

    def __repr__(self) -> str:
        return f"ReplicaAcks(wanted={self.wanted}, connected={self.connected})"


async def replicated(
    what: str,
    seconds: float,
    client: aioredis.Redis,
    acks: ReplicaAcks | None,
    queue: Callable[[Pipeline], Awaitable[Any]],
) -> tuple[Any, bool]:
    """Run the command ``queue`` adds to a pipeline, then ``WAIT`` for the replicas ``acks``
    needs to have it (on the same connection: WAIT counts that connection's writes), within
    ``seconds`` in all; (the command's answer, whether enough replicas confirmed)."""
    needed = 0 if acks is None else acks.needed

    async def run() -> tuple[Any, bool]:
        async with client.pipeline(transaction=False) as pipe:
            await queue(pipe)
            if needed:
                # WAIT's own timeout leaves room for its answer within the call's budget
                pipe.wait(needed, max(1, int(remaining(seconds) * 800)))
            if acks is not None and acks.wanted:
                pipe.execute_command("ROLE")  # how many replicas are connected now
            answers = await pipe.execute()
        if acks is not None and acks.wanted:
            role = answers[-1]
            acks.connected = len(role[2]) if len(role) > 2 and isinstance(role[2], list) else 0
        confirmed = int(answers[1]) if needed else 0
        return answers[0], confirmed >= needed

    return await redis_call(what, seconds, run)


def _client_options(timeout: float) -> dict[str, Any]:
    # a single quick retry: the library default backs off for seconds, longer than a cache read is worth
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        "health_check_interval": 30,
    }


def connect_redis(url: str, *, timeout: float = 1.0) -> aioredis.Redis:
    """A client for the adapters: socket timeouts of ``timeout`` and a single quick retry.
    Connects lazily."""
    return aioredis.Redis.from_url(url, **_client_options(timeout))


def connect_redis_sentinel(
    sentinels: Sequence[tuple[str, int]],
    master: str,
    *,
    url: str = "redis://",
    sentinel_password: str | None = None,
    timeout: float = 1.0,
) -> tuple[aioredis.Redis, Sentinel]:
    """A client of the primary that the Sentinels at ``sentinels`` name for ``master``: each new
    connection asks them where the primary is, and a connection to a primary that was demoted
    (``READONLY``) or died is dropped, so after a failover the next call reaches the new primary.
    ``url`` gives the primary's credentials and database (its host is not used). Connects lazily.
    Close both the client and the sentinel (:class:`Sentinel` ``aclose``) when done."""
    given = parse_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2 on
        list(sentinels),
        sentinel_kwargs={"password": sentinel_password, "socket_timeout": timeout, "socket_connect_timeout": timeout},
        **_client_options(timeout),
    )
    client: aioredis.Redis = sentinel.master_for(
        master, username=given.get("username"), password=given.get("password"), db=given.get("db", 0)
    )
    return client, sentinel


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

    ``timeout`` bounds every call, so an unreachable Redis costs a call at most that long. With
    ``replicas``, an invalidation counts only once that many replicas have it (``WAIT``): a
    failover to one of them cannot bring back what it invalidated.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "cm:", timeout: float = 1.0, replicas: int = 0) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._acks = ReplicaAcks(replicas) if replicas else None

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
        """Invalidate; raises :class:`Unavailable` when Redis (or the replicas it must reach) did
        not confirm."""
        if not keys:
            return
        wire = [self._prefix + key for key in keys]

        async def queue(pipe: Pipeline) -> None:
            pipe.delete(*wire)

        _, confirmed = await replicated("cache invalidation", self._timeout, self._client, self._acks, queue)
        if not confirmed:
            raise Unavailable(
                "Redis did not replicate the cache invalidation in time", metadata={"dependency": "redis"}
            )

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

"""Cache port for hot reads. Best effort: a miss is always correct."""

from __future__ import annotations

from typing import Protocol


class Cache(Protocol):
    async def get(self, key: str) -> str | None:
        """The cached value or None (also None when the cache is unreachable)."""
        ...

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        """Store for at most ``ttl_seconds``."""
        ...

    async def delete(self, *keys: str) -> None:
        """Invalidate; returns once a following :meth:`get` can no longer see the old value."""
        ...

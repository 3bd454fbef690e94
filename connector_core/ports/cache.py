"""Cache port for hot reads. A miss is always correct; a cache that cannot be asked says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Cache(Protocol):
    async def get(self, key: str) -> str | None:
        """The cached value or None; :class:`Unavailable` when the cache cannot be asked (the
        caller reads the source of truth instead)."""
        ...

    async def get_many(self, *keys: str) -> Sequence[str | None]:
        """:meth:`get` of several keys in one round trip, in the order given."""
        ...

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        """Store for at most ``ttl_seconds``; :class:`Unavailable` when it could not (then
        nothing was stored, or an earlier value stays)."""
        ...

    async def delete(self, *keys: str) -> None:
        """Invalidate; returns once a following :meth:`get` can no longer see the old value,
        :class:`Unavailable` when that could not be confirmed."""
        ...

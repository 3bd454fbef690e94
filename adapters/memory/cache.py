"""In-process TTL cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence


class MemoryCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[float, str]] = {}
        self._max = max_entries

    async def get(self, key: str) -> str | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] <= time.monotonic():
                del self._data[key]
                return None
            return hit[1]

    async def get_many(self, *keys: str) -> Sequence[str | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        with self._lock:
            if len(self._data) >= self._max:
                self._data.pop(next(iter(self._data)))
            self._data[key] = (time.monotonic() + ttl_seconds, value)

    async def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

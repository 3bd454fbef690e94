"""In-process lease lock with random owner tokens."""

from __future__ import annotations

import asyncio
import secrets
import threading
from datetime import timedelta

from adapters.lease_wait import Sleep, acquire_waiting
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease


class MemoryLeaseLock:
    """``sleep`` is awaited between the attempts of a waiting acquire (inject one in tests)."""

    def __init__(self, clock: Clock, *, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        async def attempt() -> Lease | None:
            return self._take(name, ttl_seconds)

        return await acquire_waiting(attempt, wait, sleep=self._sleep)

    def _take(self, name: str, ttl_seconds: float) -> Lease | None:
        now = self._clock.now()
        with self._lock:
            held = self._held.get(name)
            if held is not None and held.expires_at > now:
                return None
            lease = Lease(name, secrets.token_hex(16), now + timedelta(seconds=ttl_seconds))
            self._held[name] = lease
            return lease

    async def release(self, lease: Lease) -> bool:
        with self._lock:
            held = self._held.get(lease.name)
            if held is None or held.owner != lease.owner:
                return False
            del self._held[lease.name]
            return True

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        with self._lock:
            held = self._held.get(lease.name)
            if held is None or held.owner != lease.owner or held.expires_at <= now:
                raise LeaseLost(f"lease {lease.name!r} is no longer held")
            renewed = Lease(lease.name, lease.owner, now + timedelta(seconds=ttl_seconds))
            self._held[lease.name] = renewed
            return renewed

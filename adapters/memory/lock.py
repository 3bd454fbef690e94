"""In-process lease lock with owner tokens and fencing counters."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease


class MemoryLeaseLock:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}
        self._fence: dict[str, int] = {}

    async def acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        now = self._clock.now()
        with self._lock:
            held = self._held.get(name)
            if held is not None and held.expires_at > now:
                return None
            fence = self._fence.get(name, 0) + 1
            self._fence[name] = fence
            lease = Lease(name, secrets.token_hex(16), fence, now + timedelta(seconds=ttl_seconds))
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
            renewed = Lease(lease.name, lease.owner, lease.fencing_token, now + timedelta(seconds=ttl_seconds))
            self._held[lease.name] = renewed
            return renewed

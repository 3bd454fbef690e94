"""The lease-lock policy shared by the leases kept in a database (SQLite, MongoDB).

A lease row holds ``name``, a random ``owner`` and ``expires_at`` (no fencing token: see
:mod:`connector_core.ports.lock`). Expiry is judged by the injected clock, never the server's.
The policy, written once here:

- **acquire** takes the row when it is absent or expired, with a new owner; None when someone
  else holds it (waiting up to ``wait`` seconds: :mod:`adapters.lease_wait`);
- **release** deletes the row only while the owner is ours (compare-and-delete);
- **extend** moves ``expires_at`` only while the owner is ours and the lease has not lapsed,
  else :class:`LeaseLost`.

An adapter provides the three conditional statements (:meth:`_take`, :meth:`_drop`, :meth:`_prolong`).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from adapters.lease_wait import acquire_waiting
from adapters.orphan_leases import OrphanLeases
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease

T = TypeVar("T")


class StoredLeaseLock(ABC):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._orphans = OrphanLeases()

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        async def attempt() -> Lease | None:
            now = self._clock.now()
            expires = now + timedelta(seconds=ttl_seconds)
            owner = secrets.token_hex(16)
            took = await self._taking(self._take(name, owner, now, expires), name, owner, bool)
            return Lease(name, owner, expires) if took else None

        return await acquire_waiting(attempt, wait)

    async def _taking(self, write: Awaitable[T], name: str, owner: str, took: Callable[[T], bool]) -> T:
        """``write``, a store write that may take the lease (name, owner), awaited; a lease it
        takes after its caller was cancelled is dropped (:mod:`adapters.orphan_leases`)."""
        return await self._orphans.taking(write, took, lambda _: self._drop(name, owner))

    async def release(self, lease: Lease) -> bool:
        return await self._drop(lease.name, lease.owner)

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_seconds)
        if not await self._prolong(lease.name, lease.owner, now, expires):
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, expires)

    @abstractmethod
    async def _take(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        """Store (name, owner, expires) unless a row for ``name`` expires after ``now``;
        whether it did."""

    @abstractmethod
    async def _drop(self, name: str, owner: str) -> bool:
        """Delete the row of (name, owner); whether there was one."""

    @abstractmethod
    async def _prolong(self, name: str, owner: str, now: datetime, expires: datetime) -> bool:
        """Set ``expires`` on the row of (name, owner) if it expires after ``now``; whether it did."""

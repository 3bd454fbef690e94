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

import asyncio
import contextlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from adapters.lease_wait import acquire_waiting
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease

T = TypeVar("T")


class StoredLeaseLock(ABC):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._orphans: set[asyncio.Task[bool]] = set()

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        async def attempt() -> Lease | None:
            now = self._clock.now()
            expires = now + timedelta(seconds=ttl_seconds)
            owner = secrets.token_hex(16)
            took = await self._taking(self._take(name, owner, now, expires), name, owner, bool)
            return Lease(name, owner, expires) if took else None

        return await acquire_waiting(attempt, wait)

    async def _taking(self, write: Awaitable[T], name: str, owner: str, took: Callable[[T], bool]) -> T:
        """``write``, a store write that may take the lease (name, owner), awaited. A caller
        cancelled meanwhile (a shutdown) does not stop the write once queued; a lease it took
        would be held by nobody until it lapsed, so it is dropped as soon as the write is done."""
        pending = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            pending.add_done_callback(lambda done: self._orphaned(done, name, owner, took))
            raise

    def _orphaned(self, done: asyncio.Future[T], name: str, owner: str, took: Callable[[T], bool]) -> None:
        if done.cancelled() or done.exception() is not None or not took(done.result()):
            return
        drop = asyncio.ensure_future(self._drop(name, owner))
        self._orphans.add(drop)  # kept until done: a task nobody references may be collected
        drop.add_done_callback(self._dropped)

    def _dropped(self, drop: asyncio.Task[bool]) -> None:
        self._orphans.discard(drop)
        if not drop.cancelled():
            with contextlib.suppress(Exception):
                drop.result()  # a failed drop: the lease lapses by itself

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

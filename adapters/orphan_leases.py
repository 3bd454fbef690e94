"""Leases taken by writes whose callers were cancelled meanwhile (a shutdown's grace over).

A store write that may take a lease goes on once sent, whether its caller waits or not; a lease
it took would then be held by nobody until it lapsed (for a token's lease, a minute in which no
worker may refresh it). :meth:`OrphanLeases.taking` awaits such a write shielded: when the
caller is cancelled, the write is left to finish and a lease it took is dropped at once.
Shared by the leases kept in a database (:mod:`adapters.stored_lease_lock`) and on Redis (on
etcd, a take that does not finish revokes its etcd lease, and the key with it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["OrphanLeases"]

T = TypeVar("T")


class OrphanLeases:
    """The drops of orphaned leases under way (kept referenced until done)."""

    def __init__(self) -> None:
        self._drops: set[asyncio.Task[Any]] = set()

    async def taking(self, write: Awaitable[T], took: Callable[[T], bool], drop: Callable[[T], Awaitable[Any]]) -> T:
        """``write`` awaited; ``took(result)`` says whether it took the lease, ``drop(result)``
        gives it up."""
        pending = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            pending.add_done_callback(lambda done: self._orphaned(done, took, drop))
            raise

    def _orphaned(
        self, done: asyncio.Future[T], took: Callable[[T], bool], drop: Callable[[T], Awaitable[Any]]
    ) -> None:
        if done.cancelled() or done.exception() is not None or not took(done.result()):
            return
        task = asyncio.ensure_future(drop(done.result()))
        self._drops.add(task)  # kept until done: a task nobody references may be collected
        task.add_done_callback(self._dropped)

    def _dropped(self, task: asyncio.Task[Any]) -> None:
        self._drops.discard(task)
        if not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # a failed drop: the lease lapses by itself

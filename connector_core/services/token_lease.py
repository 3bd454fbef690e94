"""The refresh lease of one token, held by the refresher and by revocation.

Every provider call that uses or kills a token's refresh token runs under the lease
``token-refresh:{token id}``: with rotating refresh tokens, two holders at once would burn it.
The holder renews the lease before each step of its work (a provider call, a retry of a store)
and gives a provider call at most half of it, so the lease does not lapse while its holder
works; when it cannot be renewed the holder stops (:class:`LeaseLost`, or :class:`Unavailable`
from the lock's backend).

The lease only keeps workers from *sending* the same refresh token twice; it has no fencing
token (:mod:`connector_core.ports.lock`). What keeps a slow holder from *storing* over a newer
token is the token store's version check together with "the stored refresh token is the one
this refresh used" (:meth:`~connector_core.tokens.TokenLifecycle.fate_of_refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from connector_core.errors import ConnectorManagerError
from connector_core.ports.lock import Lease, LeaseLock

__all__ = ["HeldLease", "TokenLeases", "lease_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def lease_name(token_id: str) -> str:
    """The lease every refresh and revocation of this token takes."""
    return f"token-refresh:{token_id}"


class HeldLease:
    """A token's lease while it is held: renew it before each step, bound each call."""

    def __init__(self, lock: LeaseLock, lease: Lease, ttl: float) -> None:
        self._lock = lock
        self._lease = lease
        self.ttl = ttl

    @property
    def name(self) -> str:
        return self._lease.name

    async def renew(self) -> None:
        """Extend to a full ``ttl`` from now, else :class:`LeaseLost` (taken over or lapsed) or
        :class:`Unavailable` (the lock's backend is down): either way, stop working."""
        self._lease = await self._lock.extend(self._lease, self.ttl)

    async def bounded(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` for at most half the lease (:class:`TimeoutError` after that)."""
        async with asyncio.timeout(self.ttl / 2):
            return await call()

    async def step(self, call: Callable[[], Awaitable[T]]) -> T:
        """Renew, then run ``call`` bounded: the lease outlives the call."""
        await self.renew()
        return await self.bounded(call)

    async def release(self) -> None:
        """Best effort: a lease that cannot be released lapses on its own."""
        try:
            if not await self._lock.release(self._lease):
                log.warning("token lease had expired before release: %s", self.name)
        except ConnectorManagerError as exc:
            log.warning("cannot release the token lease %s (%s)", self.name, exc.message)


class TokenLeases:
    """Takes tokens' leases on ``lock``. ``ttl`` must exceed the provider client's timeout;
    ``wait`` is how long :meth:`hold` waits for a lease held elsewhere when asked to."""

    def __init__(self, lock: LeaseLock, *, ttl: float = 60.0, wait: float = 10.0) -> None:
        self.lock = lock
        self.ttl = ttl
        self.wait = wait

    @contextlib.asynccontextmanager
    async def hold(self, token_id: str, *, wait: bool) -> AsyncIterator[HeldLease | None]:
        """The token's lease for the block (released after it), or None when another holder
        kept it (for up to ``self.wait`` seconds when ``wait``)."""
        lease = await self.lock.acquire(lease_name(token_id), self.ttl, wait=self.wait if wait else 0.0)
        if lease is None:
            yield None
            return
        held = HeldLease(self.lock, lease, self.ttl)
        try:
            yield held
        finally:
            await held.release()

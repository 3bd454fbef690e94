"""The refresh lease of one token, held by the refresher and by revocation.

Every provider call that uses or kills a token's refresh token runs under the lease
``token-refresh:{token id}``: with rotating refresh tokens, two holders at once would burn it.
The holder renews the lease before each step of its work (a provider call, a retry of a store)
and gives a provider call at most half of it, so the lease does not lapse while its holder
works; when it cannot be renewed the holder stops (:class:`LeaseLost`, or :class:`Unavailable`
from the lock's backend).

**Releasing.** A lease that cannot be released (the lock's backend is away: the holder lost its
store) is not left to its TTL: a background task tries again, with backoff, until the release
goes through or the lease has lapsed by itself, so the token is free as soon as the store is back
instead of answering "a refresh is already running" for the rest of the TTL.

**How long.** :func:`lease_ttl_for` derives the TTL from the work it guards: a provider call
gets at most half the lease, so the lease is twice the provider client's timeout plus a margin
for the store's calls. A holder that died leaves a lease that lapses that soon, not a minute.

The lease only keeps workers from *sending* the same refresh token twice; it has no fencing
token (:mod:`connector_core.ports.lock`). What keeps a slow holder from *storing* over a newer
token is the token store's version check together with "the stored refresh token is the one
this refresh used" (:meth:`~connector_core.tokens.TokenLifecycle.fate_of_refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from connector_core.deadline import remaining
from connector_core.errors import ConnectorManagerError
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease, LeasedRecord, LeasedTokenReads, LeaseLock
from connector_core.ports.unit_of_work import UnitOfWorkFactory
from connector_core.tokens import TokenRecord

__all__ = [
    "FRESH_SHARE",
    "LEASE_MARGIN_SECONDS",
    "BackgroundReleases",
    "ComposedLeasedReads",
    "HeldLease",
    "TokenLeases",
    "lease_name",
    "lease_ttl_for",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what a lease adds to twice the provider call's timeout: the store's reads and commit
LEASE_MARGIN_SECONDS = 10.0
#: the first wait before a failed release is tried again (doubling, at most 2 s)
RELEASE_RETRY_SECONDS = 0.2
#: a step does not renew a lease with more than this share of its TTL left (taken or renewed a
#: moment ago): the step's call gets at most half the TTL, so it still ends with a quarter left
FRESH_SHARE = 0.75


def lease_ttl_for(provider_timeout: float) -> float:
    """A token lease long enough for the work it guards: a provider call (at most half the
    lease, :meth:`HeldLease.bounded`) and the store's calls around it."""
    return 2 * provider_timeout + LEASE_MARGIN_SECONDS


def lease_name(token_id: str) -> str:
    """The lease every refresh and revocation of this token takes."""
    return f"token-refresh:{token_id}"


class HeldLease:
    """A token's lease while it is held: renew it before each step, bound each call.

    With ``clock`` (the lock's), a step right after the lease was taken or renewed does not
    renew it again (:data:`FRESH_SHARE`): one store write fewer per refresh."""

    def __init__(
        self,
        lock: LeaseLock,
        lease: Lease,
        ttl: float,
        releases: BackgroundReleases | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._lock = lock
        self._lease = lease
        self.ttl = ttl
        self._releases = releases
        self._clock = clock

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
        """Renew (unless fresh), then run ``call`` bounded: the lease outlives the call."""
        if not self._fresh():
            await self.renew()
        return await self.bounded(call)

    def _fresh(self) -> bool:
        if self._clock is None:
            return False
        left = (self._lease.expires_at - self._clock.now()).total_seconds()
        return left > FRESH_SHARE * self.ttl

    async def release(self) -> None:
        """Release now; when the lock's backend cannot be asked, again in the background until
        it can or the lease has lapsed (module doc)."""
        try:
            if not await self._lock.release(self._lease):
                log.warning("token lease had expired before release: %s", self.name)
        except ConnectorManagerError as exc:
            log.warning(
                "cannot release the token lease %s (%s); trying again in the background", self.name, exc.message
            )
            if self._releases is not None:
                self._releases.start(self._lock, self._lease)


class BackgroundReleases:
    """Releases that failed, tried again until they go through or their lease lapsed."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, lock: LeaseLock, lease: Lease) -> None:
        # a context of its own: the request that failed must not lend its deadline to the retries
        task = asyncio.get_running_loop().create_task(
            self._release(lock, lease), name=f"release {lease.name}", context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, lock: LeaseLock, lease: Lease) -> None:
        pause = RELEASE_RETRY_SECONDS
        while self._clock.now() < lease.expires_at:
            await asyncio.sleep(pause)
            try:
                await lock.release(lease)
            except ConnectorManagerError:
                pause = min(pause * 2, 2.0)
                continue
            log.info("token lease released after its store came back: %s", lease.name)
            return

    async def wait(self) -> None:
        """Return once every pending release is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ComposedLeasedReads:
    """:class:`LeasedTokenReads` of any lock and token store: the lease, then a unit of work's
    read (two store calls; a backend holding both in one database does it in one)."""

    def __init__(self, lock: LeaseLock, uow: UnitOfWorkFactory) -> None:
        self._lock = lock
        self._uow = uow

    async def acquire_and_get(self, name: str, ttl_seconds: float, token_id: str) -> LeasedRecord | None:
        lease = await self._lock.acquire(name, ttl_seconds)
        if lease is None:
            return None
        try:
            async with self._uow() as uow:
                record = await uow.tokens.get(token_id)
        except BaseException:
            with contextlib.suppress(ConnectorManagerError):  # else it lapses
                await self._lock.release(lease)
            raise
        return LeasedRecord(lease, record)


class TokenLeases:
    """Takes tokens' leases on ``lock``. ``ttl`` must exceed the provider client's timeout;
    ``wait`` is how long :meth:`hold` waits for a lease held elsewhere when asked to; ``clock``
    (the lock's) lets a step skip renewing a fresh lease (:class:`HeldLease`); ``reads`` takes a
    lease of ``lock`` and reads its token in one store call (:meth:`hold_read`)."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        ttl: float = 60.0,
        wait: float = 10.0,
        releases: BackgroundReleases | None = None,
        clock: Clock | None = None,
        reads: LeasedTokenReads | None = None,
    ) -> None:
        self.lock = lock
        self.reads = reads
        self.ttl = ttl
        self.wait = wait
        self.releases = releases
        self.clock = clock
        self._releasing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def hold(self, token_id: str, *, wait: bool) -> AsyncIterator[HeldLease | None]:
        """The token's lease for the block (released after it), or None when another holder
        kept it (for up to ``self.wait`` seconds when ``wait``, cut to what is left of the
        request's deadline: a caller is told "a refresh is running" in time, not after 10 s)."""
        waiting = remaining(self.wait) if wait else 0.0
        lease = await self.lock.acquire(lease_name(token_id), self.ttl, wait=waiting)
        if lease is None:
            yield None
            return
        held = HeldLease(self.lock, lease, self.ttl, self.releases, self.clock)
        try:
            yield held
        finally:
            await held.release()

    @contextlib.asynccontextmanager
    async def hold_read(
        self, token_id: str, uow: UnitOfWorkFactory
    ) -> AsyncIterator[tuple[HeldLease, TokenRecord | None] | None]:
        """For a batch worker: the token's lease (no waiting) and the token as stored once it is
        held, in one store call with ``reads``, else ``lock`` and a unit of ``uow``; None when
        another holder keeps the lease. The release after the block runs on its own while the worker goes on to its next
        token (the lease is held a moment longer); :meth:`settle` awaits them."""
        reads = self.reads or ComposedLeasedReads(self.lock, uow)
        taken = await reads.acquire_and_get(lease_name(token_id), self.ttl, token_id)
        if taken is None:
            yield None
            return
        held = HeldLease(self.lock, taken.lease, self.ttl, self.releases, self.clock)
        try:
            yield held, taken.record
        finally:
            task = asyncio.get_running_loop().create_task(held.release(), name=f"release {held.name}")
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def settle(self) -> None:
        """Return once every release started by :meth:`hold_read` is done."""
        while self._releasing:
            await asyncio.wait(set(self._releasing))

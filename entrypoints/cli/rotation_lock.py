"""One ``keys rotate`` at a time per deployment: a lease on the locks port, kept while it works.

Two rotations at once would each add a key to ``master.key`` and re-encrypt under their own
primary, interleaving; the second is refused instead. The lease is renewed in the background
while the rotation runs (a pass over many values outlasts one TTL); a rotation that cannot renew
it (taken over after a long pause, or the lock's backend is away) stops: a later run finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from connector_core.errors import Conflict, ConnectorManagerError, LeaseLost
from connector_core.ports.lock import LeaseLock

#: the lease every rotation takes
ROTATION_LOCK = "keys-rotate"
#: how long a rotation's lease lasts unless renewed (renewed every third of it)
LOCK_TTL_SECONDS = 60.0


@contextlib.asynccontextmanager
async def rotation_lock(lock: LeaseLock, ttl_seconds: float = LOCK_TTL_SECONDS) -> AsyncIterator[None]:
    """Hold the rotation lease while the body runs; :class:`Conflict` when another rotation
    holds it, :class:`LeaseLost` (the body cancelled) when it can no longer be renewed."""
    taken = await lock.acquire(ROTATION_LOCK, ttl_seconds)
    if taken is None:
        raise Conflict(
            "another `keys rotate` is running on this deployment: let it finish"
            " (then `keys status` shows the result; run `keys rotate` again only if values are left)"
        )
    lease = taken
    work = asyncio.current_task()
    lost = False

    async def keep() -> None:
        nonlocal lease, lost
        while True:
            await asyncio.sleep(ttl_seconds / 3)
            try:
                lease = await lock.extend(lease, ttl_seconds)
            except ConnectorManagerError:
                lost = True
                if work is not None:
                    work.cancel()
                return

    keeper = asyncio.create_task(keep(), name="keep the keys-rotate lease")
    try:
        yield
    except asyncio.CancelledError:
        if lost:
            raise LeaseLost("the rotation lost its lock and stopped: run `keys rotate` again to finish") from None
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        if not lost:
            with contextlib.suppress(ConnectorManagerError):  # it lapses by itself anyway
                await lock.release(lease)

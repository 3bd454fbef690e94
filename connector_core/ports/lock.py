"""Lease lock port: time-bounded, exclusive ownership of a name.

A lease has no fencing token. It keeps two holders from *doing* the guarded work at the same
time while both run on time: a holder renews it before each step of its work and stops when it
cannot. What keeps a holder whose lease lapsed unnoticed (a long pause, a slow network) from
*overwriting* newer data is the guarded store's own check, written where the data is: for
tokens, the token store's version check together with "the stored refresh token is the one this
refresh used" (:meth:`connector_core.tokens.TokenLifecycle.fate_of_refresh`); the outbox
relay delivers at least once (a relay whose lease lapsed may publish a batch again, never lose
one) and marking events published is idempotent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from attrs import field, frozen

from connector_core.tokens import TokenRecord


@frozen
class Lease:
    name: str
    #: the holder's random token: release and extend act only while it still owns the name
    owner: str = field(repr=False)
    expires_at: datetime


class LeaseLock(Protocol):
    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        """Take the lease if it is free or expired, for ``ttl_seconds``. While another holder
        keeps it, try again for up to ``wait`` seconds; then None. :class:`Unavailable` when
        the lock's backend cannot be reached."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Release only if still ours (compare-and-delete); False when it was lost."""
        ...

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend to ``ttl_seconds`` from now if still ours and not lapsed, else :class:`LeaseLost`."""
        ...


class LeasedTokenReads(Protocol):
    """Takes a token's lease and reads the token under it, in one call to the store: for
    backends whose lease lock and token store share a database. Where they do not, the
    refresher composes :meth:`LeaseLock.acquire` and a unit of work's read
    (:class:`connector_core.services.token_lease.ComposedLeasedReads`)."""

    async def acquire_and_get(self, name: str, ttl_seconds: float, token_id: str) -> LeasedRecord | None:
        """Take lease ``name`` as :meth:`LeaseLock.acquire` does (no waiting), then read token
        ``token_id`` as stored once the lease is held; None when another holder keeps the
        lease. When the read fails (:class:`Unavailable`, :class:`UnreadableRecord`) the lease is
        released (or left to lapse when it cannot be) and the error raised."""
        ...


@frozen
class LeasedRecord:
    """A lease just taken and the token it guards as read under it (None: no such token)."""

    lease: Lease
    record: TokenRecord | None

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
